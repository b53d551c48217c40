"""The sleeping pool's order: LRU's and the predictive one, each with a fake clock and fake costs."""

from __future__ import annotations

import math

from vlmswap.swap.keeping import QUEUED, Lru, Predictive, order_for
from vlmswap.swap.pool import Sleeper, plan_sleep
from vlmswap.swap.predictor import Predictor
from vlmswap.swap.priors import Costs

GIB = 1024**3
COSTS = {
    "a": Costs(100.0, 1.0, 2.0, "declared"),
    "b": Costs(100.0, 1.0, 2.0, "declared"),
    "c": Costs(10.0, 1.0, 2.0, "declared"),
}


def predictive(p: Predictor, now: list[float], queued: dict[str, int] | None = None) -> Predictive:
    q = queued or {}
    return Predictive(p, COSTS.__getitem__, lambda m: q.get(m, 0), lambda: now[0])


def test_lru_keeps_the_most_recently_used_and_always_lets_the_retiring_model_join():
    used = {"a": 5.0, "b": 9.0}
    order = Lru(used.__getitem__, lambda: 10.0)
    assert order.keep("a") < order.keep("b")
    assert math.isinf(order.worth("a"))
    assert "5 s ago" in order.why("a")


def test_predictive_worth_is_the_chance_times_what_a_wake_saves():
    now = [50.0]
    p = Predictor(COSTS, horizon_s=30)
    order = predictive(p, now)
    assert order.keep("a") == p.chance("a", 50.0) * 99.0
    assert order.worth("c") == p.chance("c", 50.0) * 9.0
    assert "saves 99.0 s (declared)" in order.why("a")


def test_a_model_with_queued_requests_outranks_every_guess():
    p = Predictor(COSTS, horizon_s=30)
    for i in range(200):
        p.observe("ab"[i % 2], i * 5.0)  # a and b, turn about: both are sure to come back
    order = predictive(p, [1000.0], queued={"c": 1})
    assert order.keep("c") > QUEUED > order.keep("a")
    assert "queued" in order.why("c")


def test_the_eviction_order_follows_what_the_predictor_learned():
    """A cycle a -> b -> c: asleep are a (due after the next) and b (due next); the one due later goes."""
    p = Predictor(COSTS, horizon_s=30, hour_of=lambda _t: 0)
    t = 0.0
    for _ in range(60):
        for m in "abc":
            p.observe(m, t)
            t += 10
        t += 60
    now = [t - 60 + 5]  # c has just been asked; b comes after the next a, ten seconds later
    p.observe("a", now[0])
    order = predictive(p, now)
    pool = [Sleeper("b", GIB, 0, order.keep("b"), 1.0), Sleeper("c", GIB, 0, order.keep("c"), 2.0)]
    plan = plan_sleep("a", GIB, pool, max_sleeping=2, ram_budget_bytes=100 * GIB, worth=order.worth("a"))
    assert plan.fits and plan.evict == ("c",), (order.keep("b"), order.keep("c"), order.worth("a"))
    lru = Lru({"b": 1.0, "c": 2.0, "a": 3.0}.__getitem__, lambda: now[0])
    pool_lru = [Sleeper("b", GIB, 0, lru.keep("b"), 1.0), Sleeper("c", GIB, 0, lru.keep("c"), 2.0)]
    assert plan_sleep("a", GIB, pool_lru, max_sleeping=2, ram_budget_bytes=100 * GIB).evict == ("b",)


def test_order_for_picks_the_setting():
    p = Predictor(COSTS)
    for policy in ("lru", "predictive"):
        order = order_for(
            policy,  # type: ignore[arg-type]
            last_used=lambda m: 0.0,
            now=lambda: 0.0,
            predictor=p,
            costs=COSTS.__getitem__,
            queued=lambda m: 0,
            wall=lambda: 0.0,
        )
        assert order.policy == policy
