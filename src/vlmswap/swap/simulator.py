"""Replay a request trace through the real scheduler on a virtual clock (`vlmswap simulate`).

A discrete-event simulation: the requests of a trace arrive at their times, and everything
the gateway would decide is decided by the gateway's own code: the `Scheduler` (grouping,
the starvation bound, drains, ttl) with the registry's `Policy` (`single` or `fit` with its
placement), the sleeping pool's budgets (`pool.plan_sleep`, `pool.plan_gpu`) and its order
(`keeping.py`, with the `Predictor` learning online as the gateway's does). Only the slow
work is simulated: `SimLifecycle` takes the steps of `Lifecycle.switch` in the same order
with the same inputs, each costing its learned (or declared) seconds instead of running a
backend. Nothing fails in a simulation: no crashes, no leaks, no backoff.

What it does not model: the page-cache and start-and-sleep staging of idle time, GPU memory
measured per pid (a sleeper's residual is `residual_gb`; a model's need is its learned peak
or `vram_gb`), and stops (instant).
"""

from __future__ import annotations

import bisect
import heapq
import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import psutil

from vlmswap.registry.config import Registry
from vlmswap.swap import pool, priors
from vlmswap.swap.keeping import PoolOrder, PoolPolicy, order_for
from vlmswap.swap.policies import EvictAll, Placement, Policy
from vlmswap.swap.predictor import Predictor, Weights, trace_hour
from vlmswap.swap.priors import Costs, Learned
from vlmswap.swap.scheduler import (
    Action,
    Drain,
    FailInFlight,
    Grant,
    Reject,
    Scheduler,
    StartSwitch,
    StopResident,
)
from vlmswap.swap.traces import Request

GIB = 1024**3
TICK_SLACK_S = 1e-6  # a tick lands just after the deadline it is for (the manager's timer adds 2 ms)
DEFAULT_RESIDUAL_GB = 0.8  # a sleeping vLLM keeps its CUDA context, ~0.77 GiB at TP=1 (REFERENCE.md)


@dataclass
class Result:
    policy: str
    requests: int = 0
    served: int = 0
    rejected: int = 0
    cold_starts: int = 0
    wakes: int = 0
    switches: int = 0
    waits: list[float] = field(default_factory=list)
    gpu_busy_s: float = 0.0  # time with at least one request being served
    switching_s: float = 0.0  # time a switch was under way
    end_s: float = 0.0  # last event, from the first request

    def wait(self, q: float) -> float:
        return percentile(sorted(self.waits), q)

    def mean_wait(self) -> float:
        return sum(self.waits) / len(self.waits) if self.waits else 0.0

    def to_json(self) -> dict[str, Any]:
        """The issue's object, plus the GPU's busy time and requests refused (queue full)."""
        return {
            "policy": self.policy,
            "requests": self.requests,
            "cold_starts": self.cold_starts,
            "wakes": self.wakes,
            "switches": self.switches,
            "wait_s": {
                "mean": round(self.mean_wait(), 3),
                "p95": round(self.wait(95), 3),
                "p99": round(self.wait(99), 3),
            },
            "gpu_busy_s": round(self.gpu_busy_s, 3),
            "rejected": self.rejected,
        }


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default); 0 for no values."""
    if not sorted_values:
        return 0.0
    k = (len(sorted_values) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (k - lo)


class SimLifecycle:
    """`Lifecycle.switch` without backends: the same steps, the same pool plans, seconds instead of I/O.

    Each method mirrors the lifecycle's method of the same name (see lifecycle.py); keep them in
    step. The live gateway and this class are compared on one trace in
    tests/gateway_e2e/test_simulator_agrees.py.
    """

    def __init__(
        self,
        registry: Registry,
        costs: dict[str, Costs],
        stats: Learned | None,
        *,
        ram_budget_bytes: int,
        card_bytes: int | None,
        residual_bytes: int,
        keep: Callable[[str], float],
        worth: Callable[[str], float],
        used: Callable[[str], float],
    ):
        self.registry = registry
        self.settings = registry.gateway
        self.costs = costs
        self.stats = stats
        self.ram_budget_bytes = ram_budget_bytes
        self.card_bytes = card_bytes  # None: no NVML (the GPU-room step is skipped, as live)
        self.residual_bytes = residual_bytes
        self.keep, self.worth, self.used = keep, worth, used
        self.state: dict[str, str] = dict.fromkeys(registry.models, "stopped")  # stopped | awake | asleep
        self.cold_starts = 0
        self.wakes = 0
        self.sleep_ram: dict[str, int] = {}  # "measured" once asleep (the estimate: nothing to measure)

    def sleepers(self) -> list[str]:
        return [n for n, s in self.state.items() if s == "asleep"]

    def awake(self) -> list[str]:
        return [n for n, s in self.state.items() if s == "awake"]

    def estimated_sleep_ram(self, name: str) -> int:
        return priors.sleep_ram_bytes(name, self.registry.models[name], self.stats, self.sleep_ram.get(name))

    def need_bytes(self, name: str) -> int:
        return priors.need_bytes(name, self.registry.models[name], self.stats)

    def _sleepers(self) -> list[pool.Sleeper]:
        gpu = self.residual_bytes if self.card_bytes is not None else 0
        return [pool.Sleeper(n, self.estimated_sleep_ram(n), gpu, self.keep(n), self.used(n)) for n in self.sleepers()]

    def switch(self, retire: tuple[str, ...], to_model: str, protect: frozenset[str]) -> float:
        protect = protect | {to_model}
        took = 0.0
        for name in retire:
            if name != to_model:
                took += self.retire(name, to_model, protect)
        took += self.make_gpu_room(to_model, protect)
        if self.state[to_model] == "asleep":
            self.state[to_model] = "awake"
            self.wakes += 1
            return took + self.costs[to_model].wake_s
        self.state[to_model] = "awake"
        self.cold_starts += 1
        return took + self.costs[to_model].start_s

    def retire(self, name: str, for_model: str | None, protect: frozenset[str]) -> float:
        spec = self.registry.models[name]
        if spec.sleep_mode and self.state[name] == "awake":
            took = self.put_to_sleep(name, for_model or name, protect)
            if took is not None:
                return took
        self.stop(name)
        return 0.0

    def put_to_sleep(self, name: str, phase_model: str, protect: frozenset[str]) -> float | None:
        s = self.settings
        plan = pool.plan_sleep(
            name,
            self.estimated_sleep_ram(name),
            self._sleepers(),
            max_sleeping=s.max_sleeping,
            ram_budget_bytes=self.ram_budget_bytes,
            protect=protect,
            worth=self.worth(name),
            waking=phase_model,
        )
        if not plan.fits:
            self.stop(name)
            return None
        for victim in plan.evict:
            self.stop(victim)
        self.state[name] = "asleep"
        self.sleep_ram[name] = self.estimated_sleep_ram(name)
        return self.costs[name].sleep_s

    def make_gpu_room(self, target: str, protect: frozenset[str]) -> float:
        if self.card_bytes is None or not [n for n in self.sleepers() if n != target]:
            return 0.0
        held = sum(self.need_bytes(n) for n in self.awake() if n != target)
        plan = pool.plan_gpu(
            target, self.need_bytes(target), self._sleepers(), capacity_bytes=self.card_bytes - held, protect=protect
        )
        for victim in plan.evict:
            self.stop(victim)
        return 0.0

    def stop(self, name: str) -> None:
        self.state[name] = "stopped"
        self.sleep_ram.pop(name, None)


@dataclass
class Oracle:
    """Belady's rule with the trace's future in hand: the sleeper asked again last leaves first. No
    gateway can do this; it bounds what any prediction could win (bench/README.md, Simulator)."""

    arrivals: dict[str, list[float]]
    now: Callable[[], float]
    queued: Callable[[str], int]
    policy: str = "oracle"

    def keep(self, model: str) -> float:
        if self.queued(model):
            return math.inf
        times = self.arrivals.get(model, [])
        i = bisect.bisect_right(times, self.now())
        return -times[i] if i < len(times) else -math.inf

    def worth(self, model: str) -> float:
        return self.keep(model)

    def why(self, model: str) -> str:
        return "asked again next (the oracle knows the trace)"


@dataclass(frozen=True)
class Options:
    pool_policy: PoolPolicy | Literal["oracle"]
    card_bytes: int | None = None  # a simulated card seen through NVML; None: no NVML
    ram_budget_bytes: int | None = None  # None: gateway.sleep_ram_budget_gb, else half of this machine's RAM
    residual_bytes: int = int(DEFAULT_RESIDUAL_GB * GIB)
    grouping: bool = True
    weights: Weights | None = None
    horizon_s: float | None = None  # None: gateway.predict_horizon_s
    window_s: float | None = None  # None: the horizon


class Simulation:
    """One replay of one trace under one pool policy."""

    def __init__(self, registry: Registry, trace: Sequence[Request], options: Options, stats: Learned | None = None):
        self.registry = registry
        self.trace = trace
        self.options = options
        g = registry.gateway
        self.now = 0.0  # the scheduler's clock starts at 0; the predictor's is the trace's own (t0 + now)
        self.costs = {n: priors.costs(n, spec, stats) for n, spec in registry.models.items()}
        self.scheduler = Scheduler.from_registry(registry, policy=self._policy(stats), grouping=options.grouping)
        self.predictor = Predictor(
            registry.models,
            horizon_s=options.horizon_s or g.predict_horizon_s,
            window_s=options.window_s,
            weights=options.weights,
            hour_of=trace_hour,
        )
        self.t0 = trace[0].t if trace else 0.0
        if options.pool_policy == "oracle":
            arrivals: dict[str, list[float]] = {}
            for r in trace:
                arrivals.setdefault(r.model, []).append(r.t - self.t0)
            self.order: PoolOrder = Oracle(arrivals, lambda: self.now, self.scheduler.queued)
        else:
            self.order = order_for(
                options.pool_policy,
                last_used=self.scheduler.last_used,
                now=lambda: self.now,
                predictor=self.predictor,
                costs=self.costs.__getitem__,
                queued=self.scheduler.queued,
                wall=lambda: self.now + self.t0,
            )
        budget = options.ram_budget_bytes
        if budget is None:  # as the live lifecycle: the registry's, else half of this machine's memory
            budget = (
                int(g.sleep_ram_budget_gb * GIB)
                if g.sleep_ram_budget_gb is not None
                else psutil.virtual_memory().total // 2
            )
        self.lifecycle = SimLifecycle(
            registry,
            self.costs,
            stats,
            ram_budget_bytes=budget,
            card_bytes=options.card_bytes,
            residual_bytes=options.residual_bytes,
            keep=self.order.keep,
            worth=self.order.worth,
            used=self.scheduler.last_used,
        )
        self.result = Result(options.pool_policy)
        self._heap: list[tuple[float, int, str, Any]] = []
        self._seq = itertools.count()
        self._tick_at: float | None = None
        self._arrived: dict[int, float] = {}
        self._duration: dict[int, float] = {}
        self._in_flight = 0
        self._busy_since = 0.0
        self._switch_since: float | None = None
        self._preloading: list[str] = []

    def _policy(self, stats: Learned | None) -> Policy:
        g = self.registry.gateway
        if g.policy != "fit":
            return EvictAll()
        needs = {n: priors.need_bytes(n, spec, stats) for n, spec in self.registry.models.items()}
        card = self.options.card_bytes
        if card is None and g.gpu_memory_gb:
            card = int(g.gpu_memory_gb * GIB)
        return Placement.for_card(card, g.gpu_budget_gb, needs)

    def _push(self, t: float, kind: str, payload: Any = None) -> None:
        heapq.heappush(self._heap, (t, next(self._seq), kind, payload))

    def run(self) -> Result:
        trace, t0 = self.trace, self.t0
        for i, r in enumerate(trace, 1):
            self._push(r.t - t0, "arrive", (i, r))
        self.now = 0.0
        self._preloading = [self.registry.require(n) for n in self.registry.gateway.preload]
        self._preload_next()
        while self._heap:
            t, _, kind, payload = heapq.heappop(self._heap)
            self.now = t
            if kind == "arrive":
                i, r = payload
                self.result.requests += 1
                self._arrived[i] = t
                self._duration[i] = r.duration_s
                self.predictor.observe(r.model, r.t)
                self._apply(self.scheduler.request_arrived(i, r.model, t))
            elif kind == "finish":
                self._in_flight -= 1
                if self._in_flight == 0:
                    self.result.gpu_busy_s += t - self._busy_since
                self._apply(self.scheduler.request_finished(payload, t))
            elif kind == "switch_done":
                self.result.switches += 1
                if self._switch_since is not None:
                    self.result.switching_s += t - self._switch_since
                    self._switch_since = None
                self._apply(self.scheduler.switch_done(payload, t))
                self._preload_next()
            elif kind == "stop_done":
                self._apply(self.scheduler.stop_done(payload, t))
            elif kind == "tick":
                if self._tick_at is not None and t >= self._tick_at:
                    self._tick_at = None
                self._apply(self.scheduler.tick(t))
        self.result.end_s = self.now
        self.result.cold_starts = self.lifecycle.cold_starts
        self.result.wakes = self.lifecycle.wakes
        return self.result

    def _preload_next(self) -> None:
        while self._preloading:
            name = self._preloading.pop(0)
            if self.scheduler.fits_beside(name):
                self._apply(self.scheduler.load_requested(name, self.now))
                return

    def _protected(self) -> frozenset[str]:
        oldest = self.scheduler.oldest_waiting()
        return frozenset({oldest}) if oldest else frozenset()

    def _apply(self, actions: list[Action]) -> None:
        for action in actions:
            match action:
                case Grant(id, _model):
                    self.result.served += 1
                    self.result.waits.append(self.now - self._arrived.pop(id))
                    if self._in_flight == 0:
                        self._busy_since = self.now
                    self._in_flight += 1
                    self._push(self.now + self._duration.pop(id), "finish", id)
                case Reject(id, _status, _message, _retry):
                    self.result.rejected += 1
                    self._arrived.pop(id, None)
                case StartSwitch(from_model, to_model, evict):
                    retire = tuple(m for m in (from_model, *evict) if m is not None)
                    took = self.lifecycle.switch(retire, to_model, self._protected())
                    self._switch_since = self.now
                    self._push(self.now + took, "switch_done", to_model)
                case StopResident(model, _cause, sleep):
                    took = 0.0
                    slept = self.lifecycle.put_to_sleep(model, model, self._protected()) if sleep else None
                    if slept is None:
                        self.lifecycle.stop(model)
                    else:
                        took = slept
                    self._push(self.now + took, "stop_done", model)
                case Drain() | FailInFlight():
                    pass
        nd = self.scheduler.next_deadline(self.now)
        if nd is not None and (self._tick_at is None or nd < self._tick_at):
            self._tick_at = max(nd + TICK_SLACK_S, self.now)
            self._push(self._tick_at, "tick")


def simulate(registry: Registry, trace: Sequence[Request], options: Options, stats: Learned | None = None) -> Result:
    return Simulation(registry, trace, options, stats).run()


__all__ = ["Options", "Oracle", "Result", "SimLifecycle", "Simulation", "percentile", "simulate"]
