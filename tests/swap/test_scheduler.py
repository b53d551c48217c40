"""The scheduler's rules, driven synchronously with a fake clock: no processes, no sleeps."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from vlmswap.swap.policies import EvictAll, Placement
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


class Harness:
    """A scheduler plus a clock and a record of what each request got."""

    def __init__(self, models=("a", "b", "c"), policy=None, **settings):
        policies = {
            m: ModelPolicy(drain_timeout_s=settings.pop("drain_timeout_s", 30.0), ttl_s=settings.pop("ttl_s", None))
            for m in models
        }
        self.s = Scheduler(policies, SchedulerSettings(**settings), policy or EvictAll())
        self.now = 0.0
        self.ids = itertools.count(1)
        self.actions: list = []

    def record(self, out):
        self.actions += out
        return out

    def arrive(self, model, priority=0):
        i = next(self.ids)
        return i, self.record(self.s.request_arrived(i, model, self.now, priority))

    def finish(self, id):
        return self.record(self.s.request_finished(id, self.now))

    def ready(self, model):
        """Complete the switch under way to `model`."""
        return self.record(self.s.switch_done(model, self.now))

    def failed(self, model, error):
        return self.record(self.s.switch_failed(model, error, self.now))

    def stopped(self, model):
        return self.record(self.s.stop_done(model, self.now))

    def crash(self, model, error):
        return self.record(self.s.backend_crashed(model, error, self.now))

    def unload(self, sleep=False, model=None):
        return self.record(self.s.unload_requested(self.now, sleep=sleep, model=model))

    def load(self, model):
        return self.record(self.s.load_requested(model, self.now))

    def advance(self, dt):
        self.now += dt
        return self.record(self.s.tick(self.now))

    def granted(self, out=None):
        return [a.id for a in (self.actions if out is None else out) if isinstance(a, Grant)]

    def switches(self, out=None):
        return [a for a in (self.actions if out is None else out) if isinstance(a, StartSwitch)]


def serving(model="a", **kw) -> Harness:
    h = Harness(**kw)
    h.arrive(model)
    h.ready(model)
    h.actions.clear()
    return h


def test_first_request_starts_its_model():
    h = Harness()
    i, out = h.arrive("a")
    assert out == [StartSwitch(None, "a")]
    assert h.ready("a") == [Grant(i, "a")]


def test_no_switch_while_serving():
    h = serving("a")
    i, out = h.arrive("a")
    assert out == [Grant(i, "a")]
    for _ in range(5):
        _, out = h.arrive("a")
        assert isinstance(out[0], Grant)
    assert h.switches() == []
    assert h.s.in_flight("a") == 7  # the first request, then 1 + 5


def test_request_for_other_model_waits_for_requests_in_flight():
    h = serving("a")  # request 1 on a, in flight
    j, out = h.arrive("b")
    assert out == []  # waits: a is busy, b is not over max_wait_s yet
    assert h.s.queued("b") == 1
    out = h.finish(1)
    assert out == [Drain("a", "b", 0), StartSwitch("a", "b")]
    assert h.ready("b") == [Grant(j, "b")]


def test_queue_collation_groups_by_model():
    h = Harness()
    order = ["a", "b", "a", "b", "a", "b"]
    ids = {}
    for m in order:
        i, _ = h.arrive(m)
        ids[i] = m
    # a starting; all others wait. When a is ready, every queued a is granted together.
    out = h.ready("a")
    assert [ids[g] for g in h.granted(out)] == ["a", "a", "a"]
    for g in h.granted(out):
        h.finish(g)
    out = h.ready("b")
    assert [ids[g] for g in h.granted(out)] == ["b", "b", "b"]
    assert [(s.from_model, s.to_model) for s in h.switches()] == [(None, "a"), ("a", "b")]


def test_first_come_first_served_switches_on_every_change():
    h = Harness(grouping=False)
    for m in ["a", "b", "a", "b"]:
        h.arrive(m)
    in_flight: set[int] = set()
    while True:
        sw = h.s.switch()
        if sw is None:
            break
        in_flight.update(h.granted(h.ready(sw.target)))
        for g in sorted(in_flight):
            in_flight.discard(g)
            in_flight.update(h.granted(h.finish(g)))
    assert [s.to_model for s in h.switches()] == ["a", "b", "a", "b"]


def test_fcfs_does_not_let_resident_requests_overtake():
    h = serving("a", grouping=False)
    h.arrive("b")  # waits behind request 1
    i, out = h.arrive("a")
    assert out == [] and h.s.queued("a") == 1  # queued behind b, not granted


def test_grouping_keeps_granting_resident_while_others_wait():
    h = serving("a", max_wait_s=10)
    h.arrive("b")
    h.advance(5)
    i, out = h.arrive("a")
    assert out == [Grant(i, "a")]


def test_starvation_bound_forces_switch():
    h = serving("a", max_wait_s=10)
    j, _ = h.arrive("b")
    assert h.s.next_deadline(h.now) == pytest.approx(10)
    h.advance(9.9)
    assert h.switches() == []
    out = h.advance(0.1)
    assert out == [Drain("a", "b", 1)]  # a stops admitting; request 1 still in flight
    i, out = h.arrive("a")
    assert out == [] and h.s.queued("a") == 1  # draining: no new work for a
    out = h.finish(1)
    assert out == [StartSwitch("a", "b")]
    out = h.ready("b")
    assert h.granted(out) == [j]


def test_starved_model_is_served_then_the_queue_goes_back():
    h = serving("a", max_wait_s=10)
    j, _ = h.arrive("b")
    h.advance(10)
    k, _ = h.arrive("a")
    h.finish(1)
    h.ready("b")
    h.finish(j)  # b idle; a waits -> switch back
    assert [s.to_model for s in h.switches()][-1] == "a"
    out = h.ready("a")
    assert h.granted(out) == [k]


def test_overdue_request_stops_grants_at_once():
    """An arrival for the resident model after another's bound has passed is not granted, even before a tick."""
    h = serving("a", max_wait_s=10)
    j, _ = h.arrive("b")
    h.now = 10.0  # no tick: the clock moved on, the next event is an arrival for a
    i, out = h.arrive("a")
    assert not h.granted(out) and Drain("a", "b", 1) in out
    assert h.s.queued("a") == 1


def test_drain_timeout():
    h = serving("a", max_wait_s=1, drain_timeout_s=5)
    h.arrive("b")
    h.advance(1)  # starvation -> draining
    assert h.s.draining()
    assert h.s.next_deadline(h.now) == pytest.approx(6)
    h.advance(4.9)
    assert h.switches() == []
    out = h.advance(0.1)
    assert out == [StartSwitch("a", "b")]  # request 1 is cut by the stop
    assert h.s.in_flight("a") == 0
    assert h.finish(1) == []  # late finish is harmless


def test_one_switch_at_a_time():
    h = Harness()
    h.arrive("a")
    h.arrive("b")
    h.arrive("c")
    assert len(h.switches()) == 1
    assert h.s.backends() == 1
    h.load("c")
    h.unload()
    h.advance(100)
    assert len(h.switches()) == 1  # nothing starts while a is starting


def test_next_model_is_that_of_the_oldest_waiting_request():
    h = serving("a")
    h.arrive("c")
    h.advance(1)
    h.arrive("b")
    h.finish(1)
    assert h.switches()[-1] == StartSwitch("a", "c")


def test_client_gone_leaves_queue():
    h = serving("a")
    j, _ = h.arrive("b")
    assert h.s.queued() == 1
    h.finish(j)
    assert h.s.queued() == 0
    h.finish(1)
    assert h.switches() == []  # nobody waits for b any more: a stays


def test_client_gone_during_drain_cancels_the_switch():
    h = serving("a", max_wait_s=1)
    j, _ = h.arrive("b")
    h.advance(1)
    assert h.s.draining()
    h.finish(j)
    out = h.finish(1)
    assert h.switches() == [] and not h.s.draining()
    i, out = h.arrive("a")
    assert out == [Grant(i, "a")]


def test_client_gone_in_flight_releases():
    h = serving("a")
    h.finish(1)
    assert h.s.in_flight() == 0


def test_queue_full_rejects_with_retry_after():
    h = Harness(max_queue=3)
    for _ in range(3):
        h.arrive("a")
    i, out = h.arrive("b")
    assert len(out) == 1 and isinstance(out[0], Reject)
    assert out[0].status == 503 and out[0].retry_after and out[0].retry_after > 0
    assert "queue full" in out[0].message
    assert h.s.queued() == 3


def test_failed_start_backs_off():
    h = Harness(backoff_initial_s=2, backoff_max_s=5)
    i, _ = h.arrive("a")
    j, _ = h.arrive("a")
    out = h.failed("a", "boom")
    assert {(r.id, r.status) for r in out if isinstance(r, Reject)} == {(i, 502), (j, 502)}
    assert all("boom" in r.message for r in out if isinstance(r, Reject))
    k, out = h.arrive("a")
    assert out[0].status == 503 and out[0].retry_after == 2
    h.advance(2)
    k, out = h.arrive("a")
    assert out == [StartSwitch(None, "a")]
    h.failed("a", "boom again")
    _, out = h.arrive("a")
    assert out[0].retry_after == 4  # doubled
    h.advance(4)
    h.arrive("a")
    h.failed("a", "third")
    _, out = h.arrive("a")
    assert out[0].retry_after == 5  # capped at backoff_max_s


def test_backoff_resets_after_a_request_succeeds():
    h = Harness(backoff_initial_s=2)
    h.arrive("a")
    h.failed("a", "x")
    h.advance(2)
    i, _ = h.arrive("a")
    h.ready("a")
    h.finish(i)
    assert h.s.failures("a") == 0


def test_failed_start_lets_other_models_run():
    h = Harness()
    h.arrive("a")
    j, _ = h.arrive("b")
    h.failed("a", "boom")
    assert h.switches()[-1] == StartSwitch(None, "b")
    assert h.granted(h.ready("b")) == [j]


def test_ttl_unloads_idle_model():
    h = serving("a", ttl_s=30)
    h.finish(1)
    assert h.s.next_deadline(h.now) == pytest.approx(30)
    assert h.advance(29) == []
    out = h.advance(1)
    assert out == [StopResident("a", Cause.TTL)]
    assert h.s.backends() == 1  # still stopping
    h.stopped("a")
    assert h.s.backends() == 0 and h.s.resident() is None


def test_ttl_counts_from_the_last_request():
    h = serving("a", ttl_s=30)
    h.advance(20)
    h.finish(1)
    assert h.advance(29) == []
    assert h.advance(1) == [StopResident("a", Cause.TTL)]


def test_ttl_never_unloads_while_busy():
    h = serving("a", ttl_s=5)
    assert h.advance(100) == []


def test_unload_waits_for_requests_in_flight():
    h = serving("a")
    out = h.unload()
    assert out == [Drain("a", None, 1)]
    i, out = h.arrive("a")
    assert out == []  # queued while draining
    out = h.finish(1)
    assert out == [StopResident("a", Cause.UNLOAD)]
    out = h.stopped("a")
    assert out == [StartSwitch(None, "a")]  # the queued request brings it back


def test_unload_when_idle_stops_at_once():
    h = serving("a")
    h.finish(1)
    assert h.unload() == [Drain("a", None, 0), StopResident("a", Cause.UNLOAD)]


def test_load_switches_when_resident_drains():
    h = serving("a")
    out = h.load("b")
    assert out == [Drain("a", "b", 1)]
    out = h.finish(1)
    assert out == [StartSwitch("a", "b")]
    h.ready("b")
    assert h.s.resident() == "b" and h.s.residency("b") == Residency.READY


def test_load_of_resident_does_nothing():
    h = serving("a")
    assert h.load("a") == []


def test_load_during_switch_runs_after_it():
    h = Harness()
    h.arrive("a")
    h.load("b")
    assert len(h.switches()) == 1
    out = h.ready("a")
    assert Drain("a", "b", 0) in out  # queued request for a is not granted: the operator asked for b
    assert h.switches()[-1] == StartSwitch("a", "b")


def test_load_clears_backoff():
    h = Harness()
    h.arrive("a")
    h.failed("a", "x")
    assert h.load("a") == [StartSwitch(None, "a")]


def test_crash_fails_in_flight_and_backs_off():
    h = serving("a")
    h.arrive("a")
    out = h.crash("a", "exit code 1")
    assert out[0] == FailInFlight("a", "exit code 1", (1, 2))
    assert StopResident("a", Cause.CRASH) in out
    assert h.s.backends() == 1  # the dead backend is reaped before anything else starts
    i, out = h.arrive("a")
    assert out[0].status == 503
    h.stopped("a")
    h.advance(2)
    i, out = h.arrive("a")
    assert out == [StartSwitch(None, "a")]


def test_crash_while_draining_lets_the_switch_proceed():
    h = serving("a", max_wait_s=1)
    h.arrive("b")
    h.advance(1)
    out = h.crash("a", "segfault")
    assert StartSwitch("a", "b") in out


def test_crash_report_for_a_model_not_ready_is_ignored():
    h = Harness()
    h.arrive("a")
    assert h.crash("a", "x") == []


def test_unknown_model_is_rejected():
    h = Harness()
    i, out = h.arrive("zzz")
    assert out[0].status == 404


def test_late_events_are_ignored():
    h = serving("a")
    assert h.ready("b") == []
    assert h.failed("b", "x") == []
    assert h.stopped("a") == []
    assert h.finish(999) == []


# --- property: random event sequences -----------------------------------------------------

MODELS = ("a", "b", "c")
event = st.one_of(
    st.tuples(st.just("arrive"), st.sampled_from(MODELS)),
    st.tuples(st.just("finish"), st.integers(0, 30)),
    st.tuples(st.just("gone"), st.integers(0, 30)),
    st.tuples(st.just("complete"), st.booleans()),
    st.tuples(st.just("crash"), st.just(None)),
    st.tuples(st.just("unload"), st.just(None)),
    st.tuples(st.just("load"), st.sampled_from(MODELS)),
    st.tuples(st.just("tick"), st.floats(0, 20)),
)


class World:
    """What the manager would do with the actions: one pending slow job at a time."""

    def __init__(self, grouping: bool, max_queue: int, policy=None):
        self.h = Harness(
            models=MODELS,
            policy=policy,
            grouping=grouping,
            max_queue=max_queue,
            max_wait_s=5,
            drain_timeout_s=3,
            ttl_s=10,
        )
        self.backend: str | None = None  # what exists
        self.job: tuple[str, str] | None = None  # ('switch', to) or ('stop', model)
        self.answers: dict[int, list[str]] = {}
        self.arrived: set[int] = set()
        self.gone: set[int] = set()
        self.in_flight: set[int] = set()

    def apply(self, actions):
        for a in actions:
            if isinstance(a, Grant):
                self.answers.setdefault(a.id, []).append("grant")
                assert self.backend == a.model and self.job is None
                self.in_flight.add(a.id)
            elif isinstance(a, Reject):
                self.answers.setdefault(a.id, []).append("reject")
            elif isinstance(a, StartSwitch):
                assert self.job is None, "a switch started while another was under way"
                assert self.backend == a.from_model, "a switch left an extra backend behind"
                self.backend = a.to_model
                self.job = ("switch", a.to_model)
            elif isinstance(a, StopResident):
                assert self.job is None and self.backend == a.model
                self.job = ("stop", a.model)
            elif isinstance(a, FailInFlight):
                assert self.backend == a.model
            assert self.h.s.backends() <= 1

    def step(self, kind, arg):
        h = self.h
        if kind == "arrive":
            i, out = h.arrive(arg)
            self.arrived.add(i)
            self.apply(out)
        elif kind in ("finish", "gone"):
            ids = sorted(self.in_flight) if kind == "finish" else sorted(self.arrived - self.gone)
            if not ids:
                return
            i = ids[arg % len(ids)]
            if kind == "gone":
                if self.answers.get(i) and i not in self.in_flight:
                    return
                self.gone.add(i)
            self.in_flight.discard(i)
            self.apply(h.finish(i))
        elif kind == "complete":
            if self.job is None:
                return
            what, model = self.job
            self.job = None
            if what == "stop":
                self.backend = None
                self.apply(h.stopped(model))
            elif arg:
                self.apply(h.ready(model))
            else:
                self.backend = None
                self.apply(h.failed(model, "failed"))
        elif kind == "crash":
            if self.backend is not None and self.job is None and h.s.residency(self.backend) in UP:
                self.apply(h.crash(self.backend, "crashed"))
        elif kind == "unload":
            self.apply(h.unload())
        elif kind == "load":
            self.apply(h.load(arg))
        elif kind == "tick":
            self.apply(h.advance(arg))

    def settle(self):
        """Finish all slow jobs and all requests; advance time past every bound."""
        for _ in range(500):
            if self.job is not None:
                self.step("complete", True)
            elif self.in_flight:
                self.step("finish", 0)
            elif self.h.s.queued():
                self.step("tick", 5.0)
            else:
                break


ONE_AT_A_TIME = {
    "evict_all": EvictAll,
    # each model needs more than half the card: placement itself allows only one at a time
    "placement": lambda: Placement(10 * GIB, dict.fromkeys(MODELS, 6 * GIB)),
}


@pytest.mark.parametrize("policy", sorted(ONE_AT_A_TIME))
@settings(max_examples=300, deadline=None)
@given(events=st.lists(event, max_size=60), grouping=st.booleans(), max_queue=st.integers(1, 6))
def test_random_events_never_two_backends_never_lose_a_request(policy, events, grouping, max_queue):
    w = World(grouping, max_queue, ONE_AT_A_TIME[policy]())
    for kind, arg in events:
        w.step(kind, arg)
    w.settle()
    assert w.h.s.queued() == 0 and w.h.s.in_flight() == 0
    for i in w.arrived:
        answers = w.answers.get(i, [])
        assert len(answers) <= 1, f"request {i} answered twice: {answers}"
        if i not in w.gone:
            assert len(answers) == 1, f"request {i} never answered"


def test_priority_picks_the_next_model_within_the_starvation_bound():
    h = Harness(max_wait_s=10)
    i, out = h.arrive("a")
    h.ready("a")
    j, _ = h.arrive("b")  # priority 0, first
    h.arrive("c", priority=5)  # a higher-priority client, later
    out = h.finish(i)
    assert [x.to_model for x in out if isinstance(x, Drain)] == ["c"]


def test_a_request_past_the_starvation_bound_goes_first_whatever_its_priority():
    h = Harness(max_wait_s=10)
    i, _ = h.arrive("a")
    h.ready("a")
    j, _ = h.arrive("b")  # priority 0
    h.now += 11  # b has now waited past max_wait_s
    _, out = h.arrive("c", priority=5)  # the overdue b starts the drain now
    out += h.finish(i)
    assert [x.to_model for x in out if isinstance(x, Drain)] == ["b"]


def test_an_abandoned_load_leaves_the_model_absent_without_a_backoff_and_the_queue_moves_on():
    """fit, with room: a staging load of b is under way when a request for c arrives; the manager calls
    b's start off, and c's switch begins at once (nothing failed: no 502, no backoff)."""
    h = Harness(policy=Placement(24 * GIB, {"a": 2 * GIB, "b": 2 * GIB, "c": 2 * GIB}))
    h.arrive("a")
    h.ready("a")
    assert h.load("b") == [StartSwitch(None, "b")]
    j, out = h.arrive("c")
    assert out == []  # one switch at a time
    out = h.record(h.s.switch_abandoned("b", h.now))
    assert out == [StartSwitch(None, "c")]
    assert h.s.residency("b") == Residency.ABSENT and h.s.backoff_left("b", h.now) == 0
    assert not [a for a in h.actions if isinstance(a, Reject)]
    assert h.ready("c") == [Grant(j, "c")]
    assert h.s.switch_abandoned("b", h.now) == []  # no such switch: ignored
