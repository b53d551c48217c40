"""Policy `fit`: several models awake at once while their memory fits; the rest wait their turn.

The same events in and actions out as `Scheduler` (policy `single`), and the same queue,
backoff and starvation bound; what differs is who may be awake. A request for an awake,
ready model is granted at once whatever else is loading. A request for a model that is not
awake makes it the next *target*: if it fits beside the awake ones (placement.py), it starts
right away; if not, the cheapest awake models (idle first, least recently used) are drained
and retired (to the sleeping pool, or stopped) as part of its switch. One switch at a time,
so two loads never race for the same free memory. Pure, like `Scheduler`: no I/O, the clock
is an argument.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from vlmswap.swap.placement import Candidate, Placement
from vlmswap.swap.scheduler import (
    Action,
    Drain,
    ModelPolicy,
    Scheduler,
    SchedulerSettings,
    StartSwitch,
    StopResident,
    Switch,
    Waiting,
)

if TYPE_CHECKING:
    from vlmswap.registry.config import Registry


class FitScheduler(Scheduler):
    def __init__(self, models: dict[str, ModelPolicy], placement: Placement, settings: SchedulerSettings | None = None):
        super().__init__(models, settings)
        self.placement = placement
        self.awake: dict[str, bool] = {}  # model -> ready (False: being started or woken)
        self.last_used: dict[str, float] = {}
        self.drains: dict[str, float] = {}  # model -> since: admits nothing new, then retired
        self.stopping: set[str] = set()  # being stopped outside a switch (crash, ttl, unload)
        self.victims: tuple[str, ...] = ()  # what the switch under way retires
        self.unloads: dict[str, bool] = {}  # operator: model -> to the sleeping pool (True) or stopped

    @classmethod
    def from_registry_fit(cls, registry: Registry, placement: Placement) -> FitScheduler:
        base = Scheduler.from_registry(registry)
        return cls(base.policies, placement, base.settings)

    # --- queries ---------------------------------------------------------------------------

    def awake_models(self) -> list[str]:
        return [m for m, ready in self.awake.items() if ready]

    def backends(self) -> int:
        return len(self.awake) + len(self.stopping)

    def occupied(self) -> set[str]:
        """Models whose memory counts now: awake (starting included) and being stopped."""
        return set(self.awake) | self.stopping

    def next_deadline(self, now: float) -> float | None:
        times = [since + self.policies[m].drain_timeout_s for m, since in self.drains.items()]
        if self.switch is None:
            waiting = self._target_waiting()
            if waiting is not None:
                times.append(waiting.arrived + self.settings.max_wait_s)
            for m in self.awake_models():
                ttl = self.policies[m].ttl_s
                if ttl is not None and not self.models[m].in_flight and not self.queued(m):
                    times.append(self.last_used.get(m, 0.0) + ttl)
        return min(times) if times else None

    # --- events ----------------------------------------------------------------------------

    def switch_done(self, model: str, now: float) -> list[Action]:
        sw = self.switch
        if sw is None or sw.phase != "switching" or sw.to_model != model:
            return []
        self._retired(self.victims)
        self.switch = None
        self.awake[model] = True
        self.last_used[model] = now
        self._refresh_resident(model)
        return self._decide(now)

    def switch_failed(self, model: str, error: str, now: float) -> list[Action]:
        sw = self.switch
        if sw is None or sw.phase != "switching" or sw.to_model != model:
            return []
        self._retired(self.victims + (model,))  # the lifecycle retired them before the start failed
        self.switch = None
        if self.pending_load == model:
            self.pending_load = None
        actions = self._fail(model, error, now) + self._reject_queued(model, 502, f"{model} failed to start: {error}")
        self._refresh_resident(None)
        return actions + self._decide(now)

    def stop_done(self, model: str, now: float) -> list[Action]:
        if model not in self.stopping:
            return []
        self.stopping.discard(model)
        return self._decide(now)

    def backend_crashed(self, model: str, error: str, now: float) -> list[Action]:
        if not self.awake.get(model):
            return []
        actions = self._fail_in_flight(model, error) + self._fail(model, error, now)
        left = self.backoff_left(model, now)
        actions += self._reject_queued(
            model,
            503,
            f"{model} crashed: {error.splitlines()[0] if error else ''}",
            retry_after=max(1, int(left + 0.999)),
        )
        self._retired((model,))
        if model in self.victims and self.switch is not None and self.switch.phase == "draining":
            # A victim died while draining: call the switch off and decide again, counting its memory
            # until its stop is done.
            for v in self.victims:
                self.drains.pop(v, None)
            self.switch, self.victims = None, ()
        self.unloads.pop(model, None)
        self.stopping.add(model)
        actions.append(StopResident(model, "crashed"))
        self._refresh_resident(None)
        return actions + self._decide(now)

    def unload_requested(self, now: float, sleep: bool = False, model: str | None = None) -> list[Action]:
        """Take `model` (None: every awake model) off the GPU after its requests in flight."""
        self.pending_load = None
        actions: list[Action] = []
        for m in [model] if model is not None else list(self.awake):
            if self.awake.get(m) and m not in self.victims and m not in self.unloads:
                self.unloads[m] = sleep
                self.drains[m] = now
                actions.append(Drain(m, None, len(self.models[m].in_flight)))
        return actions + self._decide(now)

    def load_requested(self, model: str, now: float) -> list[Action]:
        if model not in self.models:
            return []
        self.models[model].backoff_until = 0.0
        if self.awake.get(model):
            self.pending_load = None
            return []
        self.pending_load = model
        return self._decide(now)

    # --- rules -----------------------------------------------------------------------------

    def _may_grant_now(self, model: str, now: float) -> bool:
        return bool(self.awake.get(model)) and model not in self.drains and model not in self.unloads

    def _step(self, now: float) -> list[Action] | None:
        granted = self._grant_ready(now)
        if granted:
            return granted
        unloaded = self._step_unloads(now)
        if unloaded is not None:
            return unloaded
        sw = self.switch
        if sw is not None:
            return self._step_switch(sw, now) if sw.phase == "draining" else None
        target = self._next_fit_target(now)
        if target is None:
            return self._step_ttl(now)
        return self._begin(target, now)

    def _grant_ready(self, now: float) -> list[Action]:
        out: list[Action] = []
        for w in list(self.queue.values()):
            if self._may_grant_now(w.model, now):
                del self.queue[w.id]
                out += self._grant(w.id, w.model, now)
                self.last_used[w.model] = now
        return out

    def _step_unloads(self, now: float) -> list[Action] | None:
        for m, sleep in list(self.unloads.items()):
            if self.models[m].in_flight and now - self.drains[m] < self.policies[m].drain_timeout_s:
                continue
            self.failed_ids.update(self.models[m].in_flight)
            self.models[m].in_flight.clear()
            del self.unloads[m]
            self._retired((m,))
            self.stopping.add(m)
            self._refresh_resident(None)
            return [StopResident(m, "sleep" if sleep else "unload", sleep=sleep)]
        return None

    def _next_fit_target(self, now: float) -> str | None:
        p = self.pending_load
        if p is not None and p not in self.awake and p not in self.stopping:
            return p
        w = self._target_waiting(now)
        return w.model if w is not None else None

    def _target_waiting(self, now: float | None = None) -> Waiting | None:
        """The request whose model is started next (`_pick`: overdue, then priority, then age) among
        those for a model that is neither awake nor still being stopped (its old backend must be
        gone before a new one starts); without `now`, the oldest of them."""
        waiting = [w for w in self.queue.values() if w.model not in self.awake and w.model not in self.stopping]
        if not waiting:
            return None
        return self._pick(waiting, now) if now is not None else waiting[0]

    def _begin(self, target: str, now: float) -> list[Action] | None:
        kind = "load" if self.pending_load == target else "queue"
        if self.pending_load == target:
            self.pending_load = None
        candidates = [
            Candidate(m, len(self.models[m].in_flight), self.queued(m), self.last_used.get(m, 0.0))
            for m in self.awake_models()
            if m not in self.drains
        ]
        # What is starting, draining or stopping still holds its memory: it counts, and cannot be chosen.
        fixed = frozenset(self.occupied() - {c.name for c in candidates})
        victims = self.placement.victims(target, candidates, fixed)
        if victims is None:
            need, cap = self.placement.need.get(target, 0), self.placement.capacity_bytes or 0
            return self._reject_queued(
                target,
                503,
                f"{target} needs {need / 2**30:.1f} GiB of GPU memory, more than "
                f"the budget of {cap / 2**30:.1f} GiB (gateway.gpu_budget_gb)",
            )
        left = {c.name for c in candidates} - set(victims)
        if not self.placement.fits(fixed | left | {target}):
            return None  # what is stopping must finish first; its stop_done decides again
        waiting = self._target_waiting()
        if (
            victims
            and any(self.queued(v) for v in victims)
            and waiting is not None
            and now - waiting.arrived < self.settings.max_wait_s
        ):
            return None  # grouping: the victims' queued work first, within the starvation bound
        self.victims = tuple(victims)
        if not victims:
            self.switch = Switch(None, target, "switching", kind, now)
            self.awake[target] = False
            return [StartSwitch(None, target)]
        self.switch = Switch(None, target, "draining", kind, now)
        for v in victims:
            self.drains[v] = now
        return [Drain(v, target, len(self.models[v].in_flight)) for v in victims]

    def _step_switch(self, sw: Switch, now: float) -> list[Action] | None:
        pending = [
            v
            for v in self.victims
            if self.models[v].in_flight and now - self.drains.get(v, now) < self.policies[v].drain_timeout_s
        ]
        if pending:
            return None
        for v in self.victims:
            self.failed_ids.update(self.models[v].in_flight)
            self.models[v].in_flight.clear()
        assert sw.to_model is not None
        self.switch = Switch(None, sw.to_model, "switching", sw.kind, now)
        self.awake[sw.to_model] = False
        return [StartSwitch(self.victims[0], sw.to_model, self.victims[1:])]

    def _step_ttl(self, now: float) -> list[Action] | None:
        for m in self.awake_models():
            ttl = self.policies[m].ttl_s
            if (
                ttl is not None
                and not self.models[m].in_flight
                and not self.queued(m)
                and now - self.last_used.get(m, 0.0) >= ttl
            ):
                self._retired((m,))
                self.stopping.add(m)
                self._refresh_resident(None)
                return [StopResident(m, "ttl idle")]
        return None

    def _retired(self, models: tuple[str, ...]) -> None:
        for m in models:
            self.awake.pop(m, None)
            self.drains.pop(m, None)

    def _refresh_resident(self, preferred: str | None) -> None:
        """`resident` (one name, for status and the CLI): the most recently used awake model."""
        ready = self.awake_models()
        if preferred in ready:
            self.resident = preferred
        else:
            self.resident = max(ready, key=lambda m: self.last_used.get(m, 0.0)) if ready else None
        self.ready = self.resident is not None
