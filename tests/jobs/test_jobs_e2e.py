"""Document jobs end to end: a real gateway process, real rapidocr workers, real signals."""

from __future__ import annotations

import io
import json
import signal
import threading
import time
import zipfile

import httpx
import pytest

from tests.documents.conftest import render_pages
from tests.documents.test_api import BAD
from tests.gateway_e2e.conftest import Gateway
from tests.jobs.conftest import DPI, fault_model, job, rapidocr_model, submit, wait_job
from vlmswap import Client
from vlmswap.documents.layout import Document

pytestmark = pytest.mark.timeout(300)


def test_a_pdf_job_runs_through_its_events_to_done(gateways, pdf3):
    gw = gateways({"ocr": rapidocr_model()})
    client = Client(gw.url)
    handle = client.submit_job(content=pdf3, filename="report.pdf", model="ocr", dpi=DPI)
    assert handle.info["state"] == "queued" and handle.info["pages_total"] == 3
    seen = []
    final = handle.wait(timeout=240, on_event=seen.append)

    assert seen[0]["step"] == "snapshot" and seen[0]["pages_total"] == 3
    pages = [e for e in seen if e["step"] == "page"]
    assert sorted(e["page"] for e in pages) == [1, 2, 3] and all(e["page_state"] == "done" for e in pages)
    assert [e["pages_done"] for e in pages] == [1, 2, 3]
    assert seen[-1]["step"] == "ended" and seen[-1]["state"] == "done"
    assert final["state"] == "done" and final["pages_done"] == 3 and final["pages_failed"] == 0
    assert all(p["state"] == "done" and p["tries"] == 1 and p["seconds"] > 0 for p in final["pages"])
    assert final["eta_s"] == 0.0

    doc = handle.result()
    assert isinstance(doc, Document) and [p.number for p in doc.pages] == [1, 2, 3]
    for p in doc.pages:
        assert f"Page {p.number} of the job test." in p.text
        assert all(b.bbox is not None for b in p.blocks)
    md = handle.result("md")
    assert "<!-- page 3 -->" in md and "The quick brown fox number 2." in md
    with zipfile.ZipFile(io.BytesIO(handle.result("zip"))) as zf:
        names = set(zf.namelist())
    assert {"report.json", "report.md", "report.page0001.png", "report.page0003.json"} <= names
    assert handle.page(2).number == 2
    assert client.jobs()[0]["id"] == handle.id

    # A client that connects after the end gets the state so far, then `ended`, then the stream closes.
    late = list(client.job(handle.id).events(timeout=30))
    assert [e["step"] for e in late] == ["snapshot", "ended"] and late[0]["pages_done"] == 3


def test_gateway_killed_mid_job_finishes_it_after_restart_without_redoing_pages(gateways, pdf6, tmp_path):
    models = {"ocr": rapidocr_model()}
    gw = gateways(models, jobs_concurrency=1)
    r = submit(gw, pdf6, model="ocr")
    assert r.status_code == 202, r.text
    jid = r.json()["id"]
    follower: dict = {}  # a client following the job across the kill and restart
    thread = threading.Thread(
        target=lambda: follower.update(Client(gw.url).job(jid).wait(timeout=280, reconnect_for=120)), daemon=True
    )
    thread.start()
    before = wait_job(gw, jid, lambda j: j["pages_done"] >= 2, what="two pages done")
    gw.signal(signal.SIGKILL)  # no shutdown code runs: the state dir is all there is
    gw.proc.wait(10)
    done_before = {p["number"]: p["finished_at"] for p in before["pages"] if p["state"] == "done"}
    files = {n: (gw.state_dir / "jobs" / jid / "pages" / f"{n:04d}.json").stat().st_mtime_ns for n in done_before}

    again = Gateway(tmp_path, models, state_dir=gw.state_dir, jobs_concurrency=1)
    again.port, again.url, again.http = gw.port, gw.url, httpx.Client(base_url=gw.url, timeout=60, trust_env=False)
    again.start()  # on the same port: the follower reconnects to it
    try:
        end = wait_job(again, jid, lambda j: j["state"] in ("done", "failed", "cancelled"), 240, "the job ended")
        thread.join(60)
        assert follower.get("state") == "done" and follower.get("pages_done") == 6, follower
        assert end["state"] == "done" and end["pages_done"] == 6 and end["pages_failed"] == 0, end
        for p in end["pages"]:
            if p["number"] in done_before:  # read before the kill: not read again
                assert p["finished_at"] == done_before[p["number"]] and p["tries"] == 1, p
                path = again.state_dir / "jobs" / jid / "pages" / f"{p['number']:04d}.json"
                assert path.stat().st_mtime_ns == files[p["number"]]
        assert "resuming document job " + jid in again.log()
        doc = Document.from_dict(again.http.get(f"/api/jobs/{jid}/result").json())
        assert [p.number for p in doc.pages] == [1, 2, 3, 4, 5, 6]
        assert all(f"Page {p.number} of the job test." in p.text for p in doc.pages)
    finally:
        again.stop()


def test_sigterm_mid_job_leaves_no_page_lost_and_the_restart_finishes_it(gateways, pdf6, tmp_path):
    models = {"ocr": rapidocr_model()}
    gw = gateways(models, jobs_concurrency=2)
    jid = submit(gw, pdf6, model="ocr").json()["id"]
    seen = []  # at most jobs_concurrency pages asked of the model at once

    def sample(j: dict) -> bool:
        m = gw.model("ocr")
        seen.append(m["in_flight"] + m["queued"])
        return j["pages_done"] >= 2

    wait_job(gw, jid, sample, what="two pages done")
    assert max(seen) == 2, seen
    gw.signal(signal.SIGTERM)
    assert gw.proc.wait(60) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal once shut down
    log = gw.log()
    assert "Task was destroyed" not in log and "Traceback" not in log, log[-3000:]

    again = Gateway(tmp_path, models, state_dir=gw.state_dir, jobs_concurrency=2).start()
    try:
        j = job(again, jid)
        assert j["pages_failed"] == 0 and all(p["state"] != "running" or p["tries"] <= 1 for p in j["pages"])
        end = wait_job(again, jid, lambda j: j["state"] == "done", 240, "the job done")
        assert end["pages_done"] == 6 and all(p["tries"] == 1 for p in end["pages"]), end
    finally:
        again.stop()


def test_cancel_mid_job_keeps_the_pages_done_and_reads_no_more(gateways, pdf6):
    gw = gateways({"ocr": rapidocr_model()}, jobs_concurrency=1)
    jid = submit(gw, pdf6, model="ocr", pages="1-6").json()["id"]
    wait_job(gw, jid, lambda j: j["pages_done"] >= 1, what="a page done")
    partial = gw.http.get(f"/api/jobs/{jid}/result", params={"format": "md"})
    assert partial.status_code == 206 and partial.headers["x-job-state"] == "running", partial.headers
    assert "<!-- page 1 -->" in partial.text and int(partial.headers["x-pages-done"]) >= 1
    r = gw.http.delete(f"/api/jobs/{jid}")
    assert r.status_code == 200, r.text
    assert r.json()["state"] == "cancelled" and r.json()["purged"] is False
    kept = job(gw, jid)
    assert kept["state"] == "cancelled" and 1 <= kept["pages_done"] < 6
    time.sleep(4)  # longer than a page takes: nothing more is read
    later = job(gw, jid)
    assert later["pages_done"] == kept["pages_done"] and later["state"] == "cancelled"
    assert not [p for p in later["pages"] if p["state"] == "running"]
    assert gw.status()["in_flight"] == 0 and gw.status()["queue_length"] == 0
    res = gw.http.get(f"/api/jobs/{jid}/result")
    assert res.status_code == 200 and res.headers["x-job-state"] == "cancelled"
    assert len(res.json()["pages"]) == kept["pages_done"]
    assert gw.http.delete(f"/api/jobs/{jid}").json()["state"] == "cancelled"  # cancelling again: no change

    assert gw.http.delete(f"/api/jobs/{jid}", params={"purge": "true"}).json()["purged"] is True
    assert gw.http.get(f"/api/jobs/{jid}").status_code == 404
    assert not (gw.state_dir / "jobs" / jid).exists()


def test_a_page_that_fails_twice_is_failed_and_the_job_is_done_with_the_rest(gateways, pdf3):
    # Requests 2 and 3 answer 500: page 2's first try and its retry (one page in flight at a time).
    gw = gateways(
        {"flaky": fault_model("--fail-requests", "2,3", family="generic", capabilities=["ocr"])}, jobs_concurrency=1
    )
    handle = Client(gw.url).submit_job(content=pdf3, filename="flaky.pdf", model="flaky", mode="text", dpi=DPI)
    events = []
    end = handle.wait(timeout=120, on_event=events.append)
    assert end["state"] == "done" and end["pages_done"] == 2 and end["pages_failed"] == 1, end
    p2 = end["pages"][1]
    assert p2["state"] == "failed" and p2["tries"] == 2 and "simulated failure of request 3" in p2["error"]
    assert "try 2" in p2["error"]
    assert [p["tries"] for p in (end["pages"][0], end["pages"][2])] == [1, 1]
    failed = [e for e in events if e["step"] == "page" and e["page_state"] == "failed"]
    assert [e["page"] for e in failed] == [2] and "500" in failed[0]["page_error"]
    assert [p.number for p in handle.result().pages] == [1, 3]
    r = gw.http.get(f"/api/jobs/{handle.id}/pages/2")
    assert r.status_code == 409 and r.json()["error"]["code"] == "page_failed"


def test_the_job_survives_switches_of_its_model(gateways, pdf6):
    """Another model's requests switch the job's model away mid-job; the job's pages queue,
    switch it back, and every page is read once."""
    gw = gateways({"ocr-a": rapidocr_model(), "ocr-b": rapidocr_model()}, jobs_concurrency=1, max_wait_s=1.0)
    jid = submit(gw, pdf6, model="ocr-a").json()["id"]
    wait_job(gw, jid, lambda j: j["pages_done"] >= 1, what="a page done")
    buf = io.BytesIO()
    render_pages([["Interrupting page."]]).images[0].save(buf, "PNG")
    r = gw.http.post("/api/ocr", files={"file": ("x.png", buf.getvalue())}, data={"model": "ocr-b"}, timeout=240)
    assert r.status_code == 200, r.text
    end = wait_job(gw, jid, lambda j: j["state"] == "done", 240, "the job done")
    assert end["pages_done"] == 6 and all(p["tries"] == 1 for p in end["pages"]), end
    assert gw.status()["switches"] >= 3  # to a, to b, back to a


def test_every_bad_upload_is_a_4xx_and_nothing_is_queued(gateways, docs_dir, pdf3):
    gw = gateways(
        {"ocr": rapidocr_model(), "slow": fault_model("--response-delay", "30", family="generic")},
        jobs_max_pages=2,
        jobs_max_upload_mb=0.5,
        jobs_max_queued=1,
    )
    for name, (status, code) in BAD.items():
        r = submit(gw, (docs_dir / name).read_bytes(), name=name, model="ocr")
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"].startswith(f"{name}: ")
    cases = [
        (submit(gw, pdf3, model="ocr"), 413, "too_many_pages", "3 pages asked for, over the limit of 2"),
        (submit(gw, pdf3, model="ocr", pages="2-9"), 400, "page_out_of_range", "outside the document (3 pages)"),
        (submit(gw, pdf3, model="nope"), 404, "model_not_found", "nope"),
        (submit(gw, pdf3, model="ocr", mode="poetry"), 400, "invalid_mode", "unknown mode"),
        (submit(gw, pdf3, model="ocr", dpi="lots"), 400, "invalid_dpi", "dpi must be a number"),
        (submit(gw, pdf3, model="ocr", pages="1", max_tokens="0"), 400, "invalid_max_tokens", "at least 1"),
        (submit(gw, b"%PDF-" + b"x" * 600_000, model="ocr"), 413, "file_too_large", "jobs_max_upload_mb"),
        (
            gw.http.post(
                "/api/jobs",
                files=[("file", ("a.pdf", pdf3)), ("file", ("b.pdf", pdf3))],
                data={"model": "ocr", "pages": "1"},
            ),
            400,
            "too_many_files",
            "one `file` per job",
        ),
        (gw.http.post("/api/jobs", files={"other": ("x", b"1")}), 400, "missing_file", "no `file`"),
        (gw.http.post("/api/jobs", json={"file": "x"}), 415, "unsupported_media_type", "multipart"),
    ]
    for resp, status, code, text in cases:
        assert resp.status_code == status, resp.text
        err = resp.json()["error"]
        assert err["code"] == code and text in err["message"], err
    assert gw.http.get("/api/jobs").json()["data"] == []
    assert [p.name for p in (gw.state_dir / "jobs").iterdir() if p.is_dir()] == []

    # The queue limit: one unfinished job is allowed here, the second gets 429 and queues nothing.
    first = submit(gw, pdf3, model="slow", pages="1")
    assert first.status_code == 202
    second = submit(gw, pdf3, model="ocr", pages="1")
    assert second.status_code == 429 and second.json()["error"]["code"] == "too_many_jobs"
    assert second.headers["retry-after"]
    assert [j["id"] for j in gw.http.get("/api/jobs").json()["data"]] == [first.json()["id"]]
    assert gw.http.get("/health").status_code == 200


def test_unknown_job_and_page_are_404(gateways, pdf3):
    gw = gateways({"ocr": rapidocr_model()})
    for path in ("/api/jobs/nope", "/api/jobs/nope/events", "/api/jobs/nope/result", "/api/jobs/nope/pages/1"):
        r = gw.http.get(path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "job_not_found", (path, r.text)
    assert gw.http.delete("/api/jobs/nope").status_code == 404
    jid = submit(gw, pdf3, model="ocr", pages="1").json()["id"]
    r = gw.http.get(f"/api/jobs/{jid}/pages/3")
    assert r.status_code == 404 and r.json()["error"]["code"] == "page_not_in_job"
    wait_job(gw, jid, lambda j: j["state"] == "done")
    assert json.loads(gw.http.get(f"/api/jobs/{jid}/pages/1").text)["source"] == "doc.pdf"


def test_finished_jobs_are_removed_after_the_retention_period(gateways, pdf3, tmp_path):
    models = {"echo": fault_model(family="generic", capabilities=["ocr"])}
    gw = gateways(models, jobs_retention_h=0.0005)  # 1.8 s
    done = submit(gw, pdf3, model="echo", mode="text").json()["id"]
    wait_job(gw, done, lambda j: j["state"] == "done", 60, "the job done")
    assert (gw.state_dir / "jobs" / done).exists()
    gw.stop()
    time.sleep(2.5)
    again = Gateway(tmp_path, models, state_dir=gw.state_dir, jobs_retention_h=0.0005).start()
    try:
        assert again.http.get(f"/api/jobs/{done}").status_code == 404
        assert not (again.state_dir / "jobs" / done).exists()
    finally:
        again.stop()
