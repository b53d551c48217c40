"""Backends' lifecycles: start, ready, sleep, wake, stop, and the sleeping pool's budgets.

The manager decides *that* a switch happens (through the scheduler); this module carries it
out and owns what it needs for that: the live backends, one typed `ModelState` per model, the
log buffers, the sleeping pool and the switch's progress. `switch()` is the one short
function that does the slow work (llama-swap's `doSwap`); it raises when the target could
not be brought up, and the manager turns the outcome into a scheduler event.

The invariant, kept here under policy `single`: at most one backend is *awake* (starting,
waking or ready); under `fit`, the scheduler decides which may be awake together. A
model going to sleep is verified asleep (its GPU memory gone, per pid through NVML) before
another wakes; anything that goes wrong on the warm path falls back to the cold one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

from vlmswap import backends, gpu
from vlmswap.backends import BackendFactory
from vlmswap.backends.base import Backend, BackendError, LogBuffer
from vlmswap.backends.vllm_log import out_of_memory, phase_detail
from vlmswap.registry.config import Registry
from vlmswap.registry.hub import missing_weights
from vlmswap.swap import pool, priors
from vlmswap.swap.events import EventBus
from vlmswap.swap.keeping import PoolOrder
from vlmswap.swap.model import Model, safe_name
from vlmswap.swap.states import ModelState, Phase, SwitchKind
from vlmswap.swap.stats import Stats

MIB = 1024 * 1024
GIB = 1024**3
VRAM_SLACK_FRACTION = 0.05  # "back near where it was": within 5 % of the card ...
VRAM_SLACK_BYTES = 256 * MIB  # ... or 256 MiB, whichever is larger
WARMUP_TIMEOUT_S = 60.0


@dataclass
class Progress:
    """The switch under way, as operators see it (`/api/status`'s `switch`, events' elapsed_s)."""

    target: str
    started: float
    phase: Phase | None = None
    phase_started: float | None = None
    eta_s: float | None = None  # expected seconds from `started` to ready (learned), once known


class Lifecycle:
    """Owns every backend of one gateway and the state of every model."""

    def __init__(
        self,
        registry: Registry,
        state_dir: Path,
        events: EventBus,
        *,
        gpu_probe: Callable[[], gpu.GpuSnapshot],
        clock: Callable[[], float],
        on_exit: Callable[[str, str], None],
        backend_factory: BackendFactory = backends.create,
        keep: Callable[[str], float] | None = None,
        order: PoolOrder | None = None,
        used: Callable[[str], float] | None = None,
    ):
        self.registry = registry
        self.settings = registry.gateway
        self.state_dir = state_dir
        self.events = events
        self.gpu_probe = gpu_probe
        self.clock = clock
        self.on_exit = on_exit
        self.backend_factory = backend_factory
        self.models: dict[str, Model] = {
            name: Model(name, spec, state_dir / "logs" / f"{safe_name(name)}.log")
            for name, spec in registry.models.items()
        }
        # The sleeping pool's order (keeping.py): what each sleeper is worth, lowest leave first.
        self.order = order
        self.keep: Callable[[str], float] = keep or (order.keep if order is not None else self._since)
        self.worth: Callable[[str], float] = order.worth if order is not None else (lambda _name: math.inf)
        self.used: Callable[[str], float] = used or self._since
        self.evict_why = "least recently used" if order is None or order.policy == "lru" else "worth least to keep"
        self.progress: Progress | None = None
        self._watchers: set[asyncio.Task[None]] = set()
        self._phase_listeners: list[Callable[[str, str, float], None]] = []
        self.stats = Stats(state_dir / "stats.sqlite3")
        budget = self.settings.sleep_ram_budget_gb
        self.ram_budget_bytes = int(budget * GIB) if budget is not None else psutil.virtual_memory().total // 2

    def _since(self, name: str) -> float:
        """Without a scheduler's word: a sleeper fell asleep at its last state change (least recently used)."""
        return self.models[name].since

    # --- reading ---------------------------------------------------------------------------

    def state(self, name: str) -> ModelState:
        return self.models[name].state

    def backend_names(self) -> list[str]:
        return [n for n, m in self.models.items() if m.backend is not None]

    def base_url(self, name: str) -> str | None:
        return self.models[name].base_url

    def pids(self, name: str) -> set[int]:
        return self.models[name].pids()

    def exit_status(self, name: str) -> str | None:
        return self.models[name].exit_status()

    def sleepers(self) -> list[str]:
        return [n for n, m in self.models.items() if m.asleep]

    def awake(self) -> list[str]:
        """Models whose backend may hold their full GPU memory (policy single: at most one)."""
        return [n for n, m in self.models.items() if m.backend is not None and not m.asleep]

    def estimated_sleep_ram(self, name: str) -> int:
        return priors.sleep_ram_bytes(name, self.registry.models[name], self.stats, self.models[name].sleep_ram_bytes)

    def need_bytes(self, name: str) -> int:
        """GPU memory `name` takes awake: its measured peak after ready, else the registry's vram_gb."""
        return priors.need_bytes(name, self.registry.models[name], self.stats)

    def costs(self, name: str) -> priors.Costs:
        """Seconds its start, wake and sleep take: learned, else declared (priors.py)."""
        return priors.costs(name, self.registry.models[name], self.stats)

    def card_bytes(self, snap: gpu.GpuSnapshot | None = None) -> int | None:
        """The card's memory: the GPU probe's reading (NVML or AMD SMI), else `gateway.gpu_memory_gb`."""
        snap = snap or self.gpu_probe()
        if snap.available:
            return snap.total_bytes
        return int(self.settings.gpu_memory_gb * GIB) if self.settings.gpu_memory_gb else None

    def pool_status(self) -> dict[str, Any]:
        names = self.sleepers()
        out: dict[str, Any] = {
            "sleeping": names,
            "count": len(names),
            "ram_bytes": sum(self.estimated_sleep_ram(n) for n in names),
            "ram_budget_bytes": self.ram_budget_bytes,
            "max_sleeping": self.settings.max_sleeping,
            "gpu_residual_bytes": sum(self.models[n].sleep_gpu_bytes or 0 for n in names),
        }
        if self.order is not None:
            out["order"] = self.order.policy
            out["kept"] = {n: {"worth": round(self.keep(n), 3), "why": self.order.why(n)} for n in names}
        return out

    # --- logs ------------------------------------------------------------------------------

    def log(self, name: str) -> LogBuffer:
        m = self.models[name]
        if m.log is None:
            st = self.settings
            m.log = LogBuffer(m.log_path, st.log_tail_lines, max_bytes=int(st.log_max_mb * 2**20), keep=st.log_keep)
        return m.log

    def log_path(self, name: str) -> Path:
        return self.models[name].log_path

    def logs(self, name: str, tail: int = 100) -> list[str]:
        """The backend's last output lines (from memory, or from its log file after a restart)."""
        return self.models[name].tail(tail)

    # --- events ----------------------------------------------------------------------------

    def add_phase_listener(self, fn: Callable[[str, str, float], None]) -> None:
        """Called with (model, phase, seconds) each time a switch phase ends (metrics use this)."""
        self._phase_listeners.append(fn)

    def set_state(self, name: str, state: ModelState, *, error: str | None = None, message: str = "") -> None:
        st = self.models[name]
        if error is not None:
            st.last_error = error
        if st.state == state and error is None:
            return
        st.state = state
        st.since = time.time()
        self.events.publish("state", name, state=state, message=message or (error or ""))

    def begin(self, target: str) -> None:
        """A switch towards `target` begins (its drain, or its first slow step)."""
        if self.progress is None or self.progress.target != target:
            self.progress = Progress(target, self.clock())

    def phase(self, model: str, phase: Phase, message: str = "", **extra: Any) -> None:
        p, now = self.progress, self.clock()
        elapsed = 0.0
        if p is not None:
            elapsed = now - p.started
            if p.phase != phase:
                if p.phase is not None and p.phase_started is not None:
                    self._record_phase(model, p.phase, now - p.phase_started)
                p.phase, p.phase_started = phase, now
        if p is not None and p.eta_s is not None and "eta_s" not in extra:
            extra["eta_s"] = round(p.eta_s, 3)
        self.events.publish("phase", model, phase=phase, elapsed_s=elapsed, message=message, **extra)

    def _expect(self, metric: str, name: str) -> None:
        """From now on the switch's events carry eta_s: elapsed so far plus the learned median."""
        p = self.progress
        learned = self.stats.median(name, metric)  # type: ignore[arg-type]
        if p is not None and learned is not None:
            p.eta_s = (self.clock() - p.started) + learned

    def end(self, model: str) -> float:
        """The switch ended; returns its total seconds."""
        p, now = self.progress, self.clock()
        self.progress = None
        if p is None:
            return 0.0
        if p.phase not in (None, Phase.READY, Phase.FAILED) and p.phase_started is not None:
            self._record_phase(model, p.phase, now - p.phase_started)
        return now - p.started

    def _record_phase(self, model: str, phase: str, seconds: float) -> None:
        for fn in self._phase_listeners:
            with contextlib.suppress(Exception):
                fn(model, phase, seconds)

    # --- the switch ------------------------------------------------------------------------

    async def switch(self, retire: tuple[str, ...], to_model: str, protect: frozenset[str]) -> SwitchKind:
        """Retire the models in `retire` (to the pool, or stopped), then bring `to_model` up: woken
        from the pool when it is there, else started cold (once more after an out-of-memory
        death, with every sleeper evicted first). Raises when `to_model` cannot be brought up."""
        self.begin(to_model)
        protect = protect | {to_model}
        for name in retire:
            if name != to_model:
                await self.retire(name, to_model, protect)
        if self.models[to_model].asleep:
            await self.make_gpu_room(to_model, protect)
            try:
                await self.wake(to_model)
                return "warm"
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = str(exc).splitlines()[0]
                self.phase(to_model, Phase.WAKING, f"wake failed ({error}); stopping it and starting it cold")
                await self.stop(to_model, to_model, "wake failed")
        await self.make_gpu_room(to_model, protect)
        try:
            await self.start(to_model)
        except BackendError as exc:
            if not out_of_memory(exc.log_tail) or not self.sleepers():
                raise
            self.phase(
                to_model,
                Phase.STARTING,
                f"{to_model} ran out of GPU memory at start; evicting every sleeper and retrying once",
            )
            for victim in self.sleepers():
                await self.stop(victim, to_model, f"out of memory starting {to_model}")
            await self.start(to_model)
        return "cold"

    async def retire(self, name: str, for_model: str | None, protect: frozenset[str]) -> None:
        """Take `name` off the GPU: to sleep when its registry entry allows it, else stopped."""
        spec = self.registry.models[name]
        if (
            spec.sleep_mode
            and self.state(name) == ModelState.READY
            and await self.put_to_sleep(name, for_model or name, protect)
        ):
            return
        reason = f"switching to {for_model}" if for_model and for_model != name else "unload"
        await self.stop(name, for_model or name, reason)

    def would_sleep(self, name: str) -> bool:
        """Whether `name`, put to sleep now, would be let into the pool (staging asks before a start)."""
        return self._sleep_plan(name).fits

    def _sleep_plan(self, name: str, waking: str | None = None, protect: frozenset[str] = frozenset()) -> pool.Plan:
        """Who leaves the pool so `name` may sleep (`waking`: the model about to wake, leaving it)."""
        s = self.settings
        return pool.plan_sleep(
            name,
            self.estimated_sleep_ram(name),
            self._sleepers(),
            max_sleeping=s.max_sleeping,
            ram_budget_bytes=self.ram_budget_bytes,
            protect=protect,
            worth=self.worth(name),
            waking=waking,
        )

    async def put_to_sleep(self, name: str, phase_model: str, protect: frozenset[str]) -> bool:
        """Sleep `name`, verified; False when it was stopped instead (it did not fit the pool, its
        /sleep failed, or its GPU memory did not go). Room is made in the pool first."""
        spec, s = self.registry.models[name], self.settings
        backend = self.models[name].backend
        if backend is None:
            return False
        plan = self._sleep_plan(name, waking=phase_model, protect=protect)
        if not plan.fits:
            self.phase(
                phase_model, Phase.SLEEPING, f"{name} does not fit the sleeping pool ({plan.why}); stopping it instead"
            )
            await self.stop(name, phase_model, "the sleeping pool is full")
            return False
        for victim in plan.evict:
            await self.stop(victim, phase_model, f"leaving the sleeping pool ({self.evict_why}) for {name}")
        self.phase(phase_model, Phase.SLEEPING, f"putting {name} to sleep (level {spec.sleep_level})")
        t0 = self.clock()
        try:
            await asyncio.wait_for(backend.sleep(spec.sleep_level, s.sleep_timeout_s + 5.0), s.sleep_timeout_s)
            backend_s = self.clock() - t0
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            why = (
                f"no answer in {s.sleep_timeout_s:g} s (sleep_timeout_s)"
                if isinstance(exc, TimeoutError)
                else str(exc).splitlines()[0]
            )
            self.phase(phase_model, Phase.SLEEPING, f"sleep of {name} failed: {why}; stopping it instead")
            await self.stop(name, phase_model, "sleep failed")
            return False
        residual = await self._verify_asleep(name, phase_model, backend)
        if residual is None:
            await self.stop(name, phase_model, "its GPU memory did not drop after sleep")
            return False
        st = self.models[name]
        st.sleep_gpu_bytes = residual
        self.stats.record(name, "sleep_s", self.clock() - t0)
        with contextlib.suppress(Exception):
            st.sleep_ram_bytes = await asyncio.to_thread(backend.host_memory_bytes)
            self.stats.record(name, "sleep_ram_bytes", st.sleep_ram_bytes)
        self.set_state(
            name,
            ModelState.SLEEPING,
            message=f"asleep in {self.clock() - t0:.2f} s, holding "
            f"{(st.sleep_ram_bytes or 0) / GIB:.2f} GiB of host RAM",
        )
        self.phase(
            phase_model, Phase.SLEEPING, f"{name} asleep in {self.clock() - t0:.3f} s", backend_s=round(backend_s, 4)
        )
        return True

    async def _verify_asleep(self, name: str, phase_model: str, backend: Backend) -> int | None:
        """GPU bytes its pids hold after sleep (NVML or AMD SMI), once within the allowance; None: it leaked."""
        snap = self.gpu_probe()
        if not snap.available:
            self.phase(phase_model, Phase.SLEEPING, f"no GPU reading: memory check after sleep skipped ({snap.reason})")
            return 0
        allowance = int(self.settings.sleep_residual_gb * GIB)
        pids = backend.pids()
        deadline = self.clock() + self.settings.vram_release_timeout_s
        while True:
            held = sum(v for p, v in snap.processes.items() if p in pids)
            if held <= allowance:
                return held
            if self.clock() >= deadline:
                self.phase(
                    phase_model,
                    Phase.SLEEPING,
                    f"{name} still holds {held / MIB:.0f} MiB of GPU memory after sleep (allowed "
                    f"{allowance / MIB:.0f} MiB, sleep_residual_gb): the sleep leaked; stopping it",
                )
                return None
            await asyncio.sleep(self.settings.poll_interval_s)
            snap = self.gpu_probe()

    async def wake(self, name: str) -> None:
        spec, s = self.registry.models[name], self.settings
        st = self.models[name]
        backend = st.backend
        assert backend is not None
        self.set_state(name, ModelState.WAKING)
        self._expect("wake_s", name)
        self.phase(name, Phase.WAKING, f"waking {name} (level {spec.sleep_level})")
        t0 = self.clock()
        try:
            async with asyncio.timeout(s.wake_timeout_s):
                await backend.wake(spec.sleep_level, s.wake_timeout_s + 5.0)
                await backend.wait_awake(s.wake_timeout_s, min(s.poll_interval_s, 0.01))
            backend_s = self.clock() - t0
        except TimeoutError:
            raise BackendError(
                f"{name} not awake after {s.wake_timeout_s:g} s (wake_timeout_s)", self.logs(name, 30)
            ) from None
        await self._warm_up(name, backend)
        took = self.clock() - t0
        st.last_wake_s = round(took, 4)
        st.wakes += 1
        self.stats.record(name, "wake_s", took)
        st.sleep_gpu_bytes = None
        self.set_state(name, ModelState.READY, message=f"awake in {took:.3f} s")
        self.phase(name, Phase.READY, f"{name} awake in {took:.3f} s", kind="warm", backend_s=round(backend_s, 4))

    async def make_gpu_room(self, target: str, protect: frozenset[str]) -> None:
        """Sleepers keep their CUDA context: before `target` wakes or starts, their residual plus its
        need must fit the card; least recently used sleepers are stopped until it does."""
        sleepers = [n for n in self.sleepers() if n != target]
        if not sleepers:
            return
        snap = self.gpu_probe()
        if not snap.available:
            return
        need = self.need_bytes(target)
        awake_others = {p for n in self.awake() if n != target for p in self.pids(n)}  # policy fit: others awake
        held = sum(v for p, v in snap.processes.items() if p in awake_others)
        plan = pool.plan_gpu(
            target, need, self._sleepers(snap), capacity_bytes=snap.total_bytes - held, protect=protect
        )
        for victim in plan.evict:
            await self.stop(victim, target, f"its GPU residual is needed for {target}")
        if not plan.fits:
            self.phase(target, Phase.WAITING_VRAM, f"{target} may not fit the card: {plan.why}")

    def _sleepers(self, snap: gpu.GpuSnapshot | None = None) -> list[pool.Sleeper]:
        out = []
        for n in self.sleepers():
            gpu_bytes = self.models[n].sleep_gpu_bytes or 0
            if snap is not None and snap.available:
                pids = self.pids(n)
                gpu_bytes = sum(v for p, v in snap.processes.items() if p in pids)
            out.append(pool.Sleeper(n, self.estimated_sleep_ram(n), gpu_bytes, self.keep(n), self.used(n)))
        return out

    # --- cold start and stop ---------------------------------------------------------------

    async def start(self, name: str) -> None:
        spec = self.registry.models[name]
        if not spec.download_on_start:  # say so now, not after a download behind a "loading" spinner
            missing = await asyncio.to_thread(missing_weights, spec)
            if missing is not None:
                raise BackendError(
                    f"{name}: {missing}; fetch it first: vlmswap pull {name} (or POST /api/models/{name}/pull)"
                )
        st = self.models[name]
        snap = self.gpu_probe()
        if snap.available:
            st.vram_before = snap.used_bytes
        backend = self.backend_factory(name, spec, self.settings, self.log(name), self.state_dir)
        total = self.card_bytes(snap)
        if total:  # vLLM reserves this fraction of the card's total: the model's need, not a guess
            backend.variables["GPU_MEMORY_UTILIZATION"] = f"{min(0.95, max(0.05, self.need_bytes(name) / total)):.3f}"
        st.backend = backend
        st.starts += 1
        self.set_state(name, ModelState.STARTING)
        self._expect("cold_start_s", name)
        self.phase(name, Phase.STARTING, f"launching {name} ({spec.backend})")
        t0 = self.clock()
        listener = self._log_phases(name)
        self.log(name).listeners.append(listener)
        try:
            await backend.start()
            self._watch(name, backend)
            self.phase(name, Phase.LOADING, f"{name} started; waiting for {spec.health} and /v1/models")
            last = [""]

            def on_phase(_phase: str, message: str) -> None:
                if message != last[0]:
                    last[0] = message
                    self.phase(name, Phase.LOADING, message)

            await backend.wait_ready(spec.startup_timeout_s, self.settings.poll_interval_s, on_phase)
            await self._warm_up(name, backend)
        except asyncio.CancelledError:
            raise  # shutdown: the backend stays listed, and shutdown() stops it
        except Exception:
            with contextlib.suppress(Exception):
                await backend.stop(0.0 if backend.exit_status() else self.grace(name))
            st.backend = None
            raise
        finally:
            with contextlib.suppress(ValueError):
                self.log(name).listeners.remove(listener)
        took = self.clock() - t0
        st.last_start_s = round(took, 3)
        self.stats.record(name, "cold_start_s", took)
        ready = self.gpu_probe()
        if ready.available:
            pids = backend.pids()
            self.stats.record(name, "peak_vram_bytes", sum(v for p, v in ready.processes.items() if p in pids))
        self.set_state(name, ModelState.READY, message=f"ready in {took:.2f} s")
        self.phase(name, Phase.READY, f"{name} ready in {took:.2f} s", kind="cold")

    def _log_phases(self, name: str) -> Callable[[str], None]:
        """A log listener: vLLM's start-up steps become `loading` events with a `detail`. Lines may come
        from a container's log thread, so the event is handed to the loop."""
        loop = asyncio.get_running_loop()
        last = [""]

        def publish(detail: str) -> None:
            if detail != last[0] and self.state(name) == ModelState.STARTING:
                last[0] = detail
                self.phase(name, Phase.LOADING, detail, detail=detail)

        def on_line(line: str) -> None:
            detail = phase_detail(line)
            if detail is not None:
                with contextlib.suppress(RuntimeError):  # the loop has closed
                    loop.call_soon_threadsafe(publish, detail)

        return on_line

    async def _warm_up(self, name: str, backend: Backend) -> None:
        if not self.registry.models[name].warmup:
            return
        self.phase(name, Phase.WARMING_UP, "1-token warm-up request")
        try:
            await backend.warm_up(WARMUP_TIMEOUT_S)
        except Exception as exc:  # a warm-up is a courtesy: its failure is said, not fatal
            self.phase(name, Phase.WARMING_UP, f"warm-up failed: {str(exc).splitlines()[0]}")

    def grace(self, name: str) -> float:
        spec = self.registry.models[name]
        return spec.stop_grace_s if spec.stop_grace_s is not None else self.settings.stop_grace_s

    async def stop(self, name: str, phase_model: str, reason: str) -> None:
        """Stop `name`'s backend and wait for the GPU probe to show its memory released."""
        m = self.models[name]
        backend = m.backend
        if backend is None:
            return
        pids = backend.pids()
        crashed = self.state(name) == ModelState.FAILED
        if not crashed:
            self.set_state(name, ModelState.STOPPING, message=reason)
        self.phase(
            phase_model, Phase.STOPPING, f"stopping {name} ({reason}): SIGTERM, SIGKILL after {self.grace(name):g} s"
        )
        t0 = self.clock()
        try:
            await backend.stop(self.grace(name))
        finally:
            m.backend = None
        if not crashed:
            self.set_state(name, ModelState.STOPPED, message=f"stopped in {self.clock() - t0:.2f} s ({reason})")
        await self._wait_vram(name, phase_model, pids)

    async def _wait_vram(self, name: str, phase_model: str, pids: set[int]) -> None:
        snap = self.gpu_probe()
        baseline, self.models[name].vram_before = self.models[name].vram_before, None
        if not snap.available:
            self.phase(phase_model, Phase.WAITING_VRAM, f"no GPU reading, skipped ({snap.reason})")
            return
        self.phase(phase_model, Phase.WAITING_VRAM, f"waiting for {name}'s GPU memory to be released")
        t0 = self.clock()
        deadline = t0 + self.settings.vram_release_timeout_s
        # Sleepers keep their residual: "back near where it was" counts only what `name` held.
        while True:
            held = pids & set(snap.processes)
            slack = max(VRAM_SLACK_FRACTION * snap.total_bytes, VRAM_SLACK_BYTES)
            near = baseline is None or snap.used_bytes <= baseline + slack
            if not held and near:
                self.phase(
                    phase_model,
                    Phase.WAITING_VRAM,
                    f"released in {self.clock() - t0:.2f} s; {snap.used_bytes / MIB:.0f} MiB in use",
                )
                return
            if self.clock() >= deadline:
                why = (
                    f"pids {sorted(held)} still on the GPU"
                    if held
                    else f"{snap.used_bytes / MIB:.0f} MiB in use, {baseline / MIB if baseline else 0:.0f} MiB before"
                )
                self.phase(
                    phase_model,
                    Phase.WAITING_VRAM,
                    f"gave up after {self.settings.vram_release_timeout_s:g} s (vram_release_timeout_s): {why}",
                )
                return
            await asyncio.sleep(self.settings.poll_interval_s)
            snap = self.gpu_probe()

    async def forget(self, name: str, status: str) -> None:
        """A sleeping backend died: it leaves the pool quietly; the next request starts it cold."""
        m = self.models[name]
        backend, m.backend = m.backend, None
        if backend is not None:
            with contextlib.suppress(Exception):
                await backend.stop(0.0)  # reap it, remove its pid file
        self.set_state(
            name,
            ModelState.STOPPED,
            message=f"left the sleeping pool: its backend exited ({status}); the next request starts it cold",
        )

    async def shutdown(self) -> None:
        """Stop every backend, sleepers included."""
        for task in list(self._watchers):
            task.cancel()
        live = [m for m in self.models.values() if m.backend is not None]
        results = await asyncio.gather(
            *(m.backend.stop(self.grace(m.name)) for m in live if m.backend is not None), return_exceptions=True
        )
        for m, res in zip(live, results):
            m.backend = None
            failed = isinstance(res, BaseException)
            self.set_state(
                m.name, ModelState.FAILED if failed else ModelState.STOPPED, error=str(res) if failed else None
            )
        for m in self.models.values():
            if m.log is not None:
                m.log.close()
        self.stats.close()

    # --- push: a backend that ends tells us --------------------------------------------------

    def _watch(self, name: str, backend: Backend) -> None:
        async def watch() -> None:
            status = await backend.wait_exit()
            if self.models[name].backend is backend:  # not one we are stopping or have replaced
                self.on_exit(name, status)

        task = asyncio.create_task(watch(), name=f"exit-{name}")
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)
