"""The simulator: the real scheduler and pool plans on a virtual clock, checked on traces small enough
to work out by hand."""

from __future__ import annotations

from typing import Any

import pytest

from vlmswap.registry.config import parse_registry
from vlmswap.swap.simulator import Options, Simulation, percentile, simulate
from vlmswap.swap.traces import Request

GIB = 1024**3


def registry(names: str = "abc", **gateway: Any):
    models = {
        n: {
            "served_name": f"org/{n}",
            "cmd": [f"serve-{n}"],
            "vram_gb": 4,
            "sleep_mode": True,
            "expected_start_s": 60,
            "expected_wake_s": 1,
            "expected_sleep_s": 2,
        }
        for n in names
    }
    return parse_registry({"gateway": {"max_wait_s": 60, "sleep_ram_budget_gb": 100, **gateway}, "models": models})


def trace(*items: tuple[float, str] | tuple[float, str, float]) -> list[Request]:
    return [Request(*it) for it in items]


def test_a_cold_start_then_a_wake_then_served_at_once():
    r = simulate(registry(), trace((0, "a"), (100, "b"), (200, "a"), (201, "a")), Options("lru"))
    assert (r.cold_starts, r.wakes, r.switches) == (2, 1, 3)
    # a: waits its start; b: a goes to sleep (2 s), then b starts (60 s); a: b sleeps, a wakes (3 s); the
    # last request arrived during that wake and waits its end
    assert r.waits == [60.0, 62.0, 3.0, 2.0]
    assert r.to_json()["wait_s"] == {"mean": 31.75, "p95": 61.7, "p99": 61.94}  # interpolated, as numpy


def test_without_sleep_mode_every_switch_is_a_cold_start():
    reg = registry()
    for spec in reg.models.values():
        spec.sleep_mode = False
    r = simulate(reg, trace((0, "a"), (100, "b"), (200, "a")), Options("lru"))
    assert (r.cold_starts, r.wakes) == (3, 0)


def test_grouping_serves_queued_requests_for_the_model_together():
    r = simulate(registry(), trace((0, "a"), (1, "b"), (2, "a"), (3, "b"), (4, "a")), Options("lru"))
    assert r.switches == 2  # a a a, then b b: A B A B becomes A A B B


def test_the_starvation_bound_holds_in_simulation_too():
    """a is kept busy by a request every second; b's request, overdue by the time a is ready, gets the
    GPU after the requests queued for a meanwhile (the one exception of the bound) and no others."""
    busy = [(float(t), "a", 1.0) for t in range(200)]
    sim = Simulation(registry(max_wait_s=30), trace(*busy, (10, "b", 1.0)), Options("lru"))
    r = sim.run()
    # a starts (60 s), serves what queued (1 s), sleeps (2 s); b starts (60 s): 123 s after 0, 113 after b came
    assert max(r.waits) == 113.0
    assert r.switches == 3


def test_a_full_pool_lets_the_least_recently_used_go_under_lru():
    reg = registry("abc", max_sleeping=1)
    r = simulate(reg, trace((0, "a"), (100, "b"), (200, "c"), (300, "a")), Options("lru"))
    assert (r.cold_starts, r.wakes) == (4, 0)  # a left the pool for b: its return is cold
    r = simulate(reg, trace((0, "a"), (100, "b"), (200, "c"), (300, "b")), Options("lru"))
    assert (r.cold_starts, r.wakes) == (3, 1)


def test_predictive_keeps_a_cycle_that_lru_keeps_losing():
    """Four models in a fixed order, room for three (one awake, two asleep): LRU evicts exactly the one
    needed next, every time; the predictor learns the order."""
    items, t = [], 0.0
    for _ in range(40):
        for m in "abcd":
            items.append((t, m))
            t += 100  # longer than any switch: nothing queues, every request meets the pool as it is
        t += 100
    reg = registry("abcd", max_sleeping=2)
    lru = simulate(reg, trace(*items), Options("lru"))
    pred = simulate(reg, trace(*items), Options("predictive"))
    oracle = simulate(reg, trace(*items), Options("oracle"))
    assert lru.cold_starts == len(items)  # LRU's worst case: every switch is a cold start
    assert pred.cold_starts < 0.6 * lru.cold_starts
    assert oracle.cold_starts <= pred.cold_starts
    assert pred.wait(99) <= lru.wait(99)


def test_fit_keeps_what_fits_awake_and_switches_no_more():
    reg = registry("abc", policy="fit", gpu_memory_gb=24)
    r = simulate(reg, trace((0, "a"), (100, "b"), (200, "c"), (300, "a"), (400, "b")), Options("lru"))
    assert (r.cold_starts, r.wakes, r.switches) == (3, 0, 3)


def test_a_simulated_card_counts_the_sleepers_residual_before_a_start():
    """A 9.5 GiB card: 4 GiB to start beside two sleepers of 0.8 GiB fits; 8.5 GiB does not, one leaves."""
    reg = registry("abc", max_sleeping=2)
    reg.models["c"].vram_gb = 8.5
    items = trace((0, "a"), (100, "b"), (200, "c"), (300, "a"), (400, "b"))
    without = simulate(reg, items, Options("lru"))
    card = simulate(reg, items, Options("lru", card_bytes=int(9.5 * GIB)))
    assert (without.cold_starts, without.wakes) == (3, 2)
    assert (card.cold_starts, card.wakes) == (4, 1)  # a's residual left for c: a starts cold again


def test_learned_stats_replace_the_declared_costs():
    class Learned:
        def median(self, model: str, metric: str) -> float | None:
            return 5.0 if metric == "cold_start_s" else None

    r = simulate(registry(), trace((0, "a")), Options("lru"), Learned())
    assert r.waits == [5.0]


def test_percentile_interpolates_like_numpy():
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([], 99) == 0.0
    assert percentile([7], 99) == 7


@pytest.mark.parametrize("policy", ["lru", "predictive", "oracle"])
def test_every_request_is_served_once(policy: str):
    import random

    rng = random.Random(3)
    items = sorted((rng.uniform(0, 3000), rng.choice("abc"), rng.uniform(0.1, 5)) for _ in range(300))
    r = simulate(registry(max_sleeping=1), trace(*items), Options(policy))  # type: ignore[arg-type]
    assert r.served == r.requests == 300 and r.rejected == 0 and len(r.waits) == 300
