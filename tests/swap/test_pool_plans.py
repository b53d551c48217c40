"""The sleeping pool's budgets as pure plans: eviction order, protection, limits."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from vlmswap.swap.pool import Sleeper, plan_gpu, plan_sleep

GIB = 1024**3


def sleepers(*spec: tuple[str, float, float, float]) -> list[Sleeper]:
    return [Sleeper(n, int(ram * GIB), int(gpu * GIB), used) for n, ram, gpu, used in spec]


def test_a_model_that_fits_both_budgets_joins_without_evictions():
    plan = plan_sleep(
        "c", 2 * GIB, sleepers(("a", 2, 0.8, 1), ("b", 2, 0.8, 2)), max_sleeping=None, ram_budget_bytes=8 * GIB
    )
    assert plan.fits and plan.evict == ()


def test_ram_budget_evicts_least_recently_used_first():
    pool = sleepers(("new", 3, 0.8, 5), ("old", 3, 0.8, 1), ("mid", 3, 0.8, 3))
    plan = plan_sleep("c", 3 * GIB, pool, max_sleeping=None, ram_budget_bytes=7 * GIB)
    assert plan.fits and plan.evict == ("old", "mid")


def test_max_sleeping_evicts_least_recently_used_first():
    pool = sleepers(("b", 0.1, 0.8, 2), ("a", 0.1, 0.8, 1))
    plan = plan_sleep("c", GIB // 10, pool, max_sleeping=2, ram_budget_bytes=100 * GIB)
    assert plan.fits and plan.evict == ("a",)


def test_protected_sleepers_are_never_evicted_and_the_candidate_is_stopped_instead():
    pool = sleepers(("a", 4, 0.8, 1), ("b", 4, 0.8, 2))
    plan = plan_sleep("c", 4 * GIB, pool, max_sleeping=None, ram_budget_bytes=9 * GIB, protect=frozenset({"a", "b"}))
    assert not plan.fits and plan.evict == () and "budget" in plan.why


def test_protection_skips_to_the_next_least_recently_used():
    pool = sleepers(("a", 4, 0.8, 1), ("b", 4, 0.8, 2))
    plan = plan_sleep("c", 4 * GIB, pool, max_sleeping=None, ram_budget_bytes=9 * GIB, protect=frozenset({"a"}))
    assert plan.fits and plan.evict == ("b",)


def test_a_model_larger_than_the_whole_budget_never_sleeps():
    plan = plan_sleep("c", 10 * GIB, [], max_sleeping=None, ram_budget_bytes=8 * GIB)
    assert not plan.fits and plan.evict == ()


def test_max_sleeping_zero_means_no_pool():
    assert not plan_sleep("c", 0, [], max_sleeping=0, ram_budget_bytes=8 * GIB).fits


def test_gpu_residuals_plus_the_need_must_fit_the_card():
    pool = sleepers(("a", 4, 0.8, 1), ("b", 4, 0.8, 2), ("c", 4, 0.8, 3))
    plan = plan_gpu("t", 10 * GIB, pool, capacity_bytes=12 * GIB)
    assert plan.fits and plan.evict == ("a",)  # 2.4 + 10 > 12; 1.6 + 10 fits


def test_the_target_own_residual_is_not_counted_twice():
    pool = sleepers(("t", 4, 0.8, 1), ("b", 4, 0.8, 2))
    plan = plan_gpu("t", 11 * GIB, pool, capacity_bytes=12 * GIB)
    assert plan.fits and plan.evict == ()


def test_gpu_plan_says_when_even_evicting_every_sleeper_is_not_enough():
    pool = sleepers(("a", 4, 0.8, 1), ("p", 4, 3, 2))
    plan = plan_gpu("t", 10 * GIB, pool, capacity_bytes=12 * GIB, protect=frozenset({"p"}))
    assert not plan.fits and plan.evict == ("a",)


@given(
    st.lists(st.tuples(st.floats(0, 8), st.floats(0, 1), st.floats(0, 100)), max_size=8),
    st.floats(0, 8),
    st.integers(0, 5) | st.none(),
    st.floats(0, 16),
)
def test_a_plan_that_fits_keeps_both_budgets(items, need, max_sleeping, budget):
    pool = [Sleeper(f"m{i}", int(r * GIB), int(g * GIB), u) for i, (r, g, u) in enumerate(items)]
    plan = plan_sleep("new", int(need * GIB), pool, max_sleeping=max_sleeping, ram_budget_bytes=int(budget * GIB))
    left = [s for s in pool if s.name not in plan.evict]
    if plan.fits:
        assert sum(s.ram_bytes for s in left) + int(need * GIB) <= int(budget * GIB)
        assert max_sleeping is None or len(left) + 1 <= max_sleeping
        gone = [s for s in pool if s.name in plan.evict]
        assert all(g.keep <= k.keep for g in gone for k in left)  # least worth keeping first
    else:
        assert plan.evict == ()


def test_a_joining_model_worth_less_than_the_sleeper_it_would_displace_is_refused():
    """Predictive: the model going to sleep is itself ranked; LRU's `worth` is infinite (it always joins)."""
    pool = sleepers(("a", 4, 0.8, 50.0), ("b", 4, 0.8, 10.0))
    refused = plan_sleep("c", 4 * GIB, pool, max_sleeping=2, ram_budget_bytes=100 * GIB, worth=5.0)
    assert not refused.fits and refused.evict == ()
    joins = plan_sleep("c", 4 * GIB, pool, max_sleeping=2, ram_budget_bytes=100 * GIB, worth=20.0)
    assert joins.fits and joins.evict == ("b",)
    lru = plan_sleep("c", 4 * GIB, pool, max_sleeping=2, ram_budget_bytes=100 * GIB)
    assert lru.fits and lru.evict == ("b",)


def test_sleepers_worth_more_together_than_the_joining_model_stay():
    pool = sleepers(("a", 4, 0.8, 30.0), ("b", 4, 0.8, 30.0))
    plan = plan_sleep("c", 8 * GIB, pool, max_sleeping=None, ram_budget_bytes=8 * GIB, worth=40.0)
    assert not plan.fits and "together" in plan.why


def test_equal_worth_leaves_least_recently_used_first():
    pool = [Sleeper("new", GIB, 0, keep=7.0, used=9.0), Sleeper("old", GIB, 0, keep=7.0, used=1.0)]
    plan = plan_sleep("c", GIB, pool, max_sleeping=2, ram_budget_bytes=100 * GIB, worth=7.0)
    assert plan.fits and plan.evict == ("old",)
    assert plan_gpu(
        "t", 10 * GIB, [Sleeper("new", 0, GIB, 7.0, 9.0), Sleeper("old", 0, GIB, 7.0, 1.0)], capacity_bytes=11 * GIB
    ).evict == ("old",)


def test_the_sleeper_about_to_wake_leaves_the_pool_and_makes_room_without_an_eviction():
    pool = sleepers(("waking", 4, 0.8, 1), ("other", 4, 0.8, 2))
    full = plan_sleep("c", 4 * GIB, pool, max_sleeping=2, ram_budget_bytes=100 * GIB)
    assert full.fits and full.evict == ("waking",)  # counted, it would be the one to go
    plan = plan_sleep("c", 4 * GIB, pool, max_sleeping=2, ram_budget_bytes=100 * GIB, waking="waking")
    assert plan.fits and plan.evict == ()
