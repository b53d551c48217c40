"""Staging: while the GPU is idle, read the likeliest next model's weight files into the OS page cache.

A cold start reads gigabytes of weights; from the page cache that read is a memory copy
instead of disk I/O (bench/README.md, Staging, measures how much it saves here). Reading
needs no GPU and holds nothing the scheduler counts, so it can happen while the GPU waits;
it stops at the next chunk when a request arrives (the manager sets `stop`), so it never
competes with a request's own start for the disk. What to stage is the manager's decision
(the predictor's ranking, `gateway.stage_idle_s`, `gateway.stage_min_chance`); this module
finds the files (through registry/hub.py: the local Hugging Face snapshot) and reads them.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from vlmswap.registry import hub
from vlmswap.registry.config import ModelSpec, Registry
from vlmswap.swap.states import ModelState, Residency

if TYPE_CHECKING:
    from vlmswap.swap.events import EventBus
    from vlmswap.swap.lifecycle import Lifecycle
    from vlmswap.swap.predictor import Predictor
    from vlmswap.swap.scheduler import Action, Scheduler

Kind = Literal["page_cache", "sleep"]

CHUNK = 8 * 1024 * 1024
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_files(spec: ModelSpec) -> list[Path]:
    """The weight files of `spec`'s complete local snapshot (resolved to the cache's blobs); [] when it
    has none (no hub repo, not downloaded, a container's own cache)."""
    src = hub.source(spec)
    if src is None or (spec.backend == "docker" and src.cache_dir is None):
        return []
    snapshot = hub.local_snapshot(src)
    if snapshot is None:
        return []
    out = []
    for p in sorted(snapshot.rglob("*")):
        if p.suffix in WEIGHT_SUFFIXES and p.is_file():
            out.append(p.resolve())
    return list(dict.fromkeys(out))


def read_into_cache(paths: Iterable[Path], stop: threading.Event | None = None) -> tuple[int, bool]:
    """Read every file once, sequentially, so the kernel keeps its pages; (bytes read, finished).
    Stops between chunks when `stop` is set. In a thread: it blocks on the disk."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while True:
                if stop is not None and stop.is_set():
                    return done, False
                n = f.readinto(view)
                if not n:
                    break
                done += n
    return done, True


def evict_from_cache(paths: Iterable[Path]) -> None:
    """Drop the files' pages from the page cache (POSIX_FADV_DONTNEED): a cold read again (benchmarks)."""
    for path in paths:
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def cached_fraction(path: Path) -> float | None:
    """How much of the file is in the page cache now (mincore through mmap); None where unknown."""
    import ctypes
    import mmap

    size = path.stat().st_size
    if size == 0:
        return 1.0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
        page = os.sysconf("SC_PAGE_SIZE")
        # A private mapping: its untouched pages are the page cache's, and ctypes may take its address.
        with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
            buf = (ctypes.c_char * size).from_buffer(mm)
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(ctypes.addressof(buf), size, vec) != 0:
                    return None
                return sum(v & 1 for v in vec) / pages
            finally:
                del buf
    except (OSError, AttributeError, TypeError, ValueError, BufferError):
        return None


class Stager:
    """What staging holds, in one place: the read under way, a start for the pool, what is staged, counts.

    The manager tells it what happens (a request, an operator's load, a switch started, done or
    cancelled, an idle moment) and it answers through the scheduler's own events, applied by the
    manager (`apply`): a staging start is an ordinary `load_requested`, called off by
    `unload_requested` or, while the switch runs, by cancelling it (`switch_abandoned`: no backoff).
    """

    def __init__(
        self,
        registry: Registry,
        predictor: Predictor,
        scheduler: Scheduler,
        lifecycle: Lifecycle,
        events: EventBus,
        *,
        apply: Callable[[list[Action]], None],
        clock: Callable[[], float],
        unavailable: Callable[[], dict[str, str | None]],
    ):
        self.registry = registry
        self.settings = registry.gateway
        self.predictor = predictor
        self.scheduler = scheduler
        self.lifecycle = lifecycle
        self.events = events
        self.apply = apply
        self.clock = clock
        self.unavailable = unavailable
        self.last_request = time.time()  # wall clock
        self.staged: dict[str, Kind] = {}  # model -> how it was staged, until it is used
        self.counts: dict[str, dict[Kind, int]] = {
            "loads": {"page_cache": 0, "sleep": 0},
            "used": {"page_cache": 0, "sleep": 0},
            "abandoned": {"page_cache": 0, "sleep": 0},
        }
        self._reading: asyncio.Task[None] | None = None  # weight files into the page cache
        self._reading_model: str | None = None
        self._stop: threading.Event | None = None
        self._starting: str | None = None  # fit: a start for the pool, abandoned when a request needs the GPU
        self._start_task: asyncio.Task[None] | None = None
        self._abandoning: str | None = None
        self._no_files: set[str] = set()  # models with nothing to read here (no local snapshot)

    # --- what the manager tells it -----------------------------------------------------------

    def request_arrived(self, name: str) -> None:
        """A request always wins: a page-cache read stops at its next chunk, a staging start for another
        model that this request would have to wait behind is called off."""
        self.last_request = time.time()
        if self._stop is not None:
            self._stop.set()
        if (
            self._starting is not None
            and self._starting != name
            and self.scheduler.residency(name) not in (Residency.READY, Residency.DRAINING)
        ):
            self._abandon()

    def load_requested(self, name: str) -> None:
        """An operator's load wins over a staging start too."""
        if self._starting is not None and self._starting != name:
            self._abandon()

    def switch_started(self, name: str, task: asyncio.Task[None]) -> None:
        if name == self._starting:
            self._start_task = task

    def abandoning(self, name: str) -> bool:
        """Whether the cancelled switch to `name` was a staging start called off (not a shutdown)."""
        return self._abandoning == name

    async def abandoned(self, name: str) -> None:
        """The staging start was cancelled: take away what it started, tell the scheduler (no backoff)."""
        lc = self.lifecycle
        self._abandoning = None
        self.events.publish("staging", name, message=f"staging {name} abandoned: a request needs the GPU")
        with contextlib.suppress(Exception):
            await lc.stop(name, name, "staging gave way to a request")
        lc.end(name)
        self.apply(self.scheduler.switch_abandoned(name, self.clock()))

    def switch_done(self, name: str) -> None:
        """After a switch to `name`: a staging start goes to sleep; a staged model brought up is used."""
        if name == self._starting:
            self._starting, self._start_task = None, None
            self.counts["loads"]["sleep"] += 1
            if self.scheduler.queued(name) or self.scheduler.in_flight(name):
                self.staged.pop(name, None)
                self.counts["used"]["sleep"] += 1  # asked for while it started: used at once
                return
            self.staged[name] = "sleep"
            self.apply(self.scheduler.unload_requested(self.clock(), sleep=True, model=name))
            return
        kind = self.staged.pop(name, None)
        if kind is not None:
            self.counts["used"][kind] += 1

    def consider(self, idle: bool) -> None:
        """An idle moment (the manager's housekeeping): stage the likeliest next model, when one is due."""
        s = self.settings
        if s.stage_idle_s is None or self._reading is not None or self._starting is not None:
            return
        self._forget_stale()
        now = time.time()
        if now - self.last_request < s.stage_idle_s or not idle:
            return
        name = self.candidate(now)
        if name is None:
            return
        if self._kind(name) == "sleep":
            self._starting = name
            self.events.publish("staging", name, message=f"staging {name}: starting it to put it to sleep")
            self.apply(self.scheduler.load_requested(name, self.clock()))
            return
        self._stop = threading.Event()
        self._reading_model = name
        self._reading = asyncio.create_task(self._read(name, self._stop), name=f"stage-{name}")

    async def stop(self) -> None:
        """Shutdown: a read under way stops at its next chunk."""
        if self._stop is not None:
            self._stop.set()
        if self._reading is not None:
            self._reading.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reading

    # --- deciding ----------------------------------------------------------------------------

    def candidate(self, now: float) -> str | None:
        """The likeliest model, at least `stage_min_chance` within the horizon, that is neither awake
        nor asleep, can run here and has not been staged since it last ran."""
        unavailable = self.unavailable()
        for p in self.predictor.ranked(now, self.registry.models):
            if p.chance <= self.settings.stage_min_chance:  # without history every chance is exactly 1/2
                return None
            m = self.lifecycle.models[p.model]
            if m.state != ModelState.STOPPED or p.model in self.staged or unavailable.get(p.model):
                continue
            if self._kind(p.model) is not None:
                return p.model
        return None

    def _kind(self, name: str) -> Kind | None:
        """fit, with room beside what is awake and in the pool: start it and put it to sleep; else read
        its weight files into the page cache, when it has any here."""
        spec = self.registry.models[name]
        if (
            self.settings.policy == "fit"
            and spec.sleep_mode
            and self.scheduler.fits_beside(name)
            and self.lifecycle.would_sleep(name)
        ):
            return "sleep"
        return None if name in self._no_files else "page_cache"

    async def _read(self, name: str, stop: threading.Event) -> None:
        try:
            files = await asyncio.to_thread(weight_files, self.registry.models[name])
            if not files:
                self._no_files.add(name)
                return
            self.events.publish("staging", name, message=f"staging {name}: reading {len(files)} weight file(s)")
            t0 = time.monotonic()
            done, finished = await asyncio.to_thread(read_into_cache, files, stop)
            took = time.monotonic() - t0
            if finished:
                self.staged[name] = "page_cache"
                self.counts["loads"]["page_cache"] += 1
                msg = f"staged {name}: {done / 1e9:.2f} GB of weights in the page cache in {took:.1f} s"
            else:
                self.counts["abandoned"]["page_cache"] += 1
                msg = f"staging {name} stopped after {done / 1e9:.2f} GB: a request came"
            self.events.publish("staging", name, message=msg, staged=finished)
        except Exception as exc:  # unreadable files: say so, stage something else next time
            self._no_files.add(name)
            self.events.publish("staging", name, message=f"could not stage {name}: {exc}")
        finally:
            self._reading, self._reading_model, self._stop = None, None, None

    def _abandon(self) -> None:
        """A request needs the GPU while a staging start runs: call the start off (fit only)."""
        name, task = self._starting, self._start_task
        self._starting = None
        if name is None:
            return
        self.counts["abandoned"]["sleep"] += 1
        sw = self.scheduler.switch()
        if task is not None and not task.done():
            self._abandoning = name
            task.cancel()
        elif sw is None or sw.target != name:
            self.apply(self.scheduler.unload_requested(self.clock(), sleep=False, model=name))

    def _forget_stale(self) -> None:
        """A model staged asleep that left the pool unused is no longer staged."""
        for name, kind in list(self.staged.items()):
            if kind == "sleep" and self.lifecycle.models[name].state == ModelState.STOPPED:
                del self.staged[name]

    def status(self) -> dict[str, Any]:
        s = self.settings
        return {
            "enabled": s.stage_idle_s is not None,
            "idle_s": s.stage_idle_s,
            "min_chance": s.stage_min_chance,
            "in_progress": self._starting or self._reading_model,
            "staged": dict(self.staged),
            **{k: dict(v) for k, v in self.counts.items()},
        }


__all__ = ["Stager", "cached_fraction", "evict_from_cache", "read_into_cache", "weight_files"]
