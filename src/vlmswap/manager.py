"""The one owner of the gateway's state: it asks the scheduler and carries out its actions.

Every event (a request arrived or finished, a switch ended, a timer fired, an operator asked
for a load) is handed to the pure `Scheduler` on the event loop's single thread, and the
actions that come back are carried out before anything else can run. No lock is needed
because nothing awaits between reading and changing state; two racing requests can never
start two backends. Slow work (stopping and starting a backend) runs in its own task and
comes back as one more event (`switch_done`, `switch_failed`, `stop_done`).

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
from collections import deque
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import psutil

from vlmswap import backends, gpu
from vlmswap.backends.base import Backend, BackendError, LogBuffer
from vlmswap.backends.base import state_dir as default_state_dir
from vlmswap.config import ModelSpec, Registry, unavailable_reason
from vlmswap.events import EventBus, Subscription
from vlmswap.errors import APIError
from vlmswap.scheduler import (
    Action,
    Drain,
    FailInFlight,
    Grant,
    Reject,
    Scheduler,
    StartSwitch,
    StopResident,
)

MIB = 1024 * 1024
VRAM_SLACK_FRACTION = 0.05  # "back near where it was": within 5 % of the card ...
VRAM_SLACK_BYTES = 256 * MIB  # ... or 256 MiB, whichever is larger
MONITOR_PERIOD_S = 0.1


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

    def __init__(self, manager: "Manager", id: int, name: str, future: asyncio.Future[Lease]):
        self.manager = manager
        self.id = id
        self.name = name
        self.future = future
        self._released = False

    @property
    def granted(self) -> bool:
        return self.future.done() and not self.future.cancelled() and self.future.exception() is None

    async def wait(self) -> Lease:
        try:
            return await self.future
        except asyncio.CancelledError:
            # The client went away while waiting (or just after the grant): leave the queue.
            self.release(gone=True)
            raise

    def release(self, gone: bool = False) -> None:
        if not self._released:
            self._released = True
            self.manager._release(self.id, gone)


@dataclass
class ModelStatus:
    state: str = "stopped"  # stopped | starting | ready | stopping | failed   (next: sleeping)
    since: float = field(default_factory=time.time)
    last_error: str | None = None
    last_start_s: float | None = None
    starts: int = 0


class Manager:
    """Starts, stops and switches backends; hands out leases; publishes events."""

    def __init__(self, registry: Registry, *, state_dir: Path | None = None,
                 gpu_probe: Callable[[], gpu.GpuSnapshot] = gpu.probe, clock: Callable[[], float] = time.monotonic,
                 gateway_id: str | None = None, grouping: bool = True):
        self.registry = registry
        self.settings = registry.gateway
        self.state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
        self.gpu_probe = gpu_probe
        self.clock = clock
        self.gateway_id = gateway_id or f"{socket.gethostname()}-{os.getpid()}"
        self.scheduler = Scheduler.from_registry(registry, grouping=grouping)
        self.models = {name: ModelStatus() for name in registry.models}
        self._backends: dict[str, Backend] = {}
        self._logs: dict[str, LogBuffer] = {}
        self._tickets: dict[int, Ticket] = {}
        self._leases: dict[int, Lease] = {}
        self._lease_errors: dict[int, str] = {}
        self._ids = itertools.count(1)
        self.events = EventBus()
        self._phase_listeners: list[Callable[[str, str, float], None]] = []
        self._jobs: set[asyncio.Task[None]] = set()
        self._timer: asyncio.Task[None] | None = None
        self._monitor: asyncio.Task[None] | None = None
        self._timer_wake: asyncio.Event | None = None
        self._timer_deadline: float | None = None
        self._switch: dict[str, Any] | None = None  # target, phase, started (clock)
        self._vram_before: dict[str, int] = {}
        self._unavailable: dict[str, str | None] | None = None
        self._started = False
        self._closing = False
        self._exiting = False  # stop_admitting(): a signal asked the process to exit
        # numbers for /metrics and /api/status
        self.switch_count = 0

    # --- lifecycle -------------------------------------------------------------------------

    async def start(self) -> list[str]:
        """Stop backends an earlier gateway left behind (returns what was done), then run."""
        messages = await asyncio.to_thread(backends.cleanup_orphans, self.state_dir, self.registry)
        self._timer_wake = asyncio.Event()
        self._timer = asyncio.create_task(self._run_timer(), name="vlmswap-timer")
        self._monitor = asyncio.create_task(self._run_monitor(), name="vlmswap-monitor")
        self._started = True
        for m in messages:
            self._publish("state", None, message=m)
        return messages

    async def shutdown(self) -> None:
        """Stop every backend this manager started; answer waiting requests with 503."""
        if self._closing:
            return
        self._closing = True
        for task in (self._timer, self._monitor, *self._jobs):
            if task is not None:
                task.cancel()
        for task in (self._timer, self._monitor, *self._jobs):
            if task is not None:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        for ticket in list(self._tickets.values()):
            if not ticket.future.done():
                ticket.future.set_exception(APIError(503, "the gateway is shutting down",
                                                     headers={"Retry-After": "5"}))
        self._tickets.clear()
        names = list(self._backends)
        results = await asyncio.gather(*(self._backends[n].stop(self._grace(n)) for n in names),
                                       return_exceptions=True)
        for name, res in zip(names, results):
            self._set_state(name, "failed" if isinstance(res, Exception) else "stopped",
                            error=str(res) if isinstance(res, Exception) else None)
        self._backends.clear()
        for logs in self._logs.values():
            logs.close()

    # --- requests --------------------------------------------------------------------------

    def resolve(self, model_id: str) -> str:
        """Registry name for a client's model id, or APIError 404 listing the known ids."""
        name = self.registry.resolve(model_id)
        if name is None:
            known = ", ".join(self.registry.known_ids())
            raise APIError(404, f"The model `{model_id}` does not exist. Known models: {known}",
                           param="model", code="model_not_found")
        return name

    def stop_admitting(self) -> None:
        """The process is exiting: refuse new requests, answer the queued ones with 503 now.

        The HTTP server's graceful shutdown then waits only for requests in flight, not for
        queued ones that would never be served (and would be cut without an answer).
        """
        self._exiting = True
        for ticket in list(self._tickets.values()):
            if not ticket.future.done():
                ticket.release(gone=True)  # leaves the scheduler's queue
                ticket.future.set_exception(APIError(503, "the gateway is shutting down",
                                                     headers={"Retry-After": "5"}))

    def request(self, model_id: str) -> Ticket:
        """Join the queue for a model (raises APIError 404/503 at once when that is the answer)."""
        name = self.resolve(model_id)
        if self._exiting:
            raise APIError(503, "the gateway is shutting down", headers={"Retry-After": "5"})
        if self._closing or not self._started:
            raise APIError(503, "the gateway is not running", headers={"Retry-After": "5"})
        id = next(self._ids)
        ticket = Ticket(self, id, name, asyncio.get_running_loop().create_future())
        self._tickets[id] = ticket
        self._dispatch("request_arrived", id, name)
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

    def _release(self, id: int, gone: bool) -> None:
        self._tickets.pop(id, None)
        self._leases.pop(id, None)
        self._lease_errors.pop(id, None)
        if not self._closing:
            self._dispatch("client_gone" if gone else "request_finished", id)

    # --- operator actions ------------------------------------------------------------------

    async def load(self, name: str, wait: bool = False) -> dict[str, Any]:
        """Switch to `name` as soon as the rules allow; with wait, until it is ready (or failed: 502)."""
        name = self.resolve(name)
        if self._closing or not self._started:
            raise APIError(503, "the gateway is not running")
        sub = self.subscribe()
        try:
            self._dispatch("load_requested", name)
            if wait:
                await self._wait_loaded(name, sub)
        finally:
            await sub.aclose()
        return self.model_status(name)

    async def _wait_loaded(self, name: str, sub: Subscription) -> None:
        spec = self.registry.models[name]
        s = self.settings
        bound = spec.startup_timeout_s + s.drain_timeout_s + s.stop_grace_s + s.vram_release_timeout_s + s.max_wait_s
        try:
            async with asyncio.timeout(bound):
                while not (self.resident() == name and self.scheduler.switch is None):
                    if self.scheduler.pending_load != name and self.scheduler.switch is None \
                            and self.scheduler.resident != name:
                        raise APIError(409, f"the load of {name} was superseded", code="load_superseded")
                    ev = await sub.__anext__()
                    if ev["type"] == "state" and ev["model"] == name and ev["state"] == "ready":
                        break  # loaded; what the queue does next is another matter
                    if ev["type"] == "state" and ev["model"] == name and ev["state"] == "failed":
                        raise APIError(502, f"{name} failed to start: {ev['message']}", code="backend_start_failed")
        except TimeoutError:
            raise APIError(504, f"{name} was not ready after {bound:.0f} s") from None

    async def unload(self, name: str | None = None) -> dict[str, Any]:
        """Stop the resident model (after its requests in flight); `name`: only if it is that one."""
        resident = self.scheduler.resident or (self._switch or {}).get("target")
        if name is not None:
            name = self.resolve(name)
            if resident != name:
                return {"model": name, "unloading": False, "state": self.models[name].state,
                        "message": f"{name} is not resident"}
        if resident is None:
            return {"model": None, "unloading": False, "message": "no model is resident"}
        self._dispatch("unload_requested")
        return {"model": resident, "unloading": True, "state": self.models[resident].state}

    # --- events ----------------------------------------------------------------------------

    def subscribe(self) -> Subscription:
        """Every event from now on (registered before this returns)."""
        return self.events.subscribe()

    def add_listener(self, fn: Callable[[dict[str, Any]], None]) -> None:
        """Called synchronously with every published event (metrics use this)."""
        self.events.add_listener(fn)

    def add_phase_listener(self, fn: Callable[[str, str, float], None]) -> None:
        """Called with (model, phase, seconds) each time a switch phase ends (metrics use this)."""
        self._phase_listeners.append(fn)

    def _record_phase(self, model: str, phase: str, seconds: float) -> None:
        for fn in self._phase_listeners:
            with contextlib.suppress(Exception):
                fn(model, phase, seconds)

    def _publish(self, type: str, model: str | None, **fields: Any) -> None:
        self.events.publish(type, model, **fields)

    def _set_state(self, name: str, state: str, *, error: str | None = None, message: str = "") -> None:
        st = self.models[name]
        if error is not None:
            st.last_error = error
        if st.state == state and error is None:
            return
        st.state = state
        st.since = time.time()
        self._publish("state", name, state=state, message=message or (error or ""))

    def _phase(self, model: str, phase: str, message: str = "", **extra: Any) -> None:
        sw = self._switch
        now = self.clock()
        elapsed = 0.0
        if sw is not None:
            elapsed = now - sw["started"]
            if sw.get("phase") != phase:
                prev, prev_t = sw.get("phase"), sw.get("phase_started")
                if prev is not None and prev_t is not None:
                    self._record_phase(model, prev, now - prev_t)
                sw["phase"], sw["phase_started"] = phase, now
        self._publish("phase", model, phase=phase, elapsed_s=elapsed, message=message, **extra)

    # --- the scheduler's actions -----------------------------------------------------------

    def _dispatch(self, method: str, *args: Any) -> None:
        actions: list[Action] = getattr(self.scheduler, method)(*args, self.clock())
        for action in actions:
            self._apply(action)
        if self.scheduler.switch is None:
            self._switch = None  # e.g. a drain called off because everyone waiting left
        self._rearm_timer()

    def _apply(self, a: Action) -> None:
        if isinstance(a, Grant):
            ticket = self._tickets.get(a.id)
            backend = self._backends.get(a.model)
            if ticket is None or ticket.future.done():
                return
            if backend is None:  # cannot happen while the scheduler and manager agree
                ticket.future.set_exception(APIError(502, f"{a.model} has no backend"))
                return
            lease = Lease(a.model, self.registry.models[a.model], backend.base_url, a.id, self._lease_errors)
            self._leases[a.id] = lease
            ticket.future.set_result(lease)
        elif isinstance(a, Reject):
            ticket = self._tickets.pop(a.id, None)
            if ticket is None or ticket.future.done():
                return
            headers = {"Retry-After": str(max(1, math.ceil(a.retry_after)))} if a.retry_after else None
            code = {404: "model_not_found", 502: "backend_start_failed", 503: "unavailable"}.get(a.status)
            ticket.future.set_exception(APIError(a.status, a.message, code=code, headers=headers))
        elif isinstance(a, Drain):
            target = a.to_model or a.model
            self._begin_switch(target)
            what = f"switching to {a.to_model}" if a.to_model else "unloading"
            self._phase(target, "draining", f"{a.model} admits no new requests ({what}); "
                                            f"{a.in_flight} in flight")
        elif isinstance(a, StartSwitch):
            self._begin_switch(a.to_model)
            self._spawn(self._run_switch(a.from_model, a.to_model))
        elif isinstance(a, StopResident):
            self._begin_switch(a.model)
            self._spawn(self._run_stop(a.model, a.reason))
        elif isinstance(a, FailInFlight):
            for id in a.ids:
                self._lease_errors[id] = a.error

    def _begin_switch(self, target: str) -> None:
        if self._switch is None or self._switch["target"] != target:
            self._switch = {"target": target, "phase": None, "started": self.clock(), "phase_started": None}

    def _end_switch(self, model: str, phase: str) -> None:
        sw = self._switch
        if sw is not None:
            now = self.clock()
            if sw.get("phase") not in (None, "ready", "failed") and sw.get("phase_started") is not None:
                self._record_phase(model, sw["phase"], now - sw["phase_started"])
        self._switch = None

    def _switch_target(self) -> str | None:
        return None if self._switch is None else self._switch["target"]

    def _spawn(self, coro: Any) -> None:
        task = asyncio.create_task(coro)
        self._jobs.add(task)
        task.add_done_callback(self._jobs.discard)

    # --- slow work -------------------------------------------------------------------------

    async def _run_switch(self, from_model: str | None, to_model: str) -> None:
        try:
            if from_model is not None:
                await self._stop_backend(from_model, to_model, f"switching to {to_model}")
            await self._start_backend(to_model)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = str(exc)
            tail = exc.log_tail if isinstance(exc, BackendError) else self.logs(to_model, 30)
            self.switch_count += 1
            self._set_state(to_model, "failed", error=error)
            self._phase(to_model, "failed", error, log_tail=tail)
            self._end_switch(to_model, "failed")
            self._dispatch("switch_failed", to_model, error)
        else:
            self.switch_count += 1
            self._end_switch(to_model, "ready")
            self._dispatch("switch_done", to_model)

    async def _run_stop(self, model: str, reason: str) -> None:
        try:
            await self._stop_backend(model, model, reason)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # it survived SIGKILL: say so, but never start another on top silently
            self._set_state(model, "failed", error=str(exc))
        self._end_switch(model, "stopped")
        self._dispatch("stop_done", model)

    def _grace(self, name: str) -> float:
        spec = self.registry.models[name]
        return spec.stop_grace_s if spec.stop_grace_s is not None else self.settings.stop_grace_s

    async def _stop_backend(self, name: str, phase_model: str, reason: str) -> None:
        backend = self._backends.get(name)
        if backend is None:
            return
        pids = backend.pids()
        crashed = self.models[name].state == "failed"
        if not crashed:
            self._set_state(name, "stopping", message=reason)
        self._phase(phase_model, "stopping", f"stopping {name} ({reason}): SIGTERM, "
                                             f"SIGKILL after {self._grace(name):g} s")
        t0 = self.clock()
        await backend.stop(self._grace(name))
        self._backends.pop(name, None)
        if not crashed:
            self._set_state(name, "stopped", message=f"stopped in {self.clock() - t0:.2f} s ({reason})")
        await self._wait_vram(name, phase_model, pids)

    async def _wait_vram(self, name: str, phase_model: str, pids: set[int]) -> None:
        snap = self.gpu_probe()
        baseline = self._vram_before.pop(name, None)
        if not snap.available:
            self._phase(phase_model, "waiting_vram", f"no NVIDIA GPU, skipped ({snap.reason})")
            return
        self._phase(phase_model, "waiting_vram", f"waiting for {name}'s GPU memory to be released")
        t0 = self.clock()
        deadline = t0 + self.settings.vram_release_timeout_s
        while True:
            held = pids & set(snap.processes)
            slack = max(VRAM_SLACK_FRACTION * snap.total_bytes, VRAM_SLACK_BYTES)
            near = baseline is None or snap.used_bytes <= baseline + slack
            if not held and near:
                self._phase(phase_model, "waiting_vram",
                            f"released in {self.clock() - t0:.2f} s; {snap.used_bytes / MIB:.0f} MiB in use")
                return
            if self.clock() >= deadline:
                why = f"pids {sorted(held)} still on the GPU" if held else \
                    f"{snap.used_bytes / MIB:.0f} MiB in use, {baseline / MIB if baseline else 0:.0f} MiB before"
                self._phase(phase_model, "waiting_vram",
                            f"gave up after {self.settings.vram_release_timeout_s:g} s (vram_release_timeout_s): {why}")
                return
            await asyncio.sleep(self.settings.poll_interval_s)
            snap = self.gpu_probe()

    async def _start_backend(self, name: str) -> None:
        spec = self.registry.models[name]
        snap = self.gpu_probe()
        if snap.available:
            self._vram_before[name] = snap.used_bytes
        logs = self._log(name)
        backend = backends.create(name, spec, self.settings, logs, self.state_dir)
        self._backends[name] = backend
        self.models[name].starts += 1
        self._set_state(name, "starting")
        self._phase(name, "starting", f"launching {name} ({spec.backend})")
        t0 = self.clock()
        try:
            await backend.start()
            self._phase(name, "loading", f"{name} started; waiting for {spec.health} and /v1/models")
            last = [""]

            def on_phase(phase: str, message: str) -> None:
                if message != last[0]:
                    last[0] = message
                    self._phase(name, "loading", message)

            await backend.wait_ready(spec.startup_timeout_s, self.settings.poll_interval_s, on_phase)
        except asyncio.CancelledError:
            raise  # shutdown: the backend stays listed, and shutdown() stops it
        except Exception:
            with contextlib.suppress(Exception):
                await backend.stop(0.0 if backend.exit_status() else self._grace(name))
            self._backends.pop(name, None)
            raise
        took = self.clock() - t0
        st = self.models[name]
        st.last_start_s = round(took, 3)
        self._set_state(name, "ready", message=f"ready in {took:.2f} s")
        self._phase(name, "ready", f"{name} ready in {took:.2f} s")

    # --- timers and the crash monitor ------------------------------------------------------

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
            except asyncio.TimeoutError:
                self._timer_deadline = None
                self._dispatch("tick")

    async def _run_monitor(self) -> None:
        """A ready backend that exits on its own is a crash: fail its requests, mark it failed."""
        while True:
            await asyncio.sleep(MONITOR_PERIOD_S)
            for name, backend in list(self._backends.items()):
                if self.models[name].state != "ready":
                    continue
                status = backend.exit_status()
                if status is None:
                    continue
                await asyncio.sleep(0.05)  # let the last lines reach the log
                if self.models[name].state != "ready" or self._backends.get(name) is not backend:
                    continue
                tail = self.logs(name, 20)
                error = f"{name} exited unexpectedly ({status})"
                self._set_state(name, "failed", error=error)
                self._publish("phase", name, phase="failed", elapsed_s=0.0, message=error, log_tail=tail, crash=True)
                self._dispatch("backend_crashed", name, error)

    # --- reading ---------------------------------------------------------------------------

    def _log(self, name: str) -> LogBuffer:
        if name not in self._logs:
            safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
            self._logs[name] = LogBuffer(self.state_dir / "logs" / f"{safe}.log", self.settings.log_tail_lines)
        return self._logs[name]

    def logs(self, name: str, tail: int = 100) -> list[str]:
        """The backend's last output lines (from memory, or from its log file after a restart)."""
        name = self.resolve(name)
        if name in self._logs:
            return self._logs[name].tail(tail)
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
        path = self.state_dir / "logs" / f"{safe}.log"
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return [line.rstrip("\n") for line in deque(f, maxlen=max(tail, 0))] if tail > 0 else []
        except OSError:
            return []

    def resident(self) -> str | None:
        s = self.scheduler
        if s.resident is not None and s.ready:
            return s.resident
        return None

    def unavailable(self) -> dict[str, str | None]:
        if self._unavailable is None:
            present = self.gpu_probe().available
            self._unavailable = {n: unavailable_reason(spec, present) for n, spec in self.registry.models.items()}
        return self._unavailable

    def model_status(self, name: str, gpu_snap: gpu.GpuSnapshot | None = None) -> dict[str, Any]:
        spec = self.registry.models[name]
        st = self.models[name]
        out: dict[str, Any] = {
            "name": name, "served_name": spec.served_name, "aliases": list(spec.aliases), "family": spec.family,
            "capabilities": list(spec.capabilities), "vram_gb": spec.vram_gb, "backend": spec.backend,
            "description": spec.description,
            "state": st.state, "since": st.since, "last_error": st.last_error, "last_start_s": st.last_start_s,
            "starts": st.starts, "unavailable": self.unavailable().get(name),
            "in_flight": self.scheduler.in_flight(name), "queued": self.scheduler.queued(name),
            "backoff_s": round(self.scheduler.backoff_left(name, self.clock()), 3) or None,
        }
        backend = self._backends.get(name)
        if backend is not None:
            out["base_url"] = backend.base_url
            pids = backend.pids()
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
        sw = None
        if self._switch is not None:
            sw = {"target": self._switch["target"], "phase": self._switch["phase"],
                  "elapsed_s": round(self.clock() - self._switch["started"], 3)}
        return {
            "resident": self.resident(),
            "models": models,
            "queue_length": self.scheduler.queued(),
            "in_flight": self.scheduler.in_flight(),
            "switch": sw,
            "switches": self.switch_count,
            "policy": self.settings.policy,
            "gpu": g,
            "host": {"ram_total_bytes": vm.total, "ram_available_bytes": vm.available, "ram_used_bytes": vm.used},
            "gateway_id": self.gateway_id,
        }
