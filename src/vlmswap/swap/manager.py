"""The one owner of the gateway's state: it asks the scheduler and carries out its actions.

Every event (a request arrived or finished, a switch ended, a timer fired, an operator asked
for a load, a backend exited) is handed to the pure `Scheduler` on the event loop's single
thread through a typed call, and the actions that come back are carried out before anything
else can run. No lock is needed because nothing awaits between reading and changing state;
two racing requests can never start two backends. Slow work (a switch, a stop) is done by
the `Lifecycle` in its own task and comes back as one more event (`switch_done`,
`switch_failed`, `stop_done`).

Routes never touch backends: they ask for a *lease* on a model, send their request to the
lease's `base_url`, and release it when the response has been sent.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import os
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from vlmswap import backends, gpu
from vlmswap.api.errors import APIError
from vlmswap.backends.base import BackendError
from vlmswap.backends.base import state_dir as default_state_dir
from vlmswap.registry.availability import unavailable_reason
from vlmswap.registry.config import ModelSpec, Registry
from vlmswap.swap.events import EventBus, Subscription
from vlmswap.swap.keeping import PoolOrder, order_for
from vlmswap.swap.lifecycle import Lifecycle
from vlmswap.swap.model import Model
from vlmswap.swap.policies import EvictAll, Placement, Policy
from vlmswap.swap.predictor import Predictor, write_atomic
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
from vlmswap.swap.staging import Stager
from vlmswap.swap.states import ModelState, Phase, Residency
from vlmswap.swap.traces import Recorder

__all__ = ["Lease", "Manager", "Model", "Ticket"]

UNAVAILABLE_REFRESH_S = 5.0
HOUSEKEEPING_S = 1.0  # the trace is written, idleness checked for staging, this often
PREDICTOR_SAVE_S = 60.0  # what the predictor learned is saved this often (and at shutdown)
PREDICTOR_FILE = "predictor.json"
PREDICTED_SHOWN = 5


@dataclass(frozen=True)
class Lease:
    """Permission to send requests to `name`'s backend at `base_url` until released."""

    name: str
    spec: ModelSpec
    base_url: str
    id: int = 0
    _errors: dict[int, str] = field(default_factory=dict, repr=False, compare=False)

    @property
    def error(self) -> str | None:
        """Set when the backend crashed while this lease was held (the reason for a 502)."""
        return self._errors.get(self.id)


class Ticket:
    """A request's place in the queue; `wait()` returns the lease or raises APIError."""

    def __init__(self, manager: Manager, id: int, name: str, future: asyncio.Future[Lease]):
        self.manager = manager
        self.id = id
        self.name = name
        self.future = future
        self._released = False

    async def wait(self) -> Lease:
        try:
            return await self.future
        except asyncio.CancelledError:
            # The client went away while waiting (or just after the grant): leave the queue.
            self.release()
            raise

    def release(self) -> None:
        """The request is over, or left the queue; once only."""
        if not self._released:
            self._released = True
            self.manager._release(self.id)


class Manager:
    """Feeds the scheduler, carries out its actions through the lifecycle, hands out leases."""

    def __init__(
        self,
        registry: Registry,
        *,
        state_dir: Path | None = None,
        gpu_probe: Callable[[], gpu.GpuSnapshot] = gpu.probe,
        clock: Callable[[], float] = time.monotonic,
        gateway_id: str | None = None,
        grouping: bool = True,
    ):
        self.registry = registry
        self.settings = registry.gateway
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.gpu_probe = gpu_probe
        self.clock = clock
        self.gateway_id = gateway_id or f"{socket.gethostname()}-{os.getpid()}"
        self.events = EventBus()
        # Learned from every request (its wall clock: what it learns outlives this process).
        self.predictor = Predictor(registry.models, horizon_s=self.settings.predict_horizon_s)
        self.predictor.load(self.state_dir / PREDICTOR_FILE)
        self._predictor_saved = self.predictor.observed
        self.order: PoolOrder = order_for(
            self.settings.pool_policy,
            last_used=lambda name: self.scheduler.last_used(name),
            now=clock,
            predictor=self.predictor,
            costs=lambda name: self.lifecycle.costs(name),
            queued=lambda name: self.scheduler.queued(name),
            wall=time.time,
        )
        self.lifecycle = Lifecycle(
            registry,
            self.state_dir,
            self.events,
            gpu_probe=gpu_probe,
            clock=clock,
            on_exit=self._backend_exited,
            order=self.order,
            used=lambda name: self.scheduler.last_used(name),
        )
        self.scheduler = Scheduler.from_registry(registry, policy=self._policy(), grouping=grouping)
        trace = self.settings.trace_path
        self.recorder = Recorder(self.state_dir / trace) if trace else None  # an absolute path stays as it is
        self._arrivals: dict[int, float] = {}  # id -> wall clock of arrival (recorded traces only)
        self._granted_at: dict[int, float] = {}
        # Staging (idle time): one at a time; a request stops it (page cache) or calls it off (a start).
        self.stager = Stager(
            registry,
            self.predictor,
            self.scheduler,
            self.lifecycle,
            self.events,
            apply=self._apply_all,
            clock=clock,
            unavailable=self.unavailable,
        )
        self._tickets: dict[int, Ticket] = {}
        self._lease_errors: dict[int, str] = {}
        self._ids = itertools.count(1)
        self._jobs: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._watcher: asyncio.Task[None] | None = None
        self._housekeeper: asyncio.Task[None] | None = None
        self._timer_wake: asyncio.Event | None = None
        self._timer_deadline: float | None = None
        self._unavailable: dict[str, str | None] | None = None
        self._started = False
        self._closing = False
        self._exiting = False  # stop_admitting(): a signal asked the process to exit
        self._preloading: list[str] = []  # fit: the rest of gateway.preload, loaded one by one
        self.switch_count = 0

    def _policy(self) -> Policy:
        """gateway.policy: `single` evicts everything else; `fit` keeps what fits beside the target."""
        if self.settings.policy != "fit":
            return EvictAll()
        lc = self.lifecycle
        needs = {name: lc.need_bytes(name) for name in self.registry.models}
        return Placement.for_card(lc.card_bytes(), self.settings.gpu_budget_gb, needs)

    def awake(self) -> list[str]:
        """The models awake and serving (policy single: at most one)."""
        return self.scheduler.awake()

    @property
    def models(self) -> dict[str, Model]:
        """Each model's state, last error and timings (owned by the lifecycle)."""
        return self.lifecycle.models

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Stop backends an earlier gateway left behind (returns what was done), then run."""
        messages = await asyncio.to_thread(backends.cleanup_orphans, self.state_dir, self.registry)
        await self._refresh_unavailable()
        self._timer_wake = asyncio.Event()
        self._timer = asyncio.create_task(self._run_timer(), name="vlmswap-timer")
        self._watcher = asyncio.create_task(self._run_unavailable(), name="vlmswap-unavailable")
        self._housekeeper = asyncio.create_task(self._run_housekeeping(), name="vlmswap-housekeeping")
        self._started = True
        for m in messages:
            self.events.publish("state", None, message=m)
        self._preload()
        return messages

    def _preload(self) -> None:
        """`gateway.preload`: every model that fits beside the ones before it, in order (policy single: the
        first)."""
        self._preloading = [self.resolve(n) for n in self.settings.preload]
        self._preload_next()

    def _preload_next(self) -> None:
        """The next preload that fits beside what is up (never evicting an earlier one)."""
        while self._preloading:
            name = self._preloading.pop(0)
            if self.scheduler.fits_beside(name):
                self._apply_all(self.scheduler.load_requested(name, self.clock()))
                return
            up = sorted(self.scheduler.occupied())
            self.events.publish("state", name, message=f"preload: {name} does not fit beside {', '.join(up)}")

    async def shutdown(self) -> None:
        """Stop every backend this manager started, sleepers included; answer waiting requests with 503."""
        if self._closing:
            return
        self._closing = True
        tasks = [t for t in (self._timer, self._watcher, self._housekeeper, *self._jobs) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.stager.stop()
        with contextlib.suppress(Exception):
            await self._save_learned(final=True)
        for ticket in list(self._tickets.values()):
            if not ticket.future.done():
                ticket.future.set_exception(APIError(503, "the gateway is shutting down", headers={"Retry-After": "5"}))
        self._tickets.clear()
        await self.lifecycle.shutdown()

    # --- requests --------------------------------------------------------------------------

    def resolve(self, model_id: str) -> str:
        """Registry name for a client's model id, or APIError 404 listing the known ids."""
        return self.registry.require(model_id)

    def stop_admitting(self) -> None:
        """The process is exiting: refuse new requests, answer the queued ones with 503 now.

        The HTTP server's graceful shutdown then waits only for requests in flight, not for
        queued ones that would never be served (and would be cut without an answer).
        """
        self._exiting = True
        for ticket in list(self._tickets.values()):
            if not ticket.future.done():
                ticket.release()  # leaves the scheduler's queue
                ticket.future.set_exception(APIError(503, "the gateway is shutting down", headers={"Retry-After": "5"}))

    def request(self, model_id: str, priority: int = 0) -> Ticket:
        """Join the queue for a model (raises APIError 404/503 at once when that is the answer).

        `priority`: the client profile's; higher is served first, within the starvation bound."""
        name = self.resolve(model_id)
        if self._exiting:
            raise APIError(503, "the gateway is shutting down", headers={"Retry-After": "5"})
        if self._closing or not self._started:
            raise APIError(503, "the gateway is not running", headers={"Retry-After": "5"})
        id = next(self._ids)
        ticket = Ticket(self, id, name, asyncio.get_running_loop().create_future())
        self._tickets[id] = ticket
        wall = time.time()
        self.predictor.observe(name, wall)  # first: a switch this request starts keeps the pool by it
        if self.recorder is not None:
            self._arrivals[id] = wall
        self._apply_all(self.scheduler.request_arrived(id, name, self.clock(), priority))
        self.stager.request_arrived(name)  # a request always wins over staging
        if ticket.future.done() and ticket.future.exception() is not None:
            ticket._released = True
            raise ticket.future.exception()  # type: ignore[misc]
        return ticket

    @asynccontextmanager
    async def lease(self, model_id: str) -> AsyncIterator[Lease]:
        """Wait in the queue for `model_id`; the lease is held until the block exits."""
        ticket = self.request(model_id)
        lease = await ticket.wait()
        try:
            yield lease
        finally:
            ticket.release()

    def _release(self, id: int) -> None:
        ticket = self._tickets.pop(id, None)
        self._lease_errors.pop(id, None)
        if self.recorder is not None and ticket is not None:
            self._record(id, ticket.name)
        if not self._closing:
            now = self.clock()
            self._apply_all(self.scheduler.request_finished(id, now))

    # --- operator actions ------------------------------------------------------------------

    async def load(self, name: str, wait: bool = False) -> dict[str, Any]:
        """Switch to `name` as soon as the rules allow; with wait, until it is ready (or failed: 502)."""
        name = self.resolve(name)
        if self._closing or not self._started:
            raise APIError(503, "the gateway is not running")
        sub = self.subscribe()
        try:
            self.stager.load_requested(name)
            self._apply_all(self.scheduler.load_requested(name, self.clock()))
            if wait:
                await self._wait_loaded(name, sub)
        finally:
            await sub.aclose()
        return self.model_status(name)

    async def _wait_loaded(self, name: str, sub: Subscription) -> None:
        spec = self.registry.models[name]
        s = self.settings
        bound = (
            spec.startup_timeout_s
            + s.drain_timeout_s
            + s.stop_grace_s
            + s.vram_release_timeout_s
            + s.max_wait_s
            + s.sleep_timeout_s
            + s.wake_timeout_s
        )
        try:
            async with asyncio.timeout(bound):
                while self.scheduler.residency(name) != Residency.READY:
                    if not self.scheduler.wants(name):
                        raise APIError(409, f"the load of {name} was superseded", code="load_superseded")
                    ev = await sub.__anext__()
                    if ev["type"] == "state" and ev["model"] == name and ev["state"] == ModelState.READY:
                        break  # loaded; what the queue does next is another matter
                    if ev["type"] == "state" and ev["model"] == name and ev["state"] == ModelState.FAILED:
                        raise APIError(502, f"{name} failed to start: {ev['message']}", code="backend_start_failed")
        except TimeoutError:
            raise APIError(504, f"{name} was not ready after {bound:.0f} s") from None

    def _awake_target(self) -> str | None:
        """The model an unload or a sleep without a name means: the one up, else the one coming up."""
        sw, p = self.scheduler.switch(), self.lifecycle.progress
        return self.scheduler.resident() or (sw.target if sw else None) or (p.target if p else None)

    async def unload(self, name: str | None = None) -> dict[str, Any]:
        """Stop the awake model (after its requests in flight) and every sleeper; `name`: only that one
        (awake or asleep)."""
        if name is not None:
            name = self.resolve(name)
            if self.models[name].state == ModelState.SLEEPING:
                self._stop_sleepers([name])
                return {"model": name, "unloading": True, "state": ModelState.SLEEPING}
            return self._take_off_gpu(name, sleep=False)
        stopped = self._stop_sleepers(self.lifecycle.sleepers())
        out = self._take_off_gpu(None, sleep=False)
        if stopped:
            out["sleepers"] = stopped
            out["unloading"] = True
        return out

    def _stop_sleepers(self, names: list[str]) -> list[str]:
        """Stop sleepers in the background; never the one a switch is about to wake."""
        p = self.lifecycle.progress
        names = [n for n in names if p is None or p.target != n]
        for n in names:
            self._spawn(self.lifecycle.stop(n, n, "unload"))
        return names

    async def sleep(self, name: str) -> dict[str, Any]:
        """Put the awake model `name` to sleep (after its requests in flight); 409 when it cannot sleep."""
        name = self.resolve(name)
        if not self.registry.models[name].sleep_mode:
            raise APIError(
                409,
                f"{name} has no sleep mode (sleep_mode: false in the registry); unload it instead",
                code="no_sleep_mode",
            )
        if self.models[name].state == ModelState.SLEEPING:
            return {"model": name, "sleeping": False, "state": ModelState.SLEEPING, "message": f"{name} is asleep"}
        return self._take_off_gpu(name, sleep=True)

    def _take_off_gpu(self, name: str | None, *, sleep: bool) -> dict[str, Any]:
        key = "sleeping" if sleep else "unloading"
        resident = self._awake_target()
        if name is not None:
            name = self.resolve(name)
            if self.scheduler.residency(name) not in (Residency.READY, Residency.STARTING):
                return {"model": name, key: False, "state": self.models[name].state, "message": f"{name} is not awake"}
        if resident is None:
            return {"model": None, key: False, "message": "no model is awake"}
        self._apply_all(self.scheduler.unload_requested(self.clock(), sleep=sleep, model=name))
        return {"model": name or resident, key: True, "state": self.models[name or resident].state}

    # --- events ----------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Every event from now on (registered before this returns)."""
        return self.events.subscribe()

    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Called synchronously with every published event (metrics use this)."""
        self.events.add_listener(fn)

    def add_phase_listener(self, fn: Callable[[str, str, float], None]) -> None:
        """Called with (model, phase, seconds) each time a switch phase ends (metrics use this)."""
        self.lifecycle.add_phase_listener(fn)

    # --- the scheduler's actions -----------------------------------------------------------

    def _apply_all(self, actions: list[Action]) -> None:
        for action in actions:
            self._apply(action)
        if self.scheduler.switch() is None and self.lifecycle.progress is not None and not self._jobs_running():
            self.lifecycle.progress = None  # e.g. a drain called off because everyone waiting left
        self._rearm_timer()

    def _jobs_running(self) -> bool:
        return any(not t.done() for t in self._jobs)

    def _apply(self, action: Action) -> None:
        match action:
            case Grant(id, model):
                self._grant(id, model)
            case Reject(id, status, message, retry_after):
                ticket = self._tickets.pop(id, None)
                if ticket is None or ticket.future.done():
                    return
                if self.recorder is not None:
                    self._record(id, ticket.name)
                headers = {"Retry-After": str(max(1, math.ceil(retry_after)))} if retry_after else None
                code = {404: "model_not_found", 502: "backend_start_failed", 503: "unavailable"}.get(status)
                ticket.future.set_exception(APIError(status, message, code=code, headers=headers))
            case Drain(model, to_model, in_flight):
                target = to_model or model
                self.lifecycle.begin(target)
                what = f"switching to {to_model}" if to_model else "unloading"
                self.lifecycle.phase(
                    target, Phase.DRAINING, f"{model} admits no new requests ({what}); {in_flight} in flight"
                )
            case StartSwitch(from_model, to_model, evict):
                retire = tuple(m for m in (from_model, *evict) if m is not None)
                self.stager.switch_started(to_model, self._spawn(self._run_switch(retire, to_model)))
            case StopResident(model, cause, sleep):
                self.lifecycle.begin(model)
                self._spawn(self._run_stop(model, cause.reason, sleep))
            case FailInFlight(_model, error, ids):
                for id in ids:
                    self._lease_errors[id] = error

    def _grant(self, id: int, model: str) -> None:
        ticket = self._tickets.get(id)
        url = self.lifecycle.base_url(model)
        if ticket is None or ticket.future.done():
            return
        if url is None:  # cannot happen while the scheduler and lifecycle agree
            ticket.future.set_exception(APIError(502, f"{model} has no backend"))
            return
        if self.recorder is not None:
            self._granted_at[id] = self.clock()
        ticket.future.set_result(Lease(model, self.registry.models[model], url, id, self._lease_errors))

    def _record(self, id: int, name: str) -> None:
        """The request's line of the trace: when it arrived, and how long it held its model (None: it
        never got it)."""
        assert self.recorder is not None
        arrived, granted = self._arrivals.pop(id, None), self._granted_at.pop(id, None)
        if arrived is not None:
            self.recorder.add(arrived, name, None if granted is None else self.clock() - granted)

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)
        return task

    def _protected(self) -> frozenset[str]:
        oldest = self.scheduler.oldest_waiting()
        return frozenset({oldest}) if oldest else frozenset()

    # --- slow work: one short function each, reporting back as an event --------------------

    async def _run_switch(self, retire: tuple[str, ...], to_model: str) -> None:
        lc = self.lifecycle
        try:
            await lc.switch(retire, to_model, self._protected())
        except asyncio.CancelledError:
            if not self.stager.abandoning(to_model) or self._closing:
                raise
            await self.stager.abandoned(to_model)
        except Exception as exc:
            error = str(exc)
            tail = exc.log_tail if isinstance(exc, BackendError) else lc.logs(to_model, 30)
            self.switch_count += 1
            lc.set_state(to_model, ModelState.FAILED, error=error)
            lc.phase(to_model, Phase.FAILED, error, log_tail=tail)
            lc.end(to_model)
            self._apply_all(self.scheduler.switch_failed(to_model, error, self.clock()))
        else:
            self.switch_count += 1
            lc.end(to_model)
            self.scheduler.measured(to_model, lc.need_bytes(to_model))  # a new measurement replaces the estimate
            self._apply_all(self.scheduler.switch_done(to_model, self.clock()))
            self.stager.switch_done(to_model)
            self._preload_next()

    async def _run_stop(self, model: str, reason: str, sleep: bool) -> None:
        lc = self.lifecycle
        try:
            if sleep and await lc.put_to_sleep(model, model, self._protected()):
                pass
            else:
                await lc.stop(model, model, reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # it survived SIGKILL: say so, but never start another on top silently
            lc.set_state(model, ModelState.FAILED, error=str(exc))
        lc.end(model)
        self._apply_all(self.scheduler.stop_done(model, self.clock()))

    def _backend_exited(self, name: str, status: str) -> None:
        """Pushed by the lifecycle when a backend ends on its own."""
        if self._closing:
            return
        state = self.models[name].state
        if state == ModelState.SLEEPING:
            self._spawn(self.lifecycle.forget(name, status))
        elif state == ModelState.READY:
            lc = self.lifecycle
            tail = lc.logs(name, 20)
            error = f"{name} exited unexpectedly ({status})"
            lc.set_state(name, ModelState.FAILED, error=error)
            self.events.publish(
                "phase", name, phase=Phase.FAILED, elapsed_s=0.0, message=error, log_tail=tail, crash=True
            )
            self._apply_all(self.scheduler.backend_crashed(name, error, self.clock()))
        # starting, waking, stopping: the slow work under way sees the exit itself

    # --- staging: idle time spent on the likeliest next model (swap/staging.py) ---------------

    def _idle(self) -> bool:
        s = self.scheduler
        return (
            not self._closing
            and not s.in_flight()
            and not s.queued()
            and s.switch() is None
            and self.lifecycle.progress is None
            and not self._jobs_running()
        )

    def predicted(self, n: int = PREDICTED_SHOWN) -> list[dict[str, Any]]:
        """The likeliest next models with their chances within the horizon, and why."""
        now = time.time()
        return [
            {"model": p.model, "chance": round(p.chance, 4), "why": p.why}
            for p in self.predictor.ranked(now, self.registry.models)[:n]
        ]

    # --- the timer -------------------------------------------------------------------------

    def _rearm_timer(self) -> None:
        if self._timer_wake is None:
            return
        nd = self.scheduler.next_deadline(self.clock())
        if nd is not None and (self._timer_deadline is None or nd < self._timer_deadline - 1e-3):
            self._timer_wake.set()

    async def _run_timer(self) -> None:
        assert self._timer_wake is not None
        while True:
            now = self.clock()
            nd = self.scheduler.next_deadline(now)
            self._timer_deadline = nd
            self._timer_wake.clear()
            timeout = None if nd is None else max(0.0, nd - now) + 0.002
            try:
                await asyncio.wait_for(self._timer_wake.wait(), timeout)
            except TimeoutError:
                self._timer_deadline = None
                self._apply_all(self.scheduler.tick(self.clock()))

    # --- reading ---------------------------------------------------------------------------

    def logs(self, name: str, tail: int = 100) -> list[str]:
        """The backend's last output lines (from memory, or from its log file after a restart)."""
        return self.lifecycle.logs(self.resolve(name), tail)

    def exit_status(self, name: str) -> str | None:
        """How `name`'s backend ended, if it has (None while it runs or when it has none)."""
        return self.lifecycle.exit_status(name)

    def resident(self) -> str | None:
        """The model up and most recently used (policy single: the one up), or None."""
        return self.scheduler.resident()

    def unavailable(self) -> dict[str, str | None]:
        """Why each model cannot run here (None: nothing known against it); refreshed in the background,
        since a pull or an install changes it and reading the Hugging Face cache is file I/O."""
        if self._unavailable is None:
            present = self.gpu_probe().available
            self._unavailable = {n: unavailable_reason(spec, present) for n, spec in self.registry.models.items()}
        return self._unavailable

    async def _refresh_unavailable(self) -> None:
        present = self.gpu_probe().available
        items = list(self.registry.models.items())
        reasons = await asyncio.to_thread(lambda: [unavailable_reason(spec, present) for _, spec in items])
        self._unavailable = {name: r for (name, _), r in zip(items, reasons)}

    async def _run_housekeeping(self) -> None:
        """Off the request path: the recorded trace is written, what the predictor learned is saved, and
        an idle GPU stages the likeliest next model."""
        saved = self.clock()
        while True:
            await asyncio.sleep(HOUSEKEEPING_S)
            try:
                if self.recorder is not None and self.recorder.pending():
                    await asyncio.to_thread(self.recorder.write, self.recorder.take())
                if self.clock() - saved >= PREDICTOR_SAVE_S:
                    saved = self.clock()
                    await self._save_learned()
                self.stager.consider(self._idle())
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # a full disk must not stop the gateway; say it once per failure
                self.events.publish("state", None, message=f"could not write the trace or the predictor: {exc}")

    async def _save_learned(self, final: bool = False) -> None:
        if self.recorder is not None and self.recorder.pending():
            await asyncio.to_thread(self.recorder.write, self.recorder.take())
        if self.predictor.observed != self._predictor_saved:
            data = self.predictor.dumps()  # on the loop: a consistent copy
            await asyncio.to_thread(write_atomic, self.state_dir / PREDICTOR_FILE, data)
            self._predictor_saved = self.predictor.observed

    async def _run_unavailable(self) -> None:
        while True:
            await asyncio.sleep(UNAVAILABLE_REFRESH_S)
            with contextlib.suppress(Exception):
                await self._refresh_unavailable()

    def model_status(self, name: str, gpu_snap: gpu.GpuSnapshot | None = None) -> dict[str, Any]:
        spec = self.registry.models[name]
        st = self.models[name]
        out: dict[str, Any] = {
            "name": name,
            "served_name": spec.served_name,
            "aliases": list(spec.aliases),
            "family": spec.family,
            "capabilities": list(spec.capabilities),
            "vram_gb": spec.vram_gb,
            "backend": spec.backend,
            "description": spec.description,
            "sleep_mode": spec.sleep_mode,
            "state": st.state,
            "since": st.since,
            "last_error": st.last_error,
            "last_start_s": st.last_start_s,
            "last_wake_s": st.last_wake_s,
            "starts": st.starts,
            "wakes": st.wakes,
            "need_bytes": self.lifecycle.need_bytes(name),
            "stats": self.lifecycle.stats.summary(name),
            "unavailable": self.unavailable().get(name),
            "in_flight": self.scheduler.in_flight(name),
            "queued": self.scheduler.queued(name),
            "backoff_s": round(self.scheduler.backoff_left(name, self.clock()), 3) or None,
        }
        if st.state == ModelState.SLEEPING:
            out["sleep_ram_bytes"] = self.lifecycle.estimated_sleep_ram(name)
            out["sleep_ram_measured"] = st.sleep_ram_bytes is not None
        url = self.lifecycle.base_url(name)
        if url is not None:
            out["base_url"] = url
            pids = self.lifecycle.pids(name)
            out["pids"] = sorted(pids)
            if gpu_snap is not None and gpu_snap.available:
                out["gpu_bytes"] = sum(v for p, v in gpu_snap.processes.items() if p in pids)
        return out

    def status(self) -> dict[str, Any]:
        snap = self.gpu_probe()
        g = snap.to_dict()
        g["per_backend"] = {}
        models = {}
        for name in self.registry.models:
            models[name] = self.model_status(name, snap)
            if "gpu_bytes" in models[name]:
                g["per_backend"][name] = models[name]["gpu_bytes"]
        vm = psutil.virtual_memory()
        p = self.lifecycle.progress
        sw = None
        if p is not None:
            sw = {
                "target": p.target,
                "phase": p.phase,
                "elapsed_s": round(self.clock() - p.started, 3),
                "eta_s": None if p.eta_s is None else round(p.eta_s, 3),
            }
        return {
            "resident": self.resident(),
            "awake": self.awake(),
            "models": models,
            "queue_length": self.scheduler.queued(),
            "in_flight": self.scheduler.in_flight(),
            "switch": sw,
            "switches": self.switch_count,
            "policy": self.settings.policy,
            "pool": self.lifecycle.pool_status(),
            "predicted": self.predicted(),
            "prediction_horizon_s": self.predictor.horizon_s,
            "staging": self.stager.status(),
            "gpu": g,
            "host": {"ram_total_bytes": vm.total, "ram_available_bytes": vm.available, "ram_used_bytes": vm.used},
            "gateway_id": self.gateway_id,
        }
