"""`vlmswap ocr --gateway` as document jobs, and `vlmswap jobs ...`, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time

import pytest

from tests.jobs.conftest import DPI, fault_model, rapidocr_model, wait_job
from tests.support import PY
from vlmswap.documents.layout import Document

pytestmark = pytest.mark.timeout(300)


def vlmswap(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VLMSWAP_GATEWAY", "VLMSWAP_API_KEY")}
    return subprocess.run([PY, "-m", "vlmswap", *args], capture_output=True, text=True, timeout=timeout, env=env)


def test_ocr_through_the_gateway_is_a_job_and_the_jobs_commands_see_it(gateways, pdf3, tmp_path):
    gw = gateways({"ocr": rapidocr_model()})
    src = tmp_path / "scan.pdf"
    src.write_bytes(pdf3)
    out = tmp_path / "out"
    proc = vlmswap(
        "ocr",
        str(src),
        "--gateway",
        gw.url,
        "--model",
        "ocr",
        "--dpi",
        str(DPI),
        "--out",
        str(out),
        "--format",
        "json,md,png",
    )
    assert proc.returncode == 0, proc.stderr
    doc = Document.from_dict(json.loads((out / "scan.json").read_text()))
    assert [p.number for p in doc.pages] == [1, 2, 3]
    assert all(f"Page {p.number} of the job test." in p.text for p in doc.pages)
    assert (out / "scan.md").exists() and (out / "scan.page0002.png").exists() and (out / "scan.page0003.json").exists()
    assert "3 pages" not in proc.stdout and "wrote" in proc.stderr

    jobs = json.loads(vlmswap("jobs", "list", "--gateway", gw.url, "--json").stdout)
    assert len(jobs) == 1 and jobs[0]["state"] == "done" and jobs[0]["source"] == "scan.pdf"
    jid = jobs[0]["id"]
    listed = vlmswap("jobs", "list", "--gateway", gw.url)
    assert jid in listed.stdout and "3/3" in listed.stdout
    shown = vlmswap("jobs", "show", jid, "--gateway", gw.url)
    assert shown.returncode == 0 and "3/3 done, 0 failed" in shown.stdout
    as_json = vlmswap("jobs", "result", jid, "--gateway", gw.url, "--format", "json")
    assert [p["number"] for p in json.loads(as_json.stdout)["pages"]] == [1, 2, 3]
    md = vlmswap("jobs", "result", jid, "--gateway", gw.url, "--format", "md")
    assert md.returncode == 0 and "The quick brown fox number 3." in md.stdout
    z = vlmswap("jobs", "result", jid, "--gateway", gw.url, "--format", "zip", "--out", str(tmp_path / "r.zip"))
    assert z.returncode == 0 and (tmp_path / "r.zip").read_bytes()[:2] == b"PK"
    missing = vlmswap("jobs", "show", "nope", "--gateway", gw.url)
    assert missing.returncode == 1 and "no document job 'nope'" in missing.stderr

    # A bad file is one line naming it; the good one is still read; exit 2.
    bad = tmp_path / "notes.pdf"
    bad.write_bytes(b"not a pdf at all")
    mixed = vlmswap(
        "ocr",
        str(bad),
        str(src),
        "--gateway",
        gw.url,
        "--model",
        "ocr",
        "--pages",
        "1",
        "--dpi",
        str(DPI),
        "--out",
        str(tmp_path / "o2"),
        "--format",
        "json",
    )
    assert mixed.returncode == 2
    assert f"{bad}: not an image or PDF" in mixed.stderr
    assert (tmp_path / "o2" / "scan.json").exists()


def test_ctrl_c_cancels_the_job_on_the_gateway(gateways, pdf3, tmp_path):
    gw = gateways({"slow": fault_model("--response-delay", "3", family="generic")}, jobs_concurrency=1)
    src = tmp_path / "long.pdf"
    src.write_bytes(pdf3)
    env = {k: v for k, v in os.environ.items() if k != "VLMSWAP_GATEWAY"}
    proc = subprocess.Popen(
        [
            PY,
            "-m",
            "vlmswap",
            "ocr",
            str(src),
            "--gateway",
            gw.url,
            "--model",
            "slow",
            "--dpi",
            str(DPI),
            "--out",
            str(tmp_path / "o"),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        deadline = time.monotonic() + 60
        while not gw.http.get("/api/jobs").json()["data"]:
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.1)
        jid = gw.http.get("/api/jobs").json()["data"][0]["id"]
        wait_job(gw, jid, lambda j: j["pages_done"] >= 1, 60, "a page done")
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert "cancelled: long.pdf (job " in err
    j = wait_job(gw, jid, lambda j: j["state"] == "cancelled", 10, "cancelled")
    assert 1 <= j["pages_done"] < 3


def test_ocr_through_a_server_without_document_jobs_reads_page_by_page(pdf3, tmp_path):
    """An older gateway (or any OpenAI-compatible server: here the fault server) has no /api/jobs:
    `vlmswap ocr --gateway` says so and sends the pages one by one through its chat API."""
    from tests.servers import FAULT_SERVER
    from tests.support import free_port, running

    port = free_port()
    src = tmp_path / "scan.pdf"
    src.write_bytes(pdf3)
    argv = [PY, str(FAULT_SERVER), "--port", str(port), "--served-model-name", "old"]
    with running(argv, f"http://127.0.0.1:{port}/health", timeout=60):
        proc = vlmswap(
            "ocr", str(src), "--gateway", f"http://127.0.0.1:{port}", "--model", "old", "--mode", "text",
            "--format", "json", "--out", str(tmp_path / "out"), "--dpi", str(DPI),
        )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "serves no document jobs" in proc.stderr
    doc = Document.from_dict(json.loads((tmp_path / "out" / "scan.json").read_text()))
    assert [p.number for p in doc.pages] == [1, 2, 3] and all("[old]" in p.text for p in doc.pages)
