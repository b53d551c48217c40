"""The cluster mode end to end: `vlmswap cluster serve` on a local Ray, two replicas, real workers.

One cluster serves the whole module (a Ray start costs tens of seconds on two cores), so the
tests run in file order and build on each other: models loaded first, then affinity, then
clients, then a replica killed, then the shutdown.
"""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import (
    ADMIN_KEY,
    NARROW_KEY,
    OCR_FIELDS,
    OTHER_KEY,
    READER_KEY,
    AwakeSampler,
    Cluster,
    alive,
    bearer,
)
from tests.documents.conftest import pdf_bytes, render_pages
from tests.gateway_e2e.conftest import Gateway
from tests.jobs.conftest import DPI, page_texts, rapidocr_model
from tests.support import ROOT
from tests.ui.helpers import click_keyed
from vlmswap import Client
from vlmswap.backends.process import cleanup_orphans
from vlmswap.documents.layout import Document

OCR_MODELS = ("ocr-a", "ocr-b", "ocr-c")


def _image_content() -> list[dict[str, Any]]:
    buf = io.BytesIO()
    Image.new("RGB", (64, 32), "white").save(buf, "PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    return [{"type": "image_url", "image_url": {"url": url}}, {"type": "text", "text": "OCR"}]


def _ocr(cluster: Cluster, model: str) -> None:
    r = cluster.chat(model, _image_content())
    assert r.status_code == 200, r.text
    assert r.json()["model"] == model


def _awake(status: dict[str, Any]) -> dict[str, list[str]]:
    """Per replica, the models whose backend is up or coming up there."""
    out: dict[str, list[str]] = {s["replica"]: [] for s in status["replicas"]}
    for name, m in status["models"].items():
        for replica, state in m["replicas"].items():
            if state in ("ready", "starting", "stopping") and replica in out:
                out[replica].append(name)
    return out


def test_each_model_loads_once_on_some_replica_and_status_is_aggregated(
    cluster: Cluster, sampler: AwakeSampler
) -> None:
    events: list[dict[str, Any]] = []

    def read_events() -> None:
        with httpx.Client(
            base_url=cluster.url, timeout=httpx.Timeout(300, connect=10), trust_env=False, headers=bearer(ADMIN_KEY)
        ) as c:
            with contextlib.suppress(httpx.TransportError), c.stream("GET", "/api/events") as r:
                for line in r.iter_lines():  # until the cluster stops
                    if line.startswith("data:"):
                        events.append(json.loads(line[5:]))

    threading.Thread(target=read_events, daemon=True).start()
    cluster.wait_for(lambda: events, 30, "the events stream's hello")
    assert events[0]["type"] == "hello"
    for model in OCR_MODELS:
        _ocr(cluster, model)
    st = cluster.status()
    assert st["cluster"] is True and len(st["replicas"]) == 2
    for rep in st["replicas"]:
        assert rep["node"] and rep["pid"] > 0 and rep["slot"] in (0, 1) and rep["gpu_ids"] == []
        assert "queue_length" in rep and "gpu" in rep
    assert sorted(r["slot"] for r in st["replicas"]) == [0, 1]
    assert len(st["residents"]) == 2 and set(st["residents"]) <= set(OCR_MODELS)
    assert sum(st["models"][m]["starts"] for m in OCR_MODELS) == 3
    assert [s.model for s in cluster.spawns()] == list(OCR_MODELS)
    assert {s.parent for s in cluster.spawns()} == {r["pid"] for r in st["replicas"]}
    cluster.wait_for(
        lambda: {e.get("model") for e in events if e.get("type") == "phase"} >= set(OCR_MODELS),
        30,
        "switch phases of every model on /api/events",
    )
    assert all(e.get("replica") for e in events if e.get("type") == "phase")
    models = cluster.http.get("/v1/models").json()["data"]
    states = {m["id"]: m["state"] for m in models if m["id"] in st["residents"]}
    assert states == dict.fromkeys(st["residents"], "ready")
    metrics = cluster.http.get("/metrics").text
    samples = [s for f in text_string_to_metric_families(metrics) for s in f.samples]
    labelled = {s.labels.get("replica") for s in samples if s.name.startswith("vlmswap_") and "model" in s.labels}
    assert labelled >= {r["replica"] for r in st["replicas"]}  # each replica's own series, told apart
    assert [s.value for s in samples if s.name == "vlmswap_cluster_replicas"] == [2]


def test_alternating_two_resident_models_starts_no_worker(cluster: Cluster) -> None:
    st = cluster.status()
    first, second = st["residents"]
    before = cluster.spawns()
    holders = {r["resident"]: r["replica"] for r in st["replicas"]}
    for model in (first, second) * 3:
        _ocr(cluster, model)
    assert cluster.spawns() == before, "a request started a worker though its model was resident on a replica"
    after = cluster.status()
    assert {r["resident"]: r["replica"] for r in after["replicas"]} == holders
    assert all(after["models"][m]["starts"] == st["models"][m]["starts"] for m in OCR_MODELS)


def test_no_replica_ever_has_two_workers_awake(cluster: Cluster, sampler: AwakeSampler) -> None:
    assert sampler.samples > 20
    assert sampler.worst and max(sampler.worst.values()) == 1, sampler.worst
    assert all(len(models) <= 1 for models in _awake(cluster.status()).values())


def test_streaming_through_the_ingress_with_the_openai_client(cluster: Cluster) -> None:
    client = openai.OpenAI(base_url=f"{cluster.url}/v1", api_key=ADMIN_KEY, max_retries=0, timeout=180)
    stream = client.chat.completions.create(
        model="slow", messages=[{"role": "user", "content": "hello"}], stream=True, max_tokens=6
    )
    arrivals, text = [], ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
            text += chunk.choices[0].delta.content
    assert text.startswith("[slow]") and len(arrivals) >= 6
    # The fault server waits 0.3 s between chunks: relayed one by one, they arrive spread out.
    assert arrivals[-1] - arrivals[0] > 1.0, "the stream arrived in one piece"


def test_vlmswap_client_status_and_ocr_commands_against_the_cluster(cluster: Cluster, tmp_path: Path) -> None:
    with Client(cluster.url, api_key=ADMIN_KEY) as c:
        st = c.status()
        assert len(st["replicas"]) == 2
        assert c.chat("slow", [{"role": "user", "content": "ping"}]).startswith("[slow]")
        assert {m["id"] for m in c.models()} >= {"ocr-a", "ocr-b", "ocr-c", "slow", "chat"}
        buf = io.BytesIO()
        Image.new("RGB", (64, 32), "white").save(buf, "PNG")
        doc = c.ocr_upload("blank.png", buf.getvalue(), model=next(m for m in st["residents"] if m != "slow"))
        assert doc["documents"] and "markdown" in doc
        ocr_resident = next(m for m in st["residents"] if m != "slow")
        assert ocr_resident in c.switch(ocr_resident, timeout=60)["residents"]  # `vlmswap switch`: already ready
    out = subprocess.run(
        [sys.executable, "-m", "vlmswap", "status", "--gateway", cluster.url],
        cwd=ROOT,
        env={**os.environ, "VLMSWAP_API_KEY": ADMIN_KEY},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    for model in ("ocr-a", "ocr-b", "ocr-c", "slow"):
        assert model in out.stdout
    page = tmp_path / "page.png"
    page.write_bytes(buf.getvalue())
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "vlmswap",
            "ocr",
            str(page),
            "--gateway",
            cluster.url,
            "--model",
            ocr_resident,
            "--format",
            "json",
            "--out",
            str(tmp_path / "out"),
            "--api-key",
            ADMIN_KEY,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert list((tmp_path / "out").rglob("*.json"))
    with Client(cluster.url, api_key=ADMIN_KEY) as c:  # the cluster serves document jobs: the CLI used one
        assert [j["state"] for j in c.jobs() if j["source"] == "page.png"] == ["done"]


def test_unknown_model_and_bad_json_get_openai_errors_at_the_ingress(cluster: Cluster) -> None:
    r = cluster.chat("no-such-model")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = cluster.http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


def _ocr_resident(cluster: Cluster) -> str:
    return next(m for m in cluster.status()["residents"] if m in OCR_MODELS)


def _usage(cluster: Cluster, profile: str) -> int:
    with Client(cluster.url, api_key=ADMIN_KEY) as c:
        return int(c.usage()["profiles"].get(profile, {}).get("requests", 0))


def test_each_request_runs_as_its_callers_profile_on_the_replica(cluster: Cluster) -> None:
    me = cluster.http.get("/api/me", headers=bearer(READER_KEY)).json()
    assert me["profile"] == "reader" and me["admin"] is False and "ocr-a" in me["models"]
    r = cluster.http.get("/api/status", headers=bearer("not-a-key"))
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    r = cluster.http.post("/api/models/ocr-a/load", headers=bearer(READER_KEY))
    assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only"
    before = _usage(cluster, "reader")
    model = _ocr_resident(cluster)
    r = cluster.http.post(
        "/v1/chat/completions",
        headers=bearer(READER_KEY),
        json={"model": model, "messages": [{"role": "user", "content": _image_content()}]},
    )
    assert r.status_code == 200, r.text
    # The replica's Admission counted it as reader's (the cluster's /api/usage sums the replicas').
    cluster.wait_for(lambda: _usage(cluster, "reader") == before + 1, 10, "reader's request in the usage")
    assert set(Client(cluster.url, api_key=READER_KEY).usage()["profiles"]) == {"reader"}


def test_a_profile_sees_only_its_models_at_the_ingress(cluster: Cluster) -> None:
    listed = [m["name"] for m in cluster.http.get("/v1/models", headers=bearer(NARROW_KEY)).json()["data"]]
    assert listed == ["ocr-a"]
    everyone = {m["name"] for m in cluster.http.get("/v1/models", headers=bearer(ADMIN_KEY)).json()["data"]}
    assert set(OCR_MODELS) <= everyone


def test_preferences_are_kept_per_profile_at_the_ingress(cluster: Cluster) -> None:
    """One store for the cluster (the ingress's, beside its jobs): what a profile saves, it reads back;
    another profile has its own."""
    put = cluster.http.put(
        "/api/me/preferences", headers=bearer(READER_KEY), json={"ocr_model": "ocr-b", "dpi": 120, "language": "ru"}
    )
    assert put.status_code == 200, put.text
    got = cluster.http.get("/api/me/preferences", headers=bearer(READER_KEY)).json()
    assert (got["ocr_model"], got["dpi"], got["language"]) == ("ocr-b", 120, "ru")
    assert cluster.http.get("/api/me/preferences", headers=bearer(OTHER_KEY)).json()["ocr_model"] is None
    bad = cluster.http.put("/api/me/preferences", headers=bearer(READER_KEY), json={"ocr_model": "nope"})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_preferences"


def test_a_pdf_job_through_the_cluster_reads_as_on_one_gateway(cluster: Cluster, tmp_path: Path) -> None:
    pdf = pdf_bytes(render_pages(page_texts(3)).images, dpi=DPI)
    model = _ocr_resident(cluster)
    spawned = cluster.spawns()
    events: list[dict[str, Any]] = []
    stop = threading.Event()

    def read_events() -> None:  # the cluster's /api/events (the Board) carries job events too
        with (
            httpx.Client(base_url=cluster.url, timeout=60, trust_env=False, headers=bearer(ADMIN_KEY)) as c,
            contextlib.suppress(httpx.TransportError),
            c.stream("GET", "/api/events") as r,
        ):
            for line in r.iter_lines():
                if line.startswith("data:"):
                    events.append(json.loads(line[5:]))
                if stop.is_set():
                    return

    threading.Thread(target=read_events, daemon=True).start()
    cluster.wait_for(lambda: events, 30, "the events stream's hello")
    reader = Client(cluster.url, api_key=READER_KEY)
    handle = reader.submit_job(content=pdf, filename="report.pdf", model=model, dpi=DPI)
    seen: list[dict[str, Any]] = []
    final = handle.wait(timeout=240, on_event=seen.append)
    assert seen[0]["step"] == "snapshot" and seen[-1]["step"] == "ended", seen
    assert sorted(e["page"] for e in seen if e["step"] == "page") == [1, 2, 3]
    assert final["state"] == "done" and final["pages_done"] == 3 and final["pages_failed"] == 0
    got = handle.result()
    assert isinstance(got, Document)
    # Each page went to the replica that held the model: no worker started anywhere.
    assert cluster.spawns() == spawned
    cluster.wait_for(
        lambda: any(e.get("type") == "job" and e.get("job_id") == handle.id and e["step"] == "ended" for e in events),
        10,
        "the job's end on the cluster's /api/events",
    )
    stop.set()
    assert {e.get("replica") for e in events if e.get("type") == "job"} == {"ingress"}

    # The same PDF on one gateway, with the same worker: the same pages, text and blocks.
    gw = Gateway(tmp_path, {model: rapidocr_model(**OCR_FIELDS)}).start()
    try:
        alone = Client(gw.url).submit_job(content=pdf, filename="report.pdf", model=model, dpi=DPI)
        assert alone.wait(timeout=240)["state"] == "done"
        expected = alone.result()
        assert isinstance(expected, Document)
    finally:
        gw.stop()
        cleanup_orphans(gw.state_dir, grace_s=0.5)

    def pages(doc: Document) -> list[dict[str, Any]]:
        return [{k: v for k, v in p.to_dict().items() if k != "timings"} for p in doc.pages]

    assert pages(got) == pages(expected)
    assert "The quick brown fox number 2." in got.pages[1].text

    # The job is reader's: other sees nothing of it; the admin sees everyone's.
    other = {"authorization": f"Bearer {OTHER_KEY}"}
    for method, path in (
        ("GET", f"/api/jobs/{handle.id}"),
        ("GET", f"/api/jobs/{handle.id}/events"),
        ("GET", f"/api/jobs/{handle.id}/result"),
        ("GET", f"/api/jobs/{handle.id}/pages/1"),
        ("GET", f"/api/jobs/{handle.id}/pages/1/image"),
        ("DELETE", f"/api/jobs/{handle.id}"),
    ):
        r = cluster.http.request(method, path, headers=other)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found", (path, r.text)
    assert handle.id not in {j["id"] for j in Client(cluster.url, api_key=OTHER_KEY).jobs()}
    assert handle.id in {j["id"] for j in reader.jobs()}
    assert handle.id in {j["id"] for j in Client(cluster.url, api_key=ADMIN_KEY).jobs()}
    assert "<!-- page 3 -->" in str(handle.result("md"))
    assert handle.page(2).number == 2 and handle.page_image(2).startswith(b"\x89PNG")

    # Cancel: the pages in flight are called back from the replica; what was read is kept.
    slow = reader.submit_job(content=pdf, filename="slow.pdf", model="slow", mode="text", dpi=DPI)
    cluster.wait_for(lambda: cluster.status()["models"]["slow"]["in_flight"] >= 1, 60, "a slow page in flight")
    assert slow.cancel()["state"] == "cancelled"
    cluster.wait_for(lambda: cluster.status()["models"]["slow"]["in_flight"] == 0, 30, "the slow page called back")


def test_an_ingress_killed_mid_job_resumes_it_without_redoing_pages(cluster: Cluster) -> None:
    pdf = pdf_bytes(render_pages(page_texts(10)).images, dpi=DPI)
    model = _ocr_resident(cluster)
    reader = Client(cluster.url, api_key=READER_KEY)
    handle = reader.submit_job(content=pdf, filename="long.pdf", model=model, dpi=DPI)
    follower: dict[str, Any] = {}  # a client following the job across the ingress's death
    thread = threading.Thread(
        target=lambda: follower.update(reader.job(handle.id).wait(timeout=280, reconnect_for=150)), daemon=True
    )
    thread.start()
    ingress = cluster.status()["ingress"]
    before = cluster.wait_for(
        lambda: (j := reader.job(handle.id).refresh())["pages_done"] >= 2 and j, 120, "two pages done"
    )
    os.kill(ingress["pid"], signal.SIGKILL)  # no shutdown code runs: the ingress's state dir is all there is
    assert before["state"] == "running" and before["pages_done"] < 10, "the job ended before the kill"
    again = cluster.wait_for(
        lambda: (i := cluster.status_or_none().get("ingress")) and i["pid"] != ingress["pid"] and i,
        120,
        "a new ingress",
    )
    assert again["jobs_dir"] == ingress["jobs_dir"]
    thread.join(280)
    assert follower.get("state") == "done" and follower["pages_done"] == 10, follower
    done_before = {p["number"]: p["finished_at"] for p in before["pages"] if p["state"] == "done"}
    after = {p["number"]: p["finished_at"] for p in follower["pages"]}
    assert {n: after[n] for n in done_before} == done_before  # read once, never again


CHROMIUM = "/usr/bin/chromium"


@pytest.fixture
def browser_page() -> Any:
    from playwright.sync_api import sync_playwright

    from tests.ui.test_browser import ARGS

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1080})
        finally:
            browser.close()


@pytest.mark.browser
@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="needs Debian's chromium (make system-deps)")
def test_the_ui_against_the_cluster_shows_its_replicas_switches_reads_a_page_and_chats(
    cluster: Cluster, ui_server: str, browser_page: Any, tmp_path: Path
) -> None:
    from tests.ui.helpers import png_bytes, render_document

    page = browser_page
    page.goto(ui_server)
    page.get_by_role("heading", name="OCR documents").wait_for(timeout=60_000)
    sidebar = page.locator("section[data-testid='stSidebar']")
    sidebar.get_by_text("Cluster of 2 replicas").wait_for(timeout=30_000)
    for rep in cluster.status()["replicas"]:
        sidebar.get_by_text(rep["replica"]).first.wait_for()

    # Switch from the sidebar to an OCR model no replica holds: one replica loads it.
    idle = next(m for m in OCR_MODELS if m not in cluster.status()["residents"])
    click_keyed(page, f"switch_{idle}")
    page.get_by_text(re.compile(rf"{idle} is ready \(switch took")).wait_for(timeout=180_000)
    assert idle in cluster.status()["residents"]

    # OCR a page (a document job on the cluster): the recognised text appears.
    upload = tmp_path / "report.png"
    upload.write_bytes(png_bytes(render_document()))
    page.locator("input[type=file]").first.set_input_files(str(upload))
    page.get_by_text("report.png").first.wait_for()
    page.get_by_role("button", name="Run OCR").click()
    page.get_by_text(re.compile("quick brown fox", re.I)).first.wait_for(timeout=180_000)
    page.get_by_text("report.png · page 1").wait_for()
    assert any(
        j["source"] == "report.png" and j["state"] == "done" for j in Client(cluster.url, api_key=ADMIN_KEY).jobs()
    )
    page.screenshot(path=str(tmp_path / "cluster-ocr.png"), full_page=True)

    # Chat: the answer streams back from the replica the chat model runs on.
    page.get_by_role("link", name="Chat").click()
    page.get_by_role("heading", name="Chat about images").wait_for(timeout=60_000)
    page.locator(".st-key-chat_model").click()
    page.get_by_role("option", name="chat").click()
    page.get_by_placeholder("Ask about the attached images…").fill("hello cluster")
    page.keyboard.press("Enter")
    page.get_by_text(re.compile(r"\[chat\]")).first.wait_for(timeout=120_000)
    page.screenshot(path=str(tmp_path / "cluster-chat.png"), full_page=True)
    assert "chat" in cluster.status()["residents"]


def test_killed_replica_fails_its_requests_with_502_and_leaves_no_orphan(cluster: Cluster) -> None:
    result: dict[str, Any] = {}
    first_chunk = threading.Event()

    def plain() -> None:  # "slow" waits 6 s before answering
        result["plain"] = cluster.chat("slow", "long")

    def streamed() -> None:  # then 30 chunks, 0.3 s apart
        with cluster.http.stream(
            "POST",
            "/v1/chat/completions",
            json={"model": "slow", "stream": True, "max_tokens": 30, "messages": [{"role": "user", "content": "long"}]},
        ) as r:
            result["stream_status"] = r.status_code
            result["stream"] = []
            for line in r.iter_lines():
                if line.startswith("data:") and line[5:].strip() != "[DONE]":
                    result["stream"].append(json.loads(line[5:]))
                    first_chunk.set()

    threads = [threading.Thread(target=streamed), threading.Thread(target=plain)]
    threads[0].start()
    assert first_chunk.wait(120)
    threads[1].start()
    # A document job's two pages (jobs_concurrency 2) on the same replica: they too die with it.
    pdf = pdf_bytes(render_pages(page_texts(2)).images, dpi=DPI)
    reader = Client(cluster.url, api_key=READER_KEY)
    job = reader.submit_job(content=pdf, filename="two.pdf", model="slow", mode="text", dpi=DPI)
    st = cluster.wait_for(
        lambda: (s := cluster.status())["models"]["slow"]["in_flight"] >= 4 and s, 60, "four requests in flight"
    )
    victim = next(r for r in st["replicas"] if r["resident"] == "slow")
    workers = [s for s in cluster.spawns() if s.parent == victim["pid"] and alive(s.pid)]
    assert len(workers) == 1
    os.kill(victim["pid"], signal.SIGKILL)
    for t in threads:
        t.join(120)
    assert result["plain"].status_code == 502, result["plain"].text
    assert result["plain"].json()["error"]["code"] == "replica_failed"
    assert result["stream_status"] == 200  # the head was sent before the replica died ...
    assert result["stream"][-1]["error"]["code"] == "replica_failed"  # ... so the stream ends with an error
    # Ray starts a replica in the dead one's place; it claims the free slot and stops the orphan.
    cluster.wait_for(lambda: not alive(workers[0].pid), 120, "the dead replica's worker stopped")
    cluster.wait_for(
        lambda: (
            len(reps := cluster.status_or_none()["replicas"]) == 2
            and victim["replica"] not in {r["replica"] for r in reps}
        ),
        120,
        "a replacement replica reporting",
    )
    assert cluster.chat("slow", "again").status_code == 200
    # The job's pages failed with the replica (one try each) and were read again on another.
    final = job.wait(timeout=240)
    assert final["state"] == "done" and [p["tries"] for p in final["pages"]] == [2, 2], final
    for model in cluster.status()["residents"]:
        if model != "slow":
            _ocr(cluster, model)


def test_sigterm_stops_every_backend_and_ray(cluster: Cluster, sampler: AwakeSampler) -> None:
    sampler.stop()
    assert max(sampler.worst.values()) == 1, sampler.worst
    spawned = cluster.spawns()
    assert spawned
    t0 = time.monotonic()
    assert cluster.stop() == 0, cluster.log()[-3000:]
    assert time.monotonic() - t0 < 60
    assert not [s for s in spawned if alive(s.pid)]
