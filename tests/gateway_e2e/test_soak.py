"""The short soak: bench/soak.py with 300 requests, a fault every 20 (every kind at least once),
the gateway SIGKILLed and restarted halfway. The long run's figures are in docs/reliability.md."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench import soak

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]

# Bad inputs the gateway is known to answer wrongly (none now: the deeply nested JSON body that
# the soak found is a 400 since, pinned by tests/gateway/test_hostile_bodies.py).
KNOWN_PROXY_BUGS: set[str] = set()


def test_every_accepted_request_is_answered_through_backend_and_gateway_kills(tmp_path: Path):
    r = soak.run(requests=300, clients=30, seed=2, tmp=tmp_path, latency_probes=50, fault_every=20)
    lost = [d for d in r["lost_details"] if not any(f"malformed {b}:" in d for b in KNOWN_PROXY_BUGS)]
    assert r["hung"] == 0 and not lost, r["lost_details"]
    assert (
        r["accepted"]
        == r["answered_or_error"] + r["results"].get("left", 0) + r["results"].get("gave_up", 0) + r["lost"]
    )
    assert r["invariant"]["max_backends"] <= 1 and r["invariant"]["samples"] > 100
    assert r["processes_left"] == 0
    assert set(r["faults"]) == {*soak.FAULTS, "gateway_sigkill_restart"}, r["fault_notes"]
    # A floor, not a throughput figure: the gateway served traffic between the faults. How much
    # depends on how long the killed models' backoffs last when the clients arrive (503s then):
    # 14-47 % of the accepted requests over repeated runs here, the code before the scheduler's
    # unification alike.
    assert r["results"].get("answered", 0) >= 0.1 * r["accepted"]
    assert r["gateway_after"]["fds"] <= r["gateway_before"]["fds"] + 30  # nothing piles up per request
    for name, got in r["bad_inputs"].items():
        if name not in KNOWN_PROXY_BUGS:
            assert got and all(k.startswith("4") or k == "cut_by_gateway_kill" for k in got), (name, got)
