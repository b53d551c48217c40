"""The lifecycle with scripted backends: every start, sleep, wake and stop path without a process.

The end-to-end versions of these (real fault-server processes, NVML scripted per pid) are in
tests/gateway/test_sleeping_pool.py; here each fallback is pinned alone, in milliseconds.
"""

from __future__ import annotations

import asyncio
import functools
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest

from tests.swap.scripted import Script, ScriptedBackend, fail
from vlmswap.backends.base import BackendError
from vlmswap.gpu import GpuSnapshot
from vlmswap.registry.config import parse_registry
from vlmswap.swap.events import EventBus
from vlmswap.swap.lifecycle import Lifecycle
from vlmswap.swap.states import ModelState

GIB = 1024**3


def aio(fn: Callable[..., Coroutine[Any, Any, None]]) -> Callable[..., None]:
    """Run an async test on its own event loop (no plugin needed)."""

    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> None:
        asyncio.run(asyncio.wait_for(fn(*args, **kwargs), 30))

    return run


def registry(models: dict[str, dict[str, Any]] | None = None, **gateway: Any):
    models = models or {name: {"sleep_mode": True} for name in ("a", "b", "c")}
    return parse_registry(
        {
            "gateway": {"stop_grace_s": 0.1, "sleep_timeout_s": 1, "wake_timeout_s": 1, **gateway},
            "models": {
                name: {"served_name": f"org/{name}", "cmd": [f"serve-{name}"], "vram_gb": 2, **fields}
                for name, fields in models.items()
            },
        }
    )


class World:
    def __init__(self, tmp: Path, reg=None, keep=None):
        self.script = Script()
        self.exits: list[tuple[str, str]] = []
        self.events = EventBus()
        self.now = 0.0
        self.lc = Lifecycle(
            reg or registry(),
            tmp,
            self.events,
            gpu_probe=lambda: GpuSnapshot(False, "no GPU in this test"),
            clock=lambda: self.now,
            on_exit=lambda name, status: self.exits.append((name, status)),
            backend_factory=self.script.factory,
            keep=keep,
        )

    def state(self, name: str) -> ModelState:
        return self.lc.models[name].state

    def backend(self, name: str) -> ScriptedBackend:
        b = self.lc.models[name].backend
        assert isinstance(b, ScriptedBackend)
        return b


@pytest.fixture
def world(tmp_path: Path) -> World:
    return World(tmp_path)


@aio
async def test_cold_start_brings_the_model_up_and_counts_it(world: World):
    kind = await world.lc.switch((), "a", frozenset())
    assert kind == "cold"
    assert world.state("a") == ModelState.READY
    assert world.script.steps() == ["a:start", "a:ready"]
    assert world.lc.models["a"].starts == 1 and world.lc.base_url("a") == "http://127.0.0.1:1"
    assert world.lc.stats.summary("a")["cold_start_s"]["count"] == 1


@aio
async def test_a_failed_start_stops_what_it_started_and_raises(world: World):
    world.script.on("a", "ready", fail("a exited during start (exit code 1)", "Traceback: boom"))
    with pytest.raises(BackendError, match="exit code 1"):
        await world.lc.switch((), "a", frozenset())
    assert world.script.steps() == ["a:start", "a:ready", "a:stop"]
    assert world.lc.models["a"].backend is None and world.lc.backend_names() == []


@aio
async def test_switch_puts_the_old_model_to_sleep_and_starts_the_new_one(world: World):
    await world.lc.switch((), "a", frozenset())
    await world.lc.switch(("a",), "b", frozenset())
    assert world.state("a") == ModelState.SLEEPING and world.state("b") == ModelState.READY
    assert world.lc.sleepers() == ["a"] and world.lc.awake() == ["b"]
    assert world.lc.models["a"].sleep_ram_bytes == 3 * GIB  # measured, replacing the estimate


@aio
async def test_switch_back_to_a_sleeper_is_a_wake(world: World):
    await world.lc.switch((), "a", frozenset())
    await world.lc.switch(("a",), "b", frozenset())
    kind = await world.lc.switch(("b",), "a", frozenset())
    assert kind == "warm"
    assert world.script.steps("a")[-2:] == ["a:wake", "a:awake"]
    assert world.lc.models["a"].wakes == 1 and world.state("a") == ModelState.READY


@aio
async def test_wake_failure_falls_back_to_cold_start(world: World):
    await world.lc.switch((), "a", frozenset())
    await world.lc.switch(("a",), "b", frozenset())
    first = world.backend("a")
    world.script.on("a", "wake", fail("POST /wake_up answered 500"))
    kind = await world.lc.switch(("b",), "a", frozenset())
    assert kind == "cold"
    assert first.status == "stopped" and world.backend("a") is not first
    assert world.script.steps("a")[-4:] == ["a:wake", "a:stop", "a:start", "a:ready"]
    assert world.state("a") == ModelState.READY


@aio
async def test_sleep_failure_stops_the_model_instead(world: World):
    await world.lc.switch((), "a", frozenset())
    world.script.on("a", "sleep", fail("POST /sleep answered 500"))
    await world.lc.switch(("a",), "b", frozenset())
    assert world.state("a") == ModelState.STOPPED and world.lc.sleepers() == []
    assert world.script.steps("a")[-2:] == ["a:sleep", "a:stop"]


@aio
async def test_a_model_without_sleep_mode_is_stopped_not_slept(tmp_path: Path):
    w = World(tmp_path, registry({"a": {}, "b": {}}))
    await w.lc.switch((), "a", frozenset())
    await w.lc.switch(("a",), "b", frozenset())
    assert "a:sleep" not in w.script.steps() and w.state("a") == ModelState.STOPPED


@aio
async def test_a_full_pool_evicts_the_sleeper_worth_least(tmp_path: Path):
    worth = {"a": 2.0, "b": 1.0, "c": 3.0}  # b is worth least, whatever the order of use
    w = World(tmp_path, registry(max_sleeping=1), keep=worth.__getitem__)
    await w.lc.switch((), "a", frozenset())
    await w.lc.switch(("a",), "b", frozenset())
    await w.lc.switch(("b",), "c", frozenset())  # b wants in; a is asleep; room for one
    assert w.lc.sleepers() == ["b"] and w.state("a") == ModelState.STOPPED
    worth["a"] = 0.0
    await w.lc.switch(("c",), "a", frozenset())  # a starts cold; c wants in; b is worth less than c
    assert w.lc.sleepers() == ["c"] and w.state("b") == ModelState.STOPPED


@aio
async def test_a_protected_sleeper_is_never_evicted(tmp_path: Path):
    w = World(tmp_path, registry(max_sleeping=1))
    await w.lc.switch((), "a", frozenset())
    await w.lc.switch(("a",), "b", frozenset())
    await w.lc.switch(("b",), "c", frozenset({"a"}))  # the oldest queued request waits for a
    assert w.lc.sleepers() == ["a"] and w.state("b") == ModelState.STOPPED  # b did not fit: stopped instead


@aio
async def test_out_of_memory_at_start_evicts_every_sleeper_and_retries_once(world: World):
    await world.lc.switch((), "a", frozenset())
    await world.lc.switch(("a",), "b", frozenset())
    tries = []

    def oom_once(_b: ScriptedBackend) -> None:
        tries.append(1)
        if len(tries) == 1:
            raise BackendError("c exited during start (exit code 1)", ["torch.OutOfMemoryError: CUDA out of memory."])

    world.script.on("c", "ready", oom_once)
    await world.lc.switch(("b",), "c", frozenset())
    assert len(tries) == 2 and world.lc.sleepers() == [] and world.state("c") == ModelState.READY


@aio
async def test_a_backend_that_dies_on_its_own_is_pushed_to_on_exit(world: World):
    await world.lc.switch((), "a", frozenset())
    world.backend("a").die("exit code 137")
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert world.exits == [("a", "exit code 137")]


@aio
async def test_a_backend_being_stopped_is_not_reported_as_an_exit(world: World):
    await world.lc.switch((), "a", frozenset())
    await world.lc.stop("a", "a", "unload")
    await asyncio.sleep(0)
    assert world.exits == [] and world.state("a") == ModelState.STOPPED


@aio
async def test_shutdown_stops_sleepers_too(world: World):
    await world.lc.switch((), "a", frozenset())
    await world.lc.switch(("a",), "b", frozenset())
    await world.lc.shutdown()
    assert world.state("a") == ModelState.STOPPED and world.state("b") == ModelState.STOPPED
    assert sorted(s for s in world.script.steps() if s.endswith(":stop")) == ["a:stop", "b:stop"]


@aio
async def test_the_log_of_a_model_outlives_its_backend(world: World):
    await world.lc.switch((), "a", frozenset())
    world.backend("a").logs.append("loaded 42 tensors")
    await world.lc.stop("a", "a", "unload")
    assert "loaded 42 tensors" in world.lc.logs("a")
