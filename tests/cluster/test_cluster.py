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
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import openai
from PIL import Image
from prometheus_client.parser import text_string_to_metric_families

from tests.cluster.conftest import ADMIN_KEY, AwakeSampler, Cluster, alive, bearer
from tests.support import ROOT
from vlmswap import Client

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


def test_unknown_model_and_bad_json_get_openai_errors_at_the_ingress(cluster: Cluster) -> None:
    r = cluster.chat("no-such-model")
    assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
    r = cluster.http.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"


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
    st = cluster.wait_for(
        lambda: (s := cluster.status())["models"]["slow"]["in_flight"] >= 2 and s, 60, "two requests in flight"
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
