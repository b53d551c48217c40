"""Who runs next: the gateway's scheduling decisions as a pure state machine.

Events go in (a request arrived, a switch finished, ...), actions come out (grant this
request, start this switch, ...). No I/O, no asyncio, no sleeps; the clock is an argument.
That keeps every rule (grouping, the starvation bound, drains, backoff, ttl, crashes)
testable without processes, and lets the manager stay a thin executor.

One scheduler for every policy: the queue and its rules live here, and the only question
that differs between `single` and `fit` — which models must go so that the next one fits —
is asked of a `Policy` (policies.py). `Decisions` below is the contract: each event and the
actions it may return.

The scheduler's view of a model is coarse on purpose (`Residency`): whether it holds memory,
whether it takes work, nothing about ports or processes. The lifecycle owns the fine states
and reports the end of slow work as events: `switch_done`, `switch_failed`, `stop_done`.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from vlmswap.swap.policies import Candidate, EvictAll, Policy
from vlmswap.swap.states import Cause, Residency, SwitchStep

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
    """`model` admits no new work; what follows (`to_model`, None: it goes) waits for its requests in flight."""

    model: str
    to_model: str | None
    in_flight: int


@dataclass(frozen=True)
class StartSwitch:
    """Retire `from_model` and `evict` (to the sleeping pool, or stopped), then wake or start `to_model`;
    report switch_done or switch_failed."""

    from_model: str | None
    to_model: str
    evict: tuple[str, ...] = ()


@dataclass(frozen=True)
class StopResident:
    """Take `model` off the GPU; report stop_done. `sleep`: an operator asked for it to sleep (it stays
    in the pool); otherwise it is stopped."""

    model: str
    cause: Cause
    sleep: bool = False


@dataclass(frozen=True)
class FailInFlight:
    """`model`'s backend died while serving: its requests in flight fail with `error` (502)."""

    model: str
    error: str
    ids: tuple[int, ...] = ()


Action = Grant | Reject | Drain | StartSwitch | StopResident | FailInFlight


@dataclass(frozen=True)
class Switch:
    """The one switch under way: `victims` make room, then `target` comes up."""

    target: str
    victims: tuple[str, ...]
    step: SwitchStep
    cause: Cause
    since: float


class Decisions(Protocol):
    """The scheduler's contract: each event, and the actions it may return.

    Every event may also return what the rules decide next once it has changed the state
    (grants for a model that became ready, the next drain or switch, a ttl stop): the lists
    below name what the event itself causes.
    """

    def request_arrived(self, id: int, model: str, now: float, priority: int = 0) -> list[Action]:
        """Grant at once; or Reject (404 unknown, 503 backoff or queue full); or queue it, which may
        begin a Drain or a StartSwitch."""
        ...

    def request_finished(self, id: int, now: float) -> list[Action]:
        """A granted request ended (or a queued one left): may end a drain (StartSwitch, StopResident)."""
        ...

    def switch_done(self, model: str, now: float) -> list[Action]:
        """The switch's target is ready: Grants for its queue. Ignored when no such switch is under way."""
        ...

    def switch_failed(self, model: str, error: str, now: float) -> list[Action]:
        """The target could not be brought up: a Reject (502) for each request queued for it; a backoff."""
        ...

    def stop_done(self, model: str, now: float) -> list[Action]:
        """A StopResident finished: its memory is free. Ignored when it was not stopping."""
        ...

    def switch_abandoned(self, model: str, now: float) -> list[Action]:
        """The manager called off the switch to `model` before it was ready (a staging load gave way
        to a request) and removed what it had started: it is absent again, without a backoff and
        without an answer to anyone. Ignored when no such switch is under way."""
        ...

    def backend_crashed(self, model: str, error: str, now: float) -> list[Action]:
        """A model that was up died: FailInFlight, Rejects (503) for its queue, StopResident to reap it
        (unless a switch already retires it). Ignored for a model that is not up."""
        ...

    def unload_requested(self, now: float, sleep: bool = False, model: str | None = None) -> list[Action]:
        """Drain and StopResident for `model` (None: every model that is up); one still starting goes
        once it is ready."""
        ...

    def load_requested(self, model: str, now: float) -> list[Action]:
        """Bring `model` up as soon as the rules allow (Drain, StartSwitch); clears its backoff."""
        ...

    def tick(self, now: float) -> list[Action]:
        """Time passed: drain timeouts, the starvation bound, ttl."""
        ...

    def measured(self, model: str, need_bytes: int) -> None:
        """A measurement of what `model` takes awake, for the policy; decides nothing by itself."""
        ...


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
class Slot:
    """Everything the scheduler knows of one model."""

    policy: ModelPolicy
    residency: Residency = Residency.ABSENT
    in_flight: set[int] = field(default_factory=set)
    failures: int = 0
    backoff_until: float = 0.0
    last_error: str = ""
    last_used: float = 0.0
    drain_since: float | None = None
    unload: bool | None = None  # an operator's unload waits for this drain (True: to the pool)
    crashed: bool = False  # died while draining: whoever retires it reaps it


UP = frozenset({Residency.READY, Residency.DRAINING})
"""Residencies of a model whose backend answers (or did, until its drain ends)."""


class Scheduler:
    """The decisions, for any `Policy`; implements `Decisions`."""

    def __init__(
        self, models: dict[str, ModelPolicy], settings: SchedulerSettings | None = None, policy: Policy | None = None
    ):
        self.settings = settings or SchedulerSettings()
        self.policy: Policy = policy if policy is not None else EvictAll()
        self._slots = {name: Slot(p) for name, p in models.items()}
        self._queue: OrderedDict[int, Waiting] = OrderedDict()
        self._granted: dict[int, str] = {}  # id -> model, requests in flight
        self._failed: set[int] = set()  # in flight when their backend crashed or their drain timed out
        self._switch: Switch | None = None
        self._pending_load: str | None = None
        self._just_ready: str | None = None  # its queue is served even if another request is overdue

    @classmethod
    def from_registry(cls, registry: Registry, *, policy: Policy | None = None, grouping: bool = True) -> Scheduler:
        g = registry.gateway
        models = {
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
        return cls(models, settings, policy)

    # --- queries ---------------------------------------------------------------------------

    def in_flight(self, model: str | None = None) -> int:
        if model is None:
            return len(self._granted)
        return len(self._slots[model].in_flight)

    def queued(self, model: str | None = None) -> int:
        if model is None:
            return len(self._queue)
        return sum(1 for w in self._queue.values() if w.model == model)

    def oldest_waiting(self) -> str | None:
        """The model the oldest queued request waits for (the sleeping pool never evicts it)."""
        for w in self._queue.values():
            return w.model
        return None

    def residency(self, model: str) -> Residency:
        return self._slots[model].residency

    def failures(self, model: str) -> int:
        return self._slots[model].failures

    def last_used(self, model: str) -> float:
        """When `model` last served, or became ready (the clock's time)."""
        return self._slots[model].last_used

    def switch(self) -> Switch | None:
        return self._switch

    def draining(self) -> bool:
        return self._switch is not None and self._switch.step == SwitchStep.DRAINING

    def awake(self) -> list[str]:
        """Models up and answering (policy single: at most one)."""
        return [m for m, s in self._slots.items() if s.residency in UP and not s.crashed]

    def resident(self) -> str | None:
        """The most recently used model that is up (one name, for status and the CLI)."""
        up = self.awake()
        return max(up, key=lambda m: self._slots[m].last_used) if up else None

    def wants(self, model: str) -> bool:
        """Whether the scheduler is bringing `model` up, or keeps it up."""
        s = self._slots[model]
        target = self._switch.target if self._switch is not None else None
        return self._pending_load == model or target == model or s.residency in (Residency.STARTING, Residency.READY)

    def occupied(self) -> set[str]:
        """Models whose memory counts now: up, starting, draining or stopping."""
        return {m for m, s in self._slots.items() if s.residency != Residency.ABSENT}

    def fits_beside(self, model: str) -> bool:
        """Whether `model` could come up without anything else going (for gateway.preload)."""
        return self.policy.fits(self.occupied() | {model})

    def backoff_left(self, model: str, now: float) -> float:
        return max(0.0, self._slots[model].backoff_until - now)

    def backends(self) -> int:
        """How many backends hold memory in the scheduler's view (policy single: never above 1)."""
        return len(self.occupied())

    def next_deadline(self, now: float) -> float | None:
        """When a `tick` could change something (drain timeout, starvation bound, ttl)."""
        times = [
            s.drain_since + s.policy.drain_timeout_s
            for s in self._slots.values()
            if s.residency == Residency.DRAINING and s.drain_since is not None and s.in_flight
        ]
        if self._switch is None:
            w = self._next_waiting(oldest=True)
            if w is not None and self.settings.grouping:
                times.append(w.arrived + self.settings.max_wait_s)
            for m, s in self._slots.items():
                if self._ttl_applies(m, s):
                    assert s.policy.ttl_s is not None
                    times.append(s.last_used + s.policy.ttl_s)
        return min(times) if times else None

    # --- events ----------------------------------------------------------------------------

    def request_arrived(self, id: int, model: str, now: float, priority: int = 0) -> list[Action]:
        slot = self._slots.get(model)
        if slot is None:
            return [Reject(id, 404, f"unknown model {model!r}")]
        left = self.backoff_left(model, now)
        if left > 0 and slot.residency not in UP:
            msg = f"{model} failed recently; retrying after a backoff"
            if slot.last_error:
                msg += f" (last error: {slot.last_error.splitlines()[0]})"
            return [Reject(id, 503, msg, retry_after=math.ceil(left))]
        if (self.settings.grouping or not self._queue) and self._may_grant(model, self._blocked(now)):
            return self._grant(id, model, now)
        if len(self._queue) >= self.settings.max_queue:
            return [
                Reject(
                    id,
                    503,
                    f"queue full ({self.settings.max_queue} requests waiting)",
                    retry_after=self.settings.queue_full_retry_after_s,
                )
            ]
        self._queue[id] = Waiting(id, model, now, priority)
        return self._decide(now)

    def request_finished(self, id: int, now: float) -> list[Action]:
        """A granted request ended, or a queued one left (its client went away)."""
        self._queue.pop(id, None)
        model = self._granted.pop(id, None)
        if model is not None:
            slot = self._slots[model]
            slot.in_flight.discard(id)
            if id in self._failed:
                self._failed.discard(id)
            else:
                slot.failures = 0
            slot.last_used = max(slot.last_used, now)
        return self._decide(now)

    def switch_done(self, model: str, now: float) -> list[Action]:
        sw = self._switch
        if sw is None or sw.step != SwitchStep.SWITCHING or sw.target != model:
            return []
        self._switch = None
        slot = self._slots[model]
        slot.residency = Residency.READY
        slot.last_used = now
        if slot.unload is not None:  # an unload asked while it was starting
            self._begin_unload(model, now)
        else:
            self._just_ready = model
        return self._decide(now)

    def switch_failed(self, model: str, error: str, now: float) -> list[Action]:
        sw = self._switch
        if sw is None or sw.step != SwitchStep.SWITCHING or sw.target != model:
            return []
        self._switch = None
        slot = self._slots[model]
        slot.residency, slot.unload = Residency.ABSENT, None  # the lifecycle removed what it had started
        if self._pending_load == model:
            self._pending_load = None
        self._backoff(model, error, now)
        return self._reject_queued(model, 502, f"{model} failed to start: {error}") + self._decide(now)

    def stop_done(self, model: str, now: float) -> list[Action]:
        slot = self._slots.get(model)
        if slot is None or slot.residency != Residency.STOPPING:
            return []
        slot.residency, slot.crashed = Residency.ABSENT, False
        return self._decide(now)

    def switch_abandoned(self, model: str, now: float) -> list[Action]:
        sw = self._switch
        if sw is None or sw.step != SwitchStep.SWITCHING or sw.target != model:
            return []
        self._switch = None
        slot = self._slots[model]
        slot.residency, slot.unload = Residency.ABSENT, None
        if self._pending_load == model:
            self._pending_load = None
        return self._decide(now)

    def backend_crashed(self, model: str, error: str, now: float) -> list[Action]:
        slot = self._slots.get(model)
        if slot is None or slot.residency not in UP or slot.crashed:
            return []
        actions = self._fail_in_flight(model, error)
        self._backoff(model, error, now)
        first = error.splitlines()[0] if error else ""
        left = self.backoff_left(model, now)
        actions += self._reject_queued(model, 503, f"{model} crashed: {first}", retry_after=math.ceil(left) or 1)
        if slot.residency == Residency.DRAINING:
            slot.crashed = True  # nothing left to drain: the switch (or the unload) that drains it reaps it
        else:
            slot.residency = Residency.STOPPING
            actions.append(StopResident(model, Cause.CRASH))
        return actions + self._decide(now)

    def unload_requested(self, now: float, sleep: bool = False, model: str | None = None) -> list[Action]:
        self._pending_load = None
        actions: list[Action] = []
        for m in [model] if model is not None else list(self._slots):
            slot = self._slots[m]
            if slot.residency == Residency.READY:
                slot.unload = sleep
                actions += self._begin_unload(m, now)
            elif slot.residency == Residency.STARTING:
                slot.unload = sleep  # once it is ready
        return actions + self._decide(now)

    def load_requested(self, model: str, now: float) -> list[Action]:
        slot = self._slots.get(model)
        if slot is None:
            return []
        slot.backoff_until = 0.0
        sw = self._switch
        actions: list[Action] = []
        if sw is not None and sw.step == SwitchStep.DRAINING and model in sw.victims and not slot.crashed:
            actions = self._call_off(sw)  # it was about to make room: it stays
        if slot.residency in (Residency.READY, Residency.STARTING):
            slot.unload = None
            self._pending_load = None
            return actions + self._decide(now)
        self._pending_load = model
        return actions + self._decide(now)

    def tick(self, now: float) -> list[Action]:
        return self._decide(now)

    def measured(self, model: str, need_bytes: int) -> None:
        self.policy.measured(model, need_bytes)

    # --- rules -----------------------------------------------------------------------------

    def _may_grant(self, model: str, blocked: frozenset[str]) -> bool:
        """A request for `model` may go to its backend now (`blocked`: see `_blocked`)."""
        return self._slots[model].residency == Residency.READY and model not in blocked

    def _blocked(self, now: float) -> frozenset[str]:
        """Ready models that take no new work: those in the way of a model an operator asked for, and
        (grouping) of a request past the starvation bound, except the model that just became ready."""
        out: set[str] = set()
        p = self._pending_load
        if p is not None and self._slots[p].residency == Residency.ABSENT:
            out.update(self._victims_for(p) or ())
        if self.settings.grouping:
            w = self._next_waiting(oldest=True)
            if w is not None and now - w.arrived >= self.settings.max_wait_s:
                out.update(m for m in self._victims_for(w.model) or () if m != self._just_ready)
        return frozenset(out)

    def _grant(self, id: int, model: str, now: float) -> list[Action]:
        self._granted[id] = model
        slot = self._slots[model]
        slot.in_flight.add(id)
        slot.last_used = max(slot.last_used, now)
        return [Grant(id, model)]

    def _fail_in_flight(self, model: str, error: str) -> list[Action]:
        """`model`'s backend died: its requests in flight end with a 502 (late finishes are harmless)."""
        slot = self._slots[model]
        ids = tuple(sorted(slot.in_flight))
        if not ids:
            return []
        self._failed.update(ids)
        slot.in_flight.clear()
        return [FailInFlight(model, error, ids)]

    def _cut_in_flight(self, model: str) -> None:
        """Requests still in flight when a drain ends are cut by the stop; they stay in `_granted`
        so their (late) request_finished is harmless."""
        slot = self._slots[model]
        self._failed.update(slot.in_flight)
        slot.in_flight.clear()

    def _reject_queued(self, model: str, status: int, message: str, retry_after: float | None = None) -> list[Action]:
        """Every queued request for `model` leaves the queue with this answer."""
        out: list[Action] = []
        for w in [w for w in self._queue.values() if w.model == model]:
            del self._queue[w.id]
            out.append(Reject(w.id, status, message, retry_after=retry_after))
        return out

    def _backoff(self, model: str, error: str, now: float) -> None:
        s = self.settings
        slot = self._slots[model]
        slot.failures += 1
        slot.last_error = error
        slot.backoff_until = now + min(s.backoff_initial_s * 2 ** (slot.failures - 1), s.backoff_max_s)

    def _candidates(self) -> list[Candidate]:
        return [
            Candidate(m, len(s.in_flight), self.queued(m), s.last_used)
            for m, s in self._slots.items()
            if s.residency == Residency.READY
        ]

    def _victims_for(self, target: str) -> list[str] | None:
        candidates = self._candidates()
        fixed = frozenset(self.occupied() - {c.name for c in candidates} - {target})
        return self.policy.victims(target, candidates, fixed)

    def _next_waiting(self, oldest: bool = False, now: float = 0.0) -> Waiting | None:
        """The request whose model comes up next (`_pick`), among those for a model that is absent (its
        old backend must be gone before a new one starts); with `oldest`, the oldest of them."""
        waiting = [w for w in self._queue.values() if self._slots[w.model].residency == Residency.ABSENT]
        if not waiting:
            return None
        return waiting[0] if oldest else self._pick(waiting, now)

    def _pick(self, waiting: list[Waiting], now: float) -> Waiting:
        """Whose model goes next: a request past the starvation bound (the oldest), else the highest
        priority, else the oldest. Without profiles every priority is 0: arrival order."""
        overdue = [w for w in waiting if now - w.arrived >= self.settings.max_wait_s]
        if overdue or not self.settings.grouping:
            return (overdue or waiting)[0]
        return max(waiting, key=lambda w: (w.priority, -w.arrived))

    def _ttl_applies(self, model: str, slot: Slot) -> bool:
        return (
            slot.residency == Residency.READY
            and slot.policy.ttl_s is not None
            and not slot.in_flight
            and not self.queued(model)
        )

    def _begin_unload(self, model: str, now: float) -> list[Action]:
        slot = self._slots[model]
        slot.residency, slot.drain_since = Residency.DRAINING, now
        return [Drain(model, None, len(slot.in_flight))]

    def _decide(self, now: float) -> list[Action]:
        """Apply the rules until nothing changes; return what the manager must do."""
        actions: list[Action] = []
        for _ in range(64):  # each pass changes the state once; a few passes always settle
            more = self._step(now)
            if more is None:
                break
            actions += more
        self._just_ready = None
        return actions

    def _step(self, now: float) -> list[Action] | None:
        """One rule applied: the actions it gives (maybe none), or None when no rule applies."""
        granted = self._grant_queued(now)
        if granted:
            return granted
        stopped = self._step_unloads(now)
        if stopped is not None:
            return stopped
        sw = self._switch
        if sw is not None:
            return self._step_drain(sw, now) if sw.step == SwitchStep.DRAINING else None
        target = self._next_target(now)
        if target is None:
            return self._step_ttl(now)
        return self._begin(target, now)

    def _grant_queued(self, now: float) -> list[Action]:
        """Queued requests whose model is ready (grouping: all of them; first come, first served:
        from the head of the queue only)."""
        out: list[Action] = []
        if not self._queue:
            return out
        blocked = self._blocked(now)
        for w in list(self._queue.values()):
            if self._may_grant(w.model, blocked):
                del self._queue[w.id]
                out += self._grant(w.id, w.model, now)
            elif not self.settings.grouping:
                break
        return out

    def _step_unloads(self, now: float) -> list[Action] | None:
        """An operator's unload whose drain is over: the model goes."""
        for m, s in self._slots.items():
            if s.unload is None or s.residency != Residency.DRAINING or s.drain_since is None:
                continue
            if s.in_flight and now - s.drain_since < s.policy.drain_timeout_s:
                continue
            self._cut_in_flight(m)
            sleep = s.unload and not s.crashed
            cause = Cause.CRASH if s.crashed else Cause.SLEEP if sleep else Cause.UNLOAD
            s.residency, s.unload, s.drain_since = Residency.STOPPING, None, None
            return [StopResident(m, cause, sleep=sleep)]
        return None

    def _next_target(self, now: float) -> str | None:
        p = self._pending_load
        if p is not None and self._slots[p].residency == Residency.ABSENT:
            return p
        w = self._next_waiting(now=now)
        return w.model if w is not None else None

    def _begin(self, target: str, now: float) -> list[Action] | None:
        """Bring `target` up: at once when it fits, else after its victims drain; None: not yet."""
        load = self._pending_load == target
        victims = self._victims_for(target)
        if victims is None:
            if load:
                self._pending_load = None
            return self._reject_queued(target, 503, self.policy.refusal(target))
        candidates = {c.name for c in self._candidates()}
        fixed = self.occupied() - candidates
        if not self.policy.fits(fixed | (candidates - set(victims)) | {target}):
            return None  # what is starting, draining or stopping must finish first; its event decides again
        cause = Cause.LOAD if load else Cause.QUEUE
        if victims and not load and self.settings.grouping:
            # grouping: the victims keep serving while they have work, within the starvation bound
            w = self._next_waiting(now=now)
            overdue = w is not None and now - w.arrived >= self.settings.max_wait_s
            busy = any(self._slots[v].in_flight or self.queued(v) for v in victims)
            if busy and not overdue:
                return None
            if busy:
                cause = Cause.STARVATION
        if load:
            self._pending_load = None
        if not victims:
            self._switch = Switch(target, (), SwitchStep.SWITCHING, cause, now)
            self._slots[target].residency = Residency.STARTING
            return [StartSwitch(None, target)]
        self._switch = Switch(target, tuple(victims), SwitchStep.DRAINING, cause, now)
        out: list[Action] = []
        for v in victims:
            slot = self._slots[v]
            slot.residency, slot.drain_since = Residency.DRAINING, now
            out.append(Drain(v, target, len(slot.in_flight)))
        return out

    def _step_drain(self, sw: Switch, now: float) -> list[Action] | None:
        p = self._pending_load
        if p is not None and p != sw.target and self._slots[p].residency == Residency.ABSENT:
            return self._call_off(sw)  # an operator asked for another model meanwhile
        if sw.cause != Cause.LOAD and p != sw.target and not self.queued(sw.target):
            return self._call_off(sw)  # everyone waiting for the target left
        pending = [
            v
            for v in sw.victims
            if self._slots[v].in_flight
            and now - (self._slots[v].drain_since or now) < self._slots[v].policy.drain_timeout_s
        ]
        if pending:
            return None
        for v in sw.victims:
            self._cut_in_flight(v)
            slot = self._slots[v]
            slot.residency, slot.drain_since, slot.crashed = Residency.ABSENT, None, False  # the switch retires it
        if p == sw.target:
            self._pending_load = None
        self._switch = Switch(sw.target, sw.victims, SwitchStep.SWITCHING, sw.cause, now)
        self._slots[sw.target].residency = Residency.STARTING
        return [StartSwitch(sw.victims[0], sw.target, sw.victims[1:])]

    def _call_off(self, sw: Switch) -> list[Action]:
        """The drain's target is no longer wanted: the victims serve again (one that died meanwhile is reaped)."""
        self._switch = None
        out: list[Action] = []
        for v in sw.victims:
            slot = self._slots[v]
            slot.drain_since = None
            if slot.crashed:
                slot.residency, slot.crashed = Residency.STOPPING, False
                out.append(StopResident(v, Cause.CRASH))
            else:
                slot.residency = Residency.READY
        return out

    def _step_ttl(self, now: float) -> list[Action] | None:
        for m, s in self._slots.items():
            if self._ttl_applies(m, s):
                assert s.policy.ttl_s is not None
                if now - s.last_used >= s.policy.ttl_s:
                    s.residency = Residency.STOPPING
                    return [StopResident(m, Cause.TTL)]
        return None


__all__ = [
    "Action",
    "Decisions",
    "Drain",
    "FailInFlight",
    "Grant",
    "ModelPolicy",
    "Reject",
    "Scheduler",
    "SchedulerSettings",
    "StartSwitch",
    "StopResident",
    "Switch",
]
