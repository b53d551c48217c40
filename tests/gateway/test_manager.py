"""The manager in-process, with real backend processes; NVML replaced by a scripted probe.

A GPU cannot be had here, so `gpu_probe` is the one double: it reports the old backend's
pids on the device for a while after the stop, exactly as NVML does on a real card.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import psutil

from tests.gateway.conftest import FAULT
from vlmswap.gpu import GpuSnapshot
from vlmswap.registry.config import parse_registry
from vlmswap.swap.manager import Manager

GIB = 1024**3


def registry(**gateway: Any):
    models = {
        "alpha": {"served_name": "org/alpha", "cmd": FAULT},
        "beta": {"served_name": "org/beta", "cmd": FAULT},
        "gamma": {"served_name": "org/gamma", "cmd": FAULT},
    }
    return parse_registry({"gateway": {"stop_grace_s": 2, **gateway}, "models": models})


class FakeGpu:
    """Memory follows the backends' pids, released `lag_s` after they are gone (or never)."""

    def __init__(self, lag_s: float = 0.3, never_release: bool = False):
        self.lag_s = lag_s
        self.never = never_release
        self.held: dict[int, float | None] = {}  # pid -> time it was seen gone

    def __call__(self) -> GpuSnapshot:
        now = time.monotonic()
        for p in psutil.Process().children(recursive=True):  # like NVML: every process on the device
            try:
                if "fault_server" in " ".join(p.cmdline()) and p.status() != psutil.STATUS_ZOMBIE:
                    self.held.setdefault(p.pid, None)
            except psutil.Error:
                pass
        procs = {}
        for pid, gone_at in list(self.held.items()):
            try:
                alive = psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
            except psutil.Error:
                alive = False
            if not alive and gone_at is None:
                self.held[pid] = gone_at = now
            if alive or self.never or now - gone_at < self.lag_s:  # type: ignore[operator]
                procs[pid] = 2 * GIB
            else:
                del self.held[pid]
        used = GIB // 2 + sum(procs.values())
        return GpuSnapshot(True, "", "Fake GPU", 0, 12 * GIB, used, 12 * GIB - used, procs)


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 120))


def test_waiting_vram_waits_until_the_old_backend_memory_is_back(tmp_path: Path):
    gpu = FakeGpu(lag_s=0.4)

    async def main():
        m = Manager(registry(), state_dir=tmp_path, gpu_probe=gpu)
        await m.start()
        events: list[dict] = []
        m.add_listener(events.append)
        try:
            async with m.lease("alpha") as lease:
                assert lease.base_url.startswith("http://127.0.0.1:")
            st = m.status()
            assert st["gpu"]["per_backend"]["alpha"] == 2 * GIB  # memory attributed by pid
            async with m.lease("org/beta"):
                pass
        finally:
            await m.shutdown()
        return events

    events = run(main())
    phases = [(e["phase"], e["message"], e["time"]) for e in events if e["type"] == "phase" and e["model"] == "beta"]
    names = [p[0] for p in phases]
    assert names.index("waiting_vram") < names.index("starting")
    released = [p for p in phases if p[0] == "waiting_vram" and p[1].startswith("released in")]
    assert released, phases
    waited = float(released[0][1].split()[2])
    assert waited >= 0.35  # it really waited for the (fake) driver to give the memory back
    first_vram = next(p for p in phases if p[0] == "waiting_vram")
    starting = next(p for p in phases if p[0] == "starting")
    assert starting[2] - first_vram[2] >= 0.35


def test_waiting_vram_gives_up_after_the_timeout_and_says_so(tmp_path: Path):
    gpu = FakeGpu(never_release=True)

    async def main():
        m = Manager(registry(vram_release_timeout_s=0.3), state_dir=tmp_path, gpu_probe=gpu)
        await m.start()
        events: list[dict] = []
        m.add_listener(events.append)
        try:
            async with m.lease("alpha"):
                assert m.status()["gpu"]["per_backend"]["alpha"] == 2 * GIB
            async with m.lease("beta"):
                pass
        finally:
            await m.shutdown()
        return events

    events = run(main())
    msgs = [e["message"] for e in events if e.get("phase") == "waiting_vram"]
    assert any("gave up after 0.3 s" in m and "still on the GPU" in m for m in msgs), msgs


def test_concurrent_leases_never_run_two_backends(tmp_path: Path):
    """60 leases for 3 models from 12 concurrent tasks; a sampler counts backend processes."""
    rng = random.Random(7)

    async def main():
        m = Manager(registry(max_wait_s=0.5), state_dir=tmp_path, gpu_probe=lambda: GpuSnapshot(False, "none"))
        await m.start()
        seen_max = 0
        stop = asyncio.Event()

        async def sampler():
            nonlocal seen_max
            me = psutil.Process()
            while not stop.is_set():
                kids = 0
                for p in me.children(recursive=True):
                    try:
                        if p.status() != psutil.STATUS_ZOMBIE and "fault_server" in " ".join(p.cmdline()):
                            kids += 1
                    except psutil.Error:  # exited (or became a zombie) between listing and reading
                        pass
                seen_max = max(seen_max, kids)
                await asyncio.sleep(0.01)

        async def client(n: int):
            served = []
            for _ in range(5):
                model = rng.choice(["alpha", "beta", "gamma"])
                async with m.lease(model) as lease:
                    served.append((model, lease.name))
                    await asyncio.sleep(rng.random() * 0.02)
            return served

        s = asyncio.create_task(sampler())
        try:
            results = await asyncio.gather(*(client(i) for i in range(12)))
        finally:
            stop.set()
            await s
            switches = m.switch_count
            await m.shutdown()
        return results, seen_max, switches

    results, seen_max, switches = run(main())
    assert seen_max == 1
    served = [x for r in results for x in r]
    assert len(served) == 60 and all(a == b for a, b in served)
    assert switches < 60  # grouping collapsed requests into far fewer switches


def test_cancelled_waiter_leaves_the_queue(tmp_path: Path):
    async def main():
        m = Manager(registry(), state_dir=tmp_path, gpu_probe=lambda: GpuSnapshot(False, "none"))
        await m.start()
        try:
            async with m.lease("alpha"):
                task = asyncio.create_task(m.lease("beta").__aenter__())
                await asyncio.sleep(0.05)
                assert m.scheduler.queued("beta") == 1
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                assert m.scheduler.queued() == 0
            await asyncio.sleep(0.1)
            assert m.resident() == "alpha" and m.models["beta"].starts == 0
        finally:
            await m.shutdown()
        assert m.lifecycle.backend_names() == []

    run(main())


def test_drain_timeout_cuts_requests_in_flight(tmp_path: Path):
    """A request still running after drain_timeout_s is cut by the stop; the switch goes on."""
    import httpx

    reg = parse_registry(
        {
            "gateway": {"stop_grace_s": 1, "drain_timeout_s": 0.5},
            "models": {
                "alpha": {"served_name": "org/alpha", "cmd": FAULT + ["--response-delay", "5"]},
                "beta": {"served_name": "org/beta", "cmd": FAULT},
            },
        }
    )

    async def main():
        m = Manager(reg, state_dir=tmp_path, gpu_probe=lambda: GpuSnapshot(False, "none"))
        await m.start()
        try:
            async with m.lease("alpha") as lease:
                async with httpx.AsyncClient(trust_env=False, timeout=30) as c:
                    call = asyncio.create_task(
                        c.post(
                            lease.base_url + "/v1/chat/completions",
                            json={"model": "org/alpha", "messages": [{"role": "user", "content": "long"}]},
                        )
                    )
                    await asyncio.sleep(0.2)
                    t0 = time.monotonic()
                    await m.load("beta")
                    try:
                        await call
                        cut = False
                    except httpx.HTTPError:
                        cut = True
                    took = time.monotonic() - t0
            await m.load("beta", wait=True)
            return cut, took, m.resident()
        finally:
            await m.shutdown()

    cut, took, resident = run(main())
    assert cut and took < 4  # the 5 s request did not hold the switch up
    assert resident == "beta"
