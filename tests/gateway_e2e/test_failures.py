"""The gateway process end to end: a backend crash, a gateway killed hard, signals to the gateway."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest

from tests.gateway_e2e.conftest import fault_model
from tests.support import free_port

pytestmark = pytest.mark.timeout(120)


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def load(gw, name: str) -> dict:
    r = gw.http.post(f"/api/models/{name}/load")
    assert r.status_code < 300, r.text
    return gw.wait_for(lambda: (m := gw.model(name))["state"] == "ready" and m, 30, f"{name} ready")


def test_crash_while_ready_gives_502_then_the_next_request_starts_it_again(gateways):
    gw = gateways({"m": fault_model("--response-delay", "1.5")}, backoff_initial_s=0.2)
    before = load(gw, "m")
    pid = before["pids"][0]
    results: list = [None] * 3

    def ask(i: int) -> None:
        t0 = time.monotonic()
        r = gw.chat("m", f"question {i}")
        results[i] = (r, time.monotonic() - t0)

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    gw.wait_for(lambda: gw.status()["in_flight"] == 3, 10, "3 requests in flight")
    os.kill(pid, signal.SIGKILL)
    for t in threads:
        t.join(30)
    for r, took in results:
        assert r.status_code == 502, r.text
        err = r.json()["error"]
        assert "m" in err["message"] and err["message"], err
        assert took < 1.5 + 1.0, f"a 502 should come when the backend dies, not after {took:.1f} s"
    st = gw.wait_for(lambda: (m := gw.model("m"))["state"] == "failed" and m, 10, "m failed")
    assert st["last_error"]
    assert not alive(pid)

    # The next request starts it again (after the short backoff: 503 + Retry-After meanwhile).
    deadline = time.monotonic() + 30
    while True:
        r = gw.chat("m", "again")
        if r.status_code == 200:
            break
        assert r.status_code == 503 and "retry-after" in r.headers, (r.status_code, r.text)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert "[m] echo: again" in r.json()["choices"][0]["message"]["content"]
    after = gw.model("m")
    assert after["state"] == "ready" and after["starts"] == 2 and after["pids"][0] != pid


def test_gateway_killed_hard_leaves_a_backend_the_next_gateway_stops(gateways):
    port = free_port()
    gw1 = gateways({"m": fault_model(port=port)})
    pid = load(gw1, "m")["pids"][0]
    os.kill(gw1.proc.pid, signal.SIGKILL)
    gw1.proc.wait(10)
    time.sleep(0.2)
    assert alive(pid), "the backend should outlive a SIGKILLed gateway (that is the problem solved here)"

    gw2 = gateways({"m": fault_model(port=port)}, state_dir=gw1.state_dir)
    assert not alive(pid), "the new gateway did not stop the orphaned backend"
    assert f"stopped orphaned backend m (pid {pid}) left by an earlier gateway" in gw2.log()
    # and the fixed port is free again for its own start
    r = gw2.chat("m", "after cleanup")
    assert r.status_code == 200, r.text


@pytest.mark.parametrize(
    "sig,flags",
    [
        (signal.SIGTERM, ["--child"]),
        (signal.SIGINT, ["--child", "--ignore-sigterm"]),
    ],
    ids=["sigterm", "sigint-backend-ignores-sigterm"],
)
def test_signal_to_gateway_leaves_no_backend_running(gateways, sig, flags):
    gw = gateways({"m": fault_model(*flags)}, stop_grace_s=0.5)
    pids = set(load(gw, "m")["pids"])
    assert len(pids) == 2, pids  # the server and its child
    gw.signal(sig)
    gw.proc.wait(30)
    assert not any(alive(p) for p in pids), [p for p in pids if alive(p)]
    assert not list((gw.state_dir / "pids").glob("*.json"))


def test_sigterm_during_a_start_leaves_nothing_and_answers_the_waiting_request(gateways):
    gw = gateways({"slow": fault_model("--startup-delay", "20", "--child")}, stop_grace_s=0.5)
    answer: list = []
    t = threading.Thread(target=lambda: answer.append(gw.chat("slow", "x")), daemon=True)
    t.start()
    st = gw.wait_for(
        lambda: (m := gw.model("slow"))["state"] == "starting" and len(m.get("pids") or []) == 2 and m,
        20,
        "slow starting",
    )
    pids = set(st["pids"])
    t0 = time.monotonic()
    gw.signal(signal.SIGTERM)
    t.join(30)
    took = time.monotonic() - t0
    gw.proc.wait(30)
    assert not any(alive(p) for p in pids)
    assert not list((gw.state_dir / "pids").glob("*.json"))
    # The queued request is answered, not cut: 503 with Retry-After, before uvicorn's 5 s grace.
    assert answer and answer[0].status_code == 503, answer
    assert "shutting down" in answer[0].json()["error"]["message"]
    assert answer[0].headers.get("retry-after")
    assert took < 4.0, f"the waiting request was answered after {took:.1f} s"
