"""Who runs next: the gateway's scheduling decisions as a pure state machine.

Events go in (a request arrived, a switch finished, ...), actions come out (grant this
request, start this switch, ...). No I/O, no asyncio, no sleeps; the clock is an argument.
That keeps every rule of the issue (one backend at a time, grouping, the starvation bound,
backoff, ttl) testable without processes, and lets the manager stay a thin executor.

The scheduler's view of a model's backend is coarse on purpose: it knows which model is
*resident* (a backend exists for it: starting, ready or being drained), whether a switch or
a stop is under way, and nothing about ports or processes. The manager tracks the fine
phases (stopping, waiting_vram, loading) and reports the end of slow work as events:
`switch_done`, `switch_failed`, `stop_done`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from vlmswap.registry.config import Registry

# --- actions ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Grant:
    """Send request `id` to `model`'s backend now."""

    id: int
    model: str


@dataclass(frozen=True)
class Reject:
    """Answer request `id` with an error (503 + Retry-After when `retry_after` is set)."""

    id: int
    status: int
    message: str
    retry_after: float | None = None


@dataclass(frozen=True)
class Drain:
    """`model` admits no new work; the switch to `to_model` (None: unload) waits for its requests in flight."""

    model: str
    to_model: str | None
    in_flight: int


@dataclass(frozen=True)
class StartSwitch:
    """Retire `from_model` (and, under policy `fit`, `evict`) to the sleeping pool or stopped, then
    wake or start `to_model`; report switch_done/switch_failed."""

    from_model: str | None
    to_model: str
    evict: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopResident:
    """Take `model` off the GPU (reason: 'unload', 'sleep', 'ttl idle', 'crashed'); report stop_done.

    `sleep`: an operator asked for it to sleep (it stays in the pool); otherwise it is stopped.
    """

    model: str
    reason: str
    sleep: bool = False


@dataclass(frozen=True)
class FailInFlight:
    """`model`'s backend died while serving: its requests in flight fail with `error` (502)."""

    model: str
    error: str
    ids: tuple[int, ...] = ()


Action = Grant | Reject | Drain | StartSwitch | StopResident | FailInFlight

# --- settings -----------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelPolicy:
    drain_timeout_s: float = 30.0
    ttl_s: float | None = None


@dataclass(frozen=True)
class SchedulerSettings:
    max_queue: int = 256
    max_wait_s: float = 60.0
    backoff_initial_s: float = 2.0
    backoff_max_s: float = 120.0
    queue_full_retry_after_s: float = 2.0
    grouping: bool = True
    """False: first come, first served (strict arrival order; a baseline to compare switch counts)."""


# --- state --------------------------------------------------------------------------------


@dataclass
class Waiting:
    id: int
    model: str
    arrived: float
    priority: int = 0  # the client profile's: higher is served first, within the starvation bound


@dataclass
class Switch:
    """Work under way that changes which backend exists.

    phase `draining`: `from_model` is still resident and admits nothing new;
    phase `switching`: the manager stops `from_model` and starts `to_model`;
    phase `stopping`: the manager stops `from_model`, nothing follows.
    kind: why it began ('queue', 'load', 'unload', 'sleep', 'ttl', 'crash').
    """

    from_model: str | None
    to_model: str | None
    phase: Literal["draining", "switching", "stopping"]
    kind: str
    since: float


@dataclass
class _ModelCounters:
    in_flight: set[int] = field(default_factory=set)
    failures: int = 0
    backoff_until: float = 0.0
    last_error: str = ""


class Scheduler:
    """The decisions of policy `single`: at most one backend exists at any moment."""

    def __init__(self, models: dict[str, ModelPolicy], settings: SchedulerSettings | None = None):
        self.settings = settings or SchedulerSettings()
        self.policies = dict(models)
        self.queue: OrderedDict[int, Waiting] = OrderedDict()
        self.models = {name: _ModelCounters() for name in models}
        self.granted: dict[int, str] = {}  # id -> model, requests in flight
        self.failed_ids: set[int] = set()  # in flight when their backend crashed
        self.resident: str | None = None  # model whose backend exists (or is being started)
        self.ready = False  # resident answers requests
        self.switch: Switch | None = None
        self.last_activity = 0.0
        self.pending_load: str | None = None
        self.pending_unload = False
        self.pending_sleep = False  # the pending unload is a sleep
        self._just_ready = False

    @classmethod
    def from_registry(cls, registry: Registry, *, grouping: bool = True) -> Scheduler:
        g = registry.gateway
        policies = {
            name: ModelPolicy(
                drain_timeout_s=spec.drain_timeout_s if spec.drain_timeout_s is not None else g.drain_timeout_s,
                ttl_s=spec.ttl_s,
            )
            for name, spec in registry.models.items()
        }
        settings = SchedulerSettings(
            max_queue=g.max_queue,
            max_wait_s=g.max_wait_s,
            backoff_initial_s=g.backoff_initial_s,
            backoff_max_s=g.backoff_max_s,
            grouping=grouping,
        )
        return cls(policies, settings)

    # --- queries ---------------------------------------------------------------------------

    def in_flight(self, model: str | None = None) -> int:
        if model is None:
            return len(self.granted)
        return len(self.models[model].in_flight)

    def queued(self, model: str | None = None) -> int:
        if model is None:
            return len(self.queue)
        return sum(1 for w in self.queue.values() if w.model == model)

    def oldest_waiting(self) -> str | None:
        """The model the oldest queued request waits for (the sleeping pool never evicts it)."""
        for w in self.queue.values():
            return w.model
        return None

    def draining(self) -> bool:
        return self.switch is not None and self.switch.phase == "draining"

    def backoff_left(self, model: str, now: float) -> float:
        return max(0.0, self.models[model].backoff_until - now)

    def backends(self) -> int:
        """How many backends exist in the scheduler's view (the invariant: never above 1)."""
        if self.resident is not None:
            return 1
        if self.switch is not None and self.switch.phase == "stopping":
            return 1
        return 0

    def next_deadline(self, now: float) -> float | None:
        """When a `tick` could change something (drain timeout, starvation bound, ttl)."""
        times: list[float] = []
        sw = self.switch
        if sw is not None and sw.phase == "draining" and sw.from_model is not None:
            times.append(sw.since + self.policies[sw.from_model].drain_timeout_s)
        if sw is None and self.resident is not None and self.ready:
            others = self._others_waiting()
            if others and self.settings.grouping:
                times.append(others[0].arrived + self.settings.max_wait_s)
            ttl = self.policies[self.resident].ttl_s
            if ttl is not None and not self.queue and not self.models[self.resident].in_flight:
                times.append(self.last_activity + ttl)
        return min(times) if times else None

    # --- events ----------------------------------------------------------------------------

    def request_arrived(self, id: int, model: str, now: float, priority: int = 0) -> list[Action]:
        if model not in self.models:
            return [Reject(id, 404, f"unknown model {model!r}")]
        left = self.backoff_left(model, now)
        if left > 0 and self.resident != model:
            err = self.models[model].last_error
            msg = f"{model} failed recently; retrying after a backoff"
            if err:
                msg += f" (last error: {err.splitlines()[0]})"
            return [Reject(id, 503, msg, retry_after=math.ceil(left))]
        if self._may_grant_now(model, now):
            return self._grant(id, model, now)
        if len(self.queue) >= self.settings.max_queue:
            return [
                Reject(
                    id,
                    503,
                    f"queue full ({self.settings.max_queue} requests waiting)",
                    retry_after=self.settings.queue_full_retry_after_s,
                )
            ]
        self.queue[id] = Waiting(id, model, now, priority)
        return self._decide(now)

    def request_finished(self, id: int, now: float) -> list[Action]:
        self.queue.pop(id, None)
        model = self.granted.pop(id, None)
        if model is not None:
            self.models[model].in_flight.discard(id)
            if id in self.failed_ids:
                self.failed_ids.discard(id)
            else:
                self.models[model].failures = 0
            self.last_activity = max(self.last_activity, now)
        return self._decide(now)

    def client_gone(self, id: int, now: float) -> list[Action]:
        """The client went away: leave the queue, or end the request in flight."""
        return self.request_finished(id, now)

    def switch_done(self, model: str, now: float) -> list[Action]:
        sw = self.switch
        if sw is None or sw.phase != "switching" or sw.to_model != model:
            return []
        self.switch = None
        self.resident = model
        self.ready = True
        self._just_ready = True
        self.last_activity = now
        return self._decide(now)

    def switch_failed(self, model: str, error: str, now: float) -> list[Action]:
        sw = self.switch
        if sw is None or sw.phase != "switching" or sw.to_model != model:
            return []
        self.switch = None
        self.resident = None  # the manager removed what it had started
        self.ready = False
        if self.pending_load == model:
            self.pending_load = None
        actions = self._fail(model, error, now) + self._reject_queued(model, 502, f"{model} failed to start: {error}")
        return actions + self._decide(now)

    def stop_done(self, model: str, now: float) -> list[Action]:
        sw = self.switch
        if sw is None or sw.phase != "stopping" or sw.from_model != model:
            return []
        self.switch = None
        return self._decide(now)

    def backend_crashed(self, model: str, error: str, now: float) -> list[Action]:
        if self.resident != model or not self.ready:
            return []
        actions = self._fail_in_flight(model, error) + self._fail(model, error, now)
        # Requests that were waiting for it (a drain under way) meet the backoff.
        left = self.backoff_left(model, now)
        actions += self._reject_queued(
            model, 503, f"{model} crashed: {error.splitlines()[0] if error else ''}", retry_after=math.ceil(left) or 1
        )
        sw = self.switch
        self.ready = False
        if sw is not None and sw.phase == "draining" and sw.from_model == model:
            # Nothing left to drain: the switch proceeds (the manager reaps the dead backend first).
            pass
        else:
            self.resident = None
            self.switch = Switch(model, None, "stopping", "crash", now)
            actions.append(StopResident(model, "crashed"))
        return actions + self._decide(now)

    def unload_requested(self, now: float, sleep: bool = False, model: str | None = None) -> list[Action]:
        """Take the resident model off the GPU after its requests in flight (`sleep`: to the pool).

        `model`: the caller's name for it (policy single has only the resident to take off)."""
        self.pending_load = None
        if self.switch is not None:
            self.pending_unload, self.pending_sleep = True, sleep
            return []
        if self.resident is None:
            return []
        return self._begin_drain(self.resident, None, "sleep" if sleep else "unload", now) + self._decide(now)

    def load_requested(self, model: str, now: float) -> list[Action]:
        """An operator asked for `model`: switch to it as soon as the rules allow (clears its backoff)."""
        if model not in self.models:
            return []
        self.models[model].backoff_until = 0.0
        self.pending_unload = False
        if self.resident == model and self.switch is None:
            self.pending_load = None
            return []
        self.pending_load = model
        return self._decide(now)

    def tick(self, now: float) -> list[Action]:
        return self._decide(now)

    # --- rules -----------------------------------------------------------------------------

    def _may_grant_now(self, model: str, now: float) -> bool:
        if self.resident != model or not self.ready or self.switch is not None:
            return False
        if self.pending_load is not None or self.pending_unload:
            return False
        if not self.settings.grouping:  # first come, first served: nobody overtakes a waiting request
            return not self.queue
        # grouping, unless another model's request has waited its limit: then the drain begins now
        for w in self.queue.values():
            if w.model != model:
                return now - w.arrived < self.settings.max_wait_s
        return True

    def _fail_in_flight(self, model: str, error: str) -> list[Action]:
        """`model`'s backend died: its requests in flight end with a 502 (late finishes are harmless)."""
        ids = tuple(sorted(self.models[model].in_flight))
        if not ids:
            return []
        self.failed_ids.update(ids)
        self.models[model].in_flight.clear()
        return [FailInFlight(model, error, ids)]

    def _reject_queued(self, model: str, status: int, message: str, retry_after: float | None = None) -> list[Action]:
        """Every queued request for `model` leaves the queue with this answer."""
        out: list[Action] = []
        for w in [w for w in self.queue.values() if w.model == model]:
            del self.queue[w.id]
            out.append(Reject(w.id, status, message, retry_after=retry_after))
        return out

    def _grant(self, id: int, model: str, now: float) -> list[Action]:
        self.granted[id] = model
        self.models[model].in_flight.add(id)
        self.last_activity = max(self.last_activity, now)
        return [Grant(id, model)]

    def _fail(self, model: str, error: str, now: float) -> list[Action]:
        c = self.models[model]
        c.failures += 1
        c.last_error = error
        delay = min(self.settings.backoff_initial_s * 2 ** (c.failures - 1), self.settings.backoff_max_s)
        c.backoff_until = now + delay
        return []

    def _others_waiting(self) -> list[Waiting]:
        return [w for w in self.queue.values() if w.model != self.resident]

    def _begin_drain(self, model: str, to_model: str | None, kind: str, now: float) -> list[Action]:
        self._just_ready = False
        self.switch = Switch(model, to_model, "draining", kind, now)
        return [Drain(model, to_model, len(self.models[model].in_flight))]

    def _decide(self, now: float) -> list[Action]:
        """Apply the rules until nothing changes; return what the manager must do."""
        actions: list[Action] = []
        for _ in range(16):  # each pass changes the state once; a few passes always settle
            more = self._step(now)
            if more is None:
                break
            actions += more
        return actions

    def _step(self, now: float) -> list[Action] | None:
        """One rule applied: the actions it gives (maybe none), or None when no rule applies."""
        sw = self.switch
        s = self.settings
        if sw is not None:
            if sw.phase != "draining":
                return None
            return self._step_drain(sw, now)

        # no switch under way
        if self.pending_unload:
            self.pending_unload = False
            if self.resident is not None:
                return self._begin_drain(self.resident, None, "sleep" if self.pending_sleep else "unload", now)
            return []
        if self.resident is None:
            target = self._next_target(now)
            if target is None:
                return None
            kind = "load" if self.pending_load == target else "queue"
            if self.pending_load == target:
                self.pending_load = None
            self.switch = Switch(None, target, "switching", kind, now)
            self.resident = target
            self.ready = False
            return [StartSwitch(None, target)]
        if not self.ready:
            return None
        resident = self.resident
        if self.pending_load is not None and self.pending_load != resident:
            return self._begin_drain(resident, self.pending_load, "load", now)
        if self.pending_load is not None:
            self.pending_load = None
            return []
        others = self._others_waiting()
        overdue = bool(others) and now - others[0].arrived >= s.max_wait_s
        # Requests that waited for this model's switch are served even if another is overdue now.
        if not overdue or self._just_ready:
            self._just_ready = False
            granted = self._grant_queued(now)
            if granted:
                return granted
        if others:
            if not s.grouping or not self.models[resident].in_flight:
                return self._begin_drain(resident, self._pick(others, now).model, "queue", now)
            if overdue:
                return self._begin_drain(resident, self._pick(others, now).model, "starvation", now)
            return None
        ttl = self.policies[resident].ttl_s
        if ttl is not None and not self.models[resident].in_flight and now - self.last_activity >= ttl:
            self.switch = Switch(resident, None, "stopping", "ttl", now)
            self.resident = None
            self.ready = False
            return [StopResident(resident, "ttl idle")]
        return None

    def _step_drain(self, sw: Switch, now: float) -> list[Action] | None:
        model = sw.from_model
        assert model is not None
        counters = self.models[model]
        drained = not counters.in_flight
        timed_out = now - sw.since >= self.policies[model].drain_timeout_s
        if not (drained or timed_out):
            return None
        # Requests still in flight after the drain timeout are cut by the stop; they stay in
        # `granted` so their (late) request_finished is harmless.
        self.failed_ids.update(counters.in_flight)
        counters.in_flight.clear()
        if sw.kind in ("unload", "sleep"):
            self.switch = Switch(model, None, "stopping", sw.kind, now)
            self.resident = None
            self.ready = False
            return [StopResident(model, sw.kind, sleep=sw.kind == "sleep")]
        target = self._next_target(now)
        if target is None or target == model:
            if self.ready:  # everyone waiting for another model left: keep serving
                self.switch = None
                return []
            # it crashed while draining and nobody waits: just reap it
            self.switch = Switch(model, None, "stopping", "crash", now)
            self.resident = None
            return [StopResident(model, "crashed")]
        if self.pending_load == target:
            self.pending_load = None
        self.switch = Switch(model, target, "switching", sw.kind, now)
        self.resident = target
        self.ready = False
        return [StartSwitch(model, target)]

    def _grant_queued(self, now: float) -> list[Action]:
        """Grant waiting requests for the ready resident model (grouping: all; FCFS: from the head)."""
        resident = self.resident
        out: list[Action] = []
        if self.settings.grouping:
            ids = [w.id for w in self.queue.values() if w.model == resident]
        else:
            ids = []
            for w in self.queue.values():
                if w.model != resident:
                    break
                ids.append(w.id)
        for id in ids:
            del self.queue[id]
            out += self._grant(id, resident, now)  # type: ignore[arg-type]
        return out

    def _next_target(self, now: float) -> str | None:
        if self.pending_load is not None:
            return self.pending_load
        waiting = list(self.queue.values())
        return self._pick(waiting, now).model if waiting else None

    def _pick(self, waiting: list[Waiting], now: float) -> Waiting:
        """Whose model goes next: a request past the starvation bound (the oldest), else the highest
        priority, else the oldest. Without profiles every priority is 0: arrival order."""
        overdue = [w for w in waiting if now - w.arrived >= self.settings.max_wait_s]
        if overdue or not self.settings.grouping:
            return (overdue or waiting)[0]
        return max(waiting, key=lambda w: (w.priority, -w.arrived))
