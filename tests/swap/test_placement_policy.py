"""The scheduler under policy `fit` (Placement), driven with a fake clock: who may be awake together, who makes room."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmswap.swap.policies import Candidate, EvictAll, Placement
from vlmswap.swap.scheduler import (
    Drain,
    FailInFlight,
    Grant,
    ModelPolicy,
    Reject,
    Scheduler,
    SchedulerSettings,
    StartSwitch,
    StopResident,
)
from vlmswap.swap.states import Cause, Residency

GIB = 1024**3
UP = (Residency.READY, Residency.DRAINING)
SIZES = {"a": 4, "b": 4, "c": 6, "huge": 12, "cpu": 0}


class Harness:
    def __init__(self, capacity_gib: float | None = 10, policy=None, **settings):
        policies = {
            m: ModelPolicy(drain_timeout_s=settings.pop("drain_timeout_s", 30.0), ttl_s=settings.pop("ttl_s", None))
            for m in SIZES
        }
        placement = Placement(
            None if capacity_gib is None else int(capacity_gib * GIB), {m: int(g * GIB) for m, g in SIZES.items()}
        )
        self.placement = placement  # the sizes, whichever policy decides
        self.s = Scheduler(policies, SchedulerSettings(**settings), policy or placement)
        self.now = 0.0
        self.ids = itertools.count(1)

    def arrive(self, model):
        i = next(self.ids)
        return i, self.s.request_arrived(i, model, self.now)

    def up(self, *models):
        """Arrive, start, ready: each model becomes awake in turn; returns the request ids."""
        ids = []
        for m in models:
            i, out = self.arrive(m)
            if not any(isinstance(a, Grant) for a in out):
                assert any(isinstance(a, StartSwitch) and a.to_model == m for a in out), out
                out = self.s.switch_done(m, self.now)
                assert Grant(i, m) in out
            ids.append(i)
        return ids


def test_two_models_that_fit_are_awake_together_without_a_drain():
    h = Harness()
    (ia,) = h.up("a")
    ib, out = h.arrive("b")
    assert out == [StartSwitch(None, "b")]  # a stays: 4 + 4 <= 10
    i2, out = h.arrive("a")
    assert out == [Grant(i2, "a")]  # a is served while b loads
    assert Grant(ib, "b") in h.s.switch_done("b", h.now)
    assert sorted(h.s.awake()) == ["a", "b"]


def test_the_third_makes_room_by_retiring_the_least_recently_used_idle_model():
    h = Harness()
    ia, ib = h.up("a", "b")
    h.s.request_finished(ia, h.now)
    h.now = 5
    h.s.request_finished(ib, h.now)
    h.now = 6
    i2, out = h.arrive("b")  # b used last
    h.s.request_finished(i2, h.now)
    ic, out = h.arrive("c")  # 6 GiB: one of the 4s must go, the least recently used: a
    assert Drain("a", "c", 0) in out and StartSwitch("a", "c") in out
    assert Grant(ic, "c") in h.s.switch_done("c", h.now)
    assert sorted(h.s.awake()) == ["b", "c"]


def test_a_busy_model_is_not_chosen_while_an_idle_one_frees_enough():
    h = Harness()
    ia, ib = h.up("a", "b")  # both hold a request in flight
    h.s.request_finished(ib, h.now)  # b idle, a busy, a used less recently
    ic, out = h.arrive("c")
    assert StartSwitch("b", "c") in out and all(not (isinstance(x, Drain) and x.model == "a") for x in out)


def test_a_busy_victim_keeps_serving_until_idle_then_makes_room():
    """Grouping, as under policy single: the model in the way is not drained while it has work."""
    h = Harness(capacity_gib=6)
    (ia,) = h.up("a")
    ic, out = h.arrive("c")  # only a can go, and it is busy
    assert out == []
    i2, out = h.arrive("a")
    assert out == [Grant(i2, "a")]  # c has not waited max_wait_s: a keeps its work
    h.s.request_finished(ia, h.now)
    out = h.s.request_finished(i2, h.now)
    assert out == [Drain("a", "c", 0), StartSwitch("a", "c")]
    assert Grant(ic, "c") in h.s.switch_done("c", h.now)


def test_a_busy_victim_is_drained_once_the_waiting_request_is_overdue():
    h = Harness(capacity_gib=6, max_wait_s=10)
    (ia,) = h.up("a")
    ic, _ = h.arrive("c")
    assert h.s.next_deadline(h.now) == 10
    h.now = 10
    assert h.s.tick(h.now) == [Drain("a", "c", 1)]
    i2, out = h.arrive("a")
    assert out == []  # a admits nothing new while it drains
    out = h.s.request_finished(ia, h.now)
    assert StartSwitch("a", "c") in out
    out = h.s.switch_done("c", h.now)
    assert Grant(ic, "c") in out and h.s.queued("a") == 1  # a's request waits for its turn again


def test_one_switch_at_a_time():
    h = Harness(capacity_gib=None)
    _, out = h.arrive("a")
    assert out == [StartSwitch(None, "a")]
    _, out = h.arrive("b")
    assert out == []  # b waits for a's load to finish
    out = h.s.switch_done("a", h.now)
    assert StartSwitch(None, "b") in out


def test_a_model_larger_than_the_budget_gets_a_clear_503():
    h = Harness()
    i, out = h.arrive("huge")
    assert len(out) == 1 and isinstance(out[0], Reject) and out[0].status == 503
    assert "gpu_budget_gb" in out[0].message and "12.0 GiB" in out[0].message


def test_a_crashed_model_holds_its_memory_until_its_stop_is_done():
    h = Harness(capacity_gib=9)
    ia, ib = h.up("a", "b")
    out = h.s.backend_crashed("a", "boom", h.now)
    assert FailInFlight("a", "boom", (ia,)) in out and StopResident("a", Cause.CRASH) in out
    h.s.request_finished(ib, h.now)
    ic, out = h.arrive("c")  # even with b gone, 4 (a, stopping) + 6 > 9: c waits for a's stop
    assert all(not isinstance(x, StartSwitch) for x in out)
    out = h.s.stop_done("a", h.now)
    assert any(isinstance(x, (StartSwitch, Drain)) for x in out)


def test_a_model_is_not_started_again_before_its_old_backend_is_stopped():
    h = Harness()
    (ia,) = h.up("a")
    h.s.unload_requested(h.now, model="a")
    i2, out = h.arrive("a")
    assert out == []  # a drains: nothing new
    out = h.s.request_finished(ia, h.now)
    assert out == [StopResident("a", Cause.UNLOAD)]  # and nothing started beside its stop
    out = h.s.stop_done("a", h.now)
    assert out == [StartSwitch(None, "a")]


def test_operator_unload_of_one_model_keeps_the_others():
    h = Harness()
    ia, ib = h.up("a", "b")
    h.s.request_finished(ia, h.now)
    out = h.s.unload_requested(h.now, sleep=True, model="a")
    assert StopResident("a", Cause.SLEEP, sleep=True) in out
    assert h.s.awake() == ["b"]


def test_ttl_retires_idle_models_one_by_one():
    h = Harness(ttl_s=10)
    ia, ib = h.up("a", "b")
    h.s.request_finished(ia, h.now)
    h.s.request_finished(ib, h.now)
    assert h.s.next_deadline(h.now) == 10
    h.now = 11
    out = h.s.tick(h.now)
    assert [x for x in out if isinstance(x, StopResident)] == [StopResident("a", Cause.TTL)]


def test_placement_prefers_idle_then_no_queue_then_least_recently_used():
    p = Placement(10 * GIB, {"a": 4 * GIB, "b": 4 * GIB, "c": 4 * GIB, "t": 6 * GIB})
    cands = [Candidate("a", 1, 0, 1.0), Candidate("b", 0, 2, 0.5), Candidate("c", 0, 0, 3.0)]
    assert p.victims("t", cands[:2] + [cands[2]]) == ["c", "b"]
    assert p.victims("t", []) == []
    assert Placement(5 * GIB, {"t": 6 * GIB}).victims("t", []) is None


event = st.one_of(
    st.tuples(st.just("arrive"), st.sampled_from(["a", "b", "c", "cpu"])),
    st.tuples(st.just("finish"), st.integers(0, 30)),
    st.tuples(st.just("complete"), st.booleans()),
    st.tuples(st.just("crash"), st.sampled_from(["a", "b", "c"])),
    st.tuples(st.just("unload"), st.sampled_from(["a", "b", "c", None])),
    st.tuples(st.just("tick"), st.floats(0, 40)),
)


@pytest.mark.parametrize("policy", ["placement", "evict_all"])
@settings(max_examples=300, deadline=None)
@given(events=st.lists(event, max_size=60))
def test_random_events_keep_memory_within_the_budget_and_answer_every_request(policy, events):
    h = Harness(
        capacity_gib=10, policy=EvictAll() if policy == "evict_all" else None, max_wait_s=5, drain_timeout_s=3, ttl_s=20
    )
    s = h.s
    granted_to: dict[int, str] = {}
    backends: set[str] = set()  # what holds memory in the world
    jobs: list[tuple[str, str]] = []
    answers: dict[int, int] = {}
    in_flight: set[int] = set()
    arrived: set[int] = set()

    def apply(actions):
        for a in actions:
            if isinstance(a, Grant):
                answers[a.id] = answers.get(a.id, 0) + 1
                assert a.model in backends
                in_flight.add(a.id)
                granted_to[a.id] = a.model
            elif isinstance(a, Reject):
                answers[a.id] = answers.get(a.id, 0) + 1
            elif isinstance(a, StartSwitch):
                assert not [j for j in jobs if j[0] == "switch"], "two switches at once"
                for m in (a.from_model, *a.evict):
                    if m is not None:
                        backends.discard(m)
                backends.add(a.to_model)
                jobs.append(("switch", a.to_model))
            elif isinstance(a, StopResident):
                jobs.append(("stop", a.model))
            assert h.placement.used(backends) <= 10 * GIB, backends

    for kind, arg in events:
        if kind == "arrive":
            i, out = h.arrive(arg)
            arrived.add(i)
            apply(out)
        elif kind == "finish" and in_flight:
            i = sorted(in_flight)[arg % len(in_flight)]
            in_flight.discard(i)
            apply(s.request_finished(i, h.now))
        elif kind == "complete" and jobs:
            what, m = jobs.pop(0)
            if what == "stop":
                backends.discard(m)
                apply(s.stop_done(m, h.now))
            elif arg:
                apply(s.switch_done(m, h.now))
            else:
                backends.discard(m)
                apply(s.switch_failed(m, "failed", h.now))
        elif kind == "crash" and s.residency(arg) in UP and not [j for j in jobs if j[1] == arg]:
            for i in list(in_flight):
                if granted_to.get(i) == arg:
                    in_flight.discard(i)
            apply(s.backend_crashed(arg, "crashed", h.now))
        elif kind == "unload":
            apply(s.unload_requested(h.now, model=arg))
        elif kind == "tick":
            h.now += arg
            apply(s.tick(h.now))
    for _ in range(500):  # settle: finish the slow work and the requests, let time pass
        if jobs:
            what, m = jobs.pop(0)
            if what == "stop":
                backends.discard(m)
                apply(s.stop_done(m, h.now))
            else:
                apply(s.switch_done(m, h.now))
        elif in_flight:
            i = min(in_flight)
            in_flight.discard(i)
            apply(s.request_finished(i, h.now))
        elif s.queued():
            h.now += 5
            apply(s.tick(h.now))
        else:
            break
    assert s.queued() == 0
    for i in arrived:
        assert answers.get(i) == 1, f"request {i}: {answers.get(i)} answers"
