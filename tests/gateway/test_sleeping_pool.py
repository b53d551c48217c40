"""The sleeping pool with real backend processes (fault servers speaking vLLM's sleep endpoints).

NVML is the one double: `SleepGpu` asks each fault server what it would hold on the GPU
(2 GiB awake, 0.5 GiB asleep, or 2 GiB asleep with --sleep-leaks), per pid, as NVML does.
A sampler checks the invariant all along: never two backends awake.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.gateway.conftest import FAULT
from vlmswap.api.errors import APIError
from vlmswap.gpu import GpuSnapshot
from vlmswap.registry.config import parse_registry
from vlmswap.swap.manager import Manager

GIB = 1024**3


class SleepGpu:
    """Every live fault server under this test process is on the 'device' with what it reports."""

    def __init__(self, total_gib: float = 24):
        self.total = int(total_gib * GIB)

    def __call__(self) -> GpuSnapshot:
        procs: dict[int, int] = {}
        for p in psutil.Process().children(recursive=True):
            try:
                cmd = p.cmdline()
                if "tests.servers.fault_server" not in cmd or p.status() == psutil.STATUS_ZOMBIE:
                    continue
                port = cmd[cmd.index("--port") + 1]
                try:
                    procs[p.pid] = httpx.get(
                        f"http://127.0.0.1:{port}/fake_gpu_bytes", timeout=0.5, trust_env=False
                    ).json()["bytes"]
                except (httpx.HTTPError, ValueError):
                    procs[p.pid] = 2 * GIB  # loading: it holds its share already
            except psutil.Error:
                continue
        used = sum(procs.values())
        return GpuSnapshot(True, "", "Fake GPU", 0, self.total, used, self.total - used, procs)


def model(served: str, *flags: str, **fields: Any) -> dict[str, Any]:
    return {"served_name": served, "cmd": FAULT + list(flags), "sleep_mode": True, "vram_gb": 2, **fields}


def registry(models: dict[str, Any] | None = None, **gateway: Any):
    models = models or {"alpha": model("org/alpha"), "beta": model("org/beta")}
    return parse_registry(
        {
            "gateway": {
                "stop_grace_s": 2,
                "sleep_timeout_s": 5,
                "wake_timeout_s": 5,
                "vram_release_timeout_s": 2,
                **gateway,
            },
            "models": models,
        }
    )


class Run:
    """A manager with an event log and an invariant sampler (never two awake)."""

    def __init__(self, m: Manager):
        self.m = m
        self.events: list[dict[str, Any]] = []
        self.max_awake = 0
        m.add_listener(self.events.append)

    async def sample(self) -> None:
        while True:
            self.max_awake = max(self.max_awake, len(self.m.lifecycle.awake()))
            await asyncio.sleep(0.002)

    async def chat(self, name: str) -> None:
        async with self.m.lease(name) as lease:
            async with httpx.AsyncClient(trust_env=False) as c:
                r = await c.post(
                    lease.base_url + "/v1/chat/completions",
                    json={"model": lease.spec.served_name, "messages": [{"role": "user", "content": "hi"}]},
                )
                assert r.status_code == 200, r.text

    def messages(self, phase: str | None = None) -> list[str]:
        return [e["message"] for e in self.events if e["type"] == "phase" and (phase is None or e["phase"] == phase)]


def scenario(tmp_path: Path, reg, steps, gpu=None) -> Run:
    async def main() -> Run:
        m = Manager(reg, state_dir=tmp_path, gpu_probe=gpu or SleepGpu())
        await m.start()
        r = Run(m)
        sampler = asyncio.create_task(r.sample())
        try:
            await steps(r)
        finally:
            sampler.cancel()
            await m.shutdown()
        return r

    return asyncio.run(asyncio.wait_for(main(), 120))


def test_switch_back_wakes_the_model_instead_of_starting_it(tmp_path: Path):
    async def steps(r: Run) -> None:
        for name in ("alpha", "beta", "alpha", "beta", "alpha"):
            await r.chat(name)
        st = r.m.status()
        assert st["models"]["beta"]["state"] == "sleeping"
        assert st["pool"]["count"] == 1 and st["pool"]["ram_bytes"] > 0  # measured RSS of the sleeper
        assert st["models"]["beta"]["gpu_bytes"] == GIB // 2  # its residual, attributed by pid

    r = scenario(tmp_path, registry(), steps)
    assert r.m.models["alpha"].starts == 1 and r.m.models["beta"].starts == 1
    assert r.m.models["alpha"].wakes == 2 and r.m.models["beta"].wakes == 1
    kinds = [e.get("kind") for e in r.events if e["type"] == "phase" and e["phase"] == "ready"]
    assert kinds == ["cold", "cold", "warm", "warm", "warm"]
    assert r.max_awake == 1
    assert any(m.startswith("waking alpha") for m in r.messages("waking"))


def test_sleep_failure_stops_the_model_and_says_so(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha", "--sleep-fails"), "beta": model("org/beta")})

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")
        assert r.m.models["alpha"].state == "stopped"

    r = scenario(tmp_path, reg, steps)
    assert any("sleep of alpha failed" in m and "stopping it instead" in m for m in r.messages("sleeping"))
    assert r.max_awake == 1


def test_sleep_that_never_answers_is_bounded_and_stops_the_model(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha", "--sleep-hangs"), "beta": model("org/beta")}, sleep_timeout_s=0.5)

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        t0 = time.monotonic()
        await r.chat("beta")
        assert time.monotonic() - t0 < 5

    r = scenario(tmp_path, reg, steps)
    assert any("no answer in 0.5 s" in m for m in r.messages("sleeping"))
    assert r.m.models["alpha"].state == "stopped"


def test_gpu_memory_that_does_not_drop_after_sleep_stops_the_model(tmp_path: Path):
    reg = registry(
        {"alpha": model("org/alpha", "--sleep-leaks"), "beta": model("org/beta")}, vram_release_timeout_s=0.3
    )

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")

    r = scenario(tmp_path, reg, steps)
    assert any("the sleep leaked" in m for m in r.messages("sleeping")), r.messages()
    assert r.m.models["alpha"].state == "stopped" and r.m.models["alpha"].wakes == 0


@pytest.mark.parametrize("fault", ["--wake-fails", "--wake-hangs", "--die-on-wake"])
def test_wake_failure_falls_back_to_cold_start(tmp_path: Path, fault: str):
    reg = registry({"alpha": model("org/alpha", fault), "beta": model("org/beta")}, wake_timeout_s=0.6)

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")
        assert r.m.models["alpha"].state == "sleeping"
        await r.chat("alpha")  # served all the same, by a fresh backend

    r = scenario(tmp_path, reg, steps)
    assert r.m.models["alpha"].starts == 2 and r.m.models["alpha"].wakes == 0
    assert any("wake failed" in m and "starting it cold" in m for m in r.messages("waking")), r.messages()
    assert r.max_awake == 1


def test_sleeping_backend_that_dies_leaves_the_pool_and_the_next_request_starts_it_cold(tmp_path: Path):
    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")
        pid = r.m.status()["models"]["alpha"]["pids"][0]
        os.kill(pid, signal.SIGKILL)
        for _ in range(200):
            if r.m.models["alpha"].state == "stopped":
                break
            await asyncio.sleep(0.01)
        assert r.m.models["alpha"].state == "stopped"
        assert r.m.status()["pool"]["count"] == 0
        assert r.m.resident() == "beta"  # the awake model did not notice
        await r.chat("alpha")

    r = scenario(tmp_path, reg := registry(), steps)
    assert r.m.models["alpha"].starts == 2
    assert not any(e.get("crash") for e in r.events)  # quietly: not a crash of a serving model
    del reg


def test_max_sleeping_evicts_the_least_recently_used_sleeper(tmp_path: Path):
    reg = registry({"a": model("org/a"), "b": model("org/b"), "c": model("org/c")}, max_sleeping=1, pool_policy="lru")

    async def steps(r: Run) -> None:
        for name in ("a", "b", "c"):
            await r.chat(name)
        assert r.m.models["a"].state == "stopped" and r.m.models["b"].state == "sleeping"
        await r.chat("b")  # warm
        assert r.m.models["c"].state == "sleeping"

    r = scenario(tmp_path, reg, steps)
    assert r.m.models["b"].wakes == 1
    assert any("leaving the sleeping pool (least recently used) for b" in m for m in r.messages("stopping"))


def test_a_model_that_does_not_fit_the_ram_budget_is_stopped_instead(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha", sleep_ram_gb=4), "beta": model("org/beta")}, sleep_ram_budget_gb=1)

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")

    r = scenario(tmp_path, reg, steps)
    assert r.m.models["alpha"].state == "stopped"
    assert any("does not fit the sleeping pool" in m for m in r.messages("sleeping"))


def test_gpu_residual_of_sleepers_is_counted_before_a_start(tmp_path: Path):
    """A 4.8 GiB card: two sleepers (0.5 GiB each) + a 4 GiB need do not fit; the older one goes."""
    reg = registry({"a": model("org/a"), "b": model("org/b"), "c": model("org/c", vram_gb=4)})

    async def steps(r: Run) -> None:
        for name in ("a", "b", "c"):
            await r.chat(name)
        assert r.m.models["a"].state == "stopped" and r.m.models["b"].state == "sleeping"

    r = scenario(tmp_path, reg, steps, gpu=SleepGpu(total_gib=4.8))
    assert any("its GPU residual is needed for c" in m for m in r.messages("stopping"))


def test_model_without_sleep_mode_keeps_the_cold_path(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha", sleep_mode=False), "beta": model("org/beta")})

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")
        assert r.m.models["alpha"].state == "stopped"
        await r.chat("alpha")

    r = scenario(tmp_path, reg, steps)
    assert r.m.models["alpha"].starts == 2 and not [m for m in r.messages("sleeping") if "alpha" in m]


def test_level_2_wakes_with_vllms_three_calls(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha", sleep_level=2), "beta": model("org/beta")})

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")
        await r.chat("alpha")

    r = scenario(tmp_path, reg, steps)
    log = "\n".join(r.m.logs("alpha", 200))
    calls = [line.split("POST ", 1)[1] for line in log.splitlines() if "POST /" in line]
    assert calls[-3:] == ["/wake_up tags=weights", "/collective_rpc reload_weights", "/wake_up tags=kv_cache"]
    assert r.m.models["alpha"].wakes == 1


def test_operator_sleep_parks_the_awake_model_and_refuses_models_without_sleep_mode(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha"), "beta": model("org/beta", sleep_mode=False)})

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        out = await r.m.sleep("alpha")
        assert out["sleeping"] is True
        for _ in range(300):
            if r.m.models["alpha"].state == "sleeping":
                break
            await asyncio.sleep(0.01)
        assert r.m.models["alpha"].state == "sleeping" and r.m.resident() is None
        with pytest.raises(APIError) as err:
            await r.m.sleep("beta")
        assert err.value.status == 409
        await r.chat("alpha")

    r = scenario(tmp_path, reg, steps)
    assert r.m.models["alpha"].wakes == 1


def test_shutdown_stops_sleepers_too(tmp_path: Path):
    pids: list[int] = []

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        pids.extend(r.m.status()["models"]["alpha"]["pids"])
        await r.chat("beta")
        assert r.m.models["alpha"].state == "sleeping"

    scenario(tmp_path, registry(), steps)
    assert pids and not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE for p in pids)


def test_out_of_memory_at_start_evicts_every_sleeper_and_retries_once(tmp_path: Path):
    marker = tmp_path / "oom-once"
    reg = registry(
        {"alpha": model("org/alpha"), "beta": model("org/beta"), "gamma": model("org/gamma", "--oom-once", str(marker))}
    )

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await r.chat("beta")
        assert r.m.models["alpha"].state == "sleeping"
        await r.chat("gamma")  # dies out of memory once; the retry after evicting the sleepers works
        assert r.m.models["alpha"].state == "stopped" and r.m.models["beta"].state == "stopped"

    r = scenario(tmp_path, reg, steps)
    assert marker.exists() and r.m.models["gamma"].starts == 2
    assert any("ran out of GPU memory at start; evicting every sleeper" in m for m in r.messages("starting"))


def test_vllm_start_up_lines_become_loading_details(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha", "--vllm-log", "--startup-delay", "0.7")})

    async def steps(r: Run) -> None:
        await r.chat("alpha")

    r = scenario(tmp_path, reg, steps)
    details = [e.get("detail") for e in r.events if e.get("phase") == "loading" and e.get("detail")]
    assert details == [
        "loading weights 50%",
        "weights loaded in 0.95 s",
        "model loaded: 4.1 GiB in 1.2 s",
        "torch.compile done in 12.3 s",
        "capturing CUDA graphs 40%",
        "CUDA graphs captured in 11 s",
    ]
