"""One way in, through a real gateway: a job is its owner's, and its pages are the owner's requests.

Three profiles on one gateway: alice and bob may use the same model, ops is an admin. bob
must not see, read, follow or cancel alice's job; her pages count in her usage and in the
request metrics, and obey her rate limit and her priority like her chat does.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time
from typing import Any

import httpx
import pytest
import yaml

from tests.gateway_e2e.conftest import fault_model
from tests.jobs.conftest import DPI

ALICE, BOB, OPS, BOT = "alice-key-0001", "bob-key-0002", "ops-key-0003", "bot-key-0004"


def with_profiles(gateways: Any, models: dict[str, Any], profiles: dict[str, Any], **settings: Any) -> Any:
    gw = gateways(models, start=False, **settings)
    data = yaml.safe_load(gw.config.read_text())
    data["profiles"] = profiles
    gw.config.write_text(yaml.safe_dump(data))
    return gw.start()


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def as_(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def submit(gw: Any, key: str, data: bytes, model: str = "a", **fields: str) -> str:
    r = gw.http.post(
        "/api/jobs",
        headers=as_(key),
        files={"file": ("doc.pdf", data, "application/pdf")},
        data={"model": model, "mode": "text", "dpi": str(DPI), **fields},
    )
    assert r.status_code == 202, r.text
    return str(r.json()["id"])


def wait_done(gw: Any, key: str, job_id: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        j = gw.http.get(f"/api/jobs/{job_id}", headers=as_(key)).json()
        if j["state"] in ("done", "failed", "cancelled"):
            return j
        assert time.monotonic() < deadline, f"job not finished: {j}"
        time.sleep(0.1)


@pytest.fixture
def gw(gateways: Any) -> Any:
    profiles = {
        "alice": {"key_sha256": sha(ALICE), "models": ["a"]},
        "bob": {"key_sha256": sha(BOB), "models": ["a"]},
        "ops": {"key_sha256": sha(OPS), "admin": True},
    }
    return with_profiles(gateways, {"a": fault_model()}, profiles)


def test_another_profile_cannot_see_read_follow_or_cancel_a_job_it_did_not_submit(gw, pdf3):
    job_id = submit(gw, ALICE, pdf3)
    wait_done(gw, ALICE, job_id)
    for method, path in (
        ("GET", f"/api/jobs/{job_id}"),
        ("GET", f"/api/jobs/{job_id}/events"),
        ("GET", f"/api/jobs/{job_id}/result"),
        ("GET", f"/api/jobs/{job_id}/pages/1"),
        ("GET", f"/api/jobs/{job_id}/pages/1/image"),
        ("DELETE", f"/api/jobs/{job_id}"),
    ):
        r = gw.http.request(method, path, headers=as_(BOB))
        assert r.status_code == 404, (method, path, r.status_code)
        assert r.json()["error"]["code"] == "job_not_found"
    assert gw.http.get("/api/jobs", headers=as_(BOB)).json()["data"] == []
    mine = gw.http.get("/api/jobs", headers=as_(ALICE)).json()["data"]
    assert [j["id"] for j in mine] == [job_id] and mine[0]["owner"] == "alice"
    assert gw.http.get(f"/api/jobs/{job_id}/result", headers=as_(ALICE)).status_code == 200
    # an admin sees every job, and may cancel or purge it
    assert [j["id"] for j in gw.http.get("/api/jobs", headers=as_(OPS)).json()["data"]] == [job_id]
    assert gw.http.get(f"/api/jobs/{job_id}", headers=as_(OPS)).json()["owner"] == "alice"
    assert gw.http.delete(f"/api/jobs/{job_id}?purge=true", headers=as_(OPS)).status_code == 200
    assert gw.http.get(f"/api/jobs/{job_id}", headers=as_(ALICE)).status_code == 404


def test_a_running_job_cannot_be_cancelled_by_another_profile(gw, pdf6):
    job_id = submit(gw, ALICE, pdf6)
    assert gw.http.delete(f"/api/jobs/{job_id}", headers=as_(BOB)).status_code == 404
    assert wait_done(gw, ALICE, job_id)["state"] == "done"  # bob's DELETE changed nothing


def test_a_jobs_pages_count_in_its_owners_usage_and_in_the_request_metrics(gw, pdf3):
    before = gw.http.get("/api/usage", headers=as_(OPS)).json()["profiles"]
    job_id = submit(gw, ALICE, pdf3)
    assert wait_done(gw, ALICE, job_id)["pages_done"] == 3
    usage = gw.http.get("/api/usage", headers=as_(OPS)).json()["profiles"]
    alice = usage["alice"]
    assert alice["requests"] - before.get("alice", {}).get("requests", 0) == 3
    assert alice["tokens"] > 0 and alice["gpu_seconds"] > 0
    assert "bob" not in usage
    assert gw.http.get("/api/usage", headers=as_(ALICE)).json()["profiles"] == {"alice": alice}
    metrics = gw.http.get("/metrics", headers=as_(OPS)).text
    count = re.search(r'vlmswap_requests_total\{model="a",status="200"\} (\d+)', metrics)
    assert count is not None and int(float(count.group(1))) >= 3


def test_job_pages_obey_the_owners_rate_limit(gateways, pdf3):
    profiles = {
        "bot": {"key_sha256": sha(BOT), "requests_per_minute": 2},
        "ops": {"key_sha256": sha(OPS), "admin": True},
    }
    gw = with_profiles(gateways, {"a": fault_model()}, profiles)
    job_id = submit(gw, BOT, pdf3)
    deadline = time.monotonic() + 60
    while gw.http.get(f"/api/jobs/{job_id}", headers=as_(BOT)).json()["pages_done"] < 2:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    time.sleep(1.5)  # the third page waits for the minute to turn, without spending a try
    j = gw.http.get(f"/api/jobs/{job_id}", headers=as_(BOT)).json()
    assert j["state"] == "running" and j["pages_done"] == 2 and j["pages_failed"] == 0
    r = gw.http.post(
        "/v1/chat/completions", headers=as_(BOT), json={"model": "a", "messages": [{"role": "user", "content": "hi"}]}
    )
    assert r.status_code == 429  # the job's pages used the profile's budget, as its chat would
    assert gw.http.get("/api/usage", headers=as_(OPS)).json()["profiles"]["bot"]["requests"] == 2
    gw.http.delete(f"/api/jobs/{job_id}", headers=as_(BOT))


def test_api_ocr_pages_obey_the_rate_limit_and_count_in_usage(gateways, pdf3):
    profiles = {
        "bot": {"key_sha256": sha(BOT), "requests_per_minute": 2},
        "ops": {"key_sha256": sha(OPS), "admin": True},
    }
    gw = with_profiles(gateways, {"a": fault_model()}, profiles)
    r = gw.http.post(
        "/api/ocr",
        headers=as_(BOT),
        files={"file": ("doc.pdf", pdf3, "application/pdf")},
        data={"model": "a", "mode": "text", "dpi": str(DPI)},
    )
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert gw.http.get("/api/usage", headers=as_(OPS)).json()["profiles"]["bot"]["requests"] == 2


def test_a_jobs_pages_carry_the_owners_priority(gateways, pdf3):
    """a is busy; lo's chat for c queues first, then hi's one-page job for b: b goes next."""
    profiles = {
        "hi": {"key_sha256": sha(ALICE), "priority": 5},
        "lo": {"key_sha256": sha(BOB)},
        "ops": {"key_sha256": sha(OPS), "admin": True},
    }
    models = {"a": fault_model("--response-delay", "3"), "b": fault_model(), "c": fault_model()}
    gw = with_profiles(gateways, models, profiles, max_wait_s=60)
    finished: dict[str, float] = {}

    def chat(model: str) -> None:
        with httpx.Client(base_url=gw.url, timeout=60, trust_env=False) as http:
            body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            assert http.post("/v1/chat/completions", headers=as_(BOB), json=body).status_code == 200
        finished[model] = time.time()  # wall clock, as the gateway's finished_at

    busy = threading.Thread(target=chat, args=("a",))
    busy.start()
    gw.wait_for(lambda: gw.http.get("/api/status", headers=as_(OPS)).json()["models"]["a"]["in_flight"] == 1)
    low = threading.Thread(target=chat, args=("c",))
    low.start()
    gw.wait_for(lambda: gw.http.get("/api/status", headers=as_(OPS)).json()["models"]["c"]["queued"] == 1)
    job_id = submit(gw, ALICE, pdf3, model="b", pages="1")
    j = wait_done(gw, ALICE, job_id)
    busy.join(60)
    low.join(60)
    assert j["pages_done"] == 1 and "a" in finished
    page_done = j["pages"][0]["finished_at"]  # when the gateway stored the page's answer
    assert page_done < finished["c"], "the low-priority request for c was served before the high-priority job"
