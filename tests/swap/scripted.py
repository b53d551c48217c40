"""A backend whose every step is answered by a script: the lifecycle tested without processes.

The pattern of httpx's MockTransport: the code under test is real, the far side is a function.
`Script` decides what each backend step does (succeed, raise, hang, die) and records the
steps in order; `Script.factory` is what `Lifecycle(backend_factory=...)` takes.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from pathlib import Path

from vlmswap.backends.base import Backend, BackendError, LogBuffer
from vlmswap.registry.config import GatewaySettings, ModelSpec

Step = str  # "start", "ready", "sleep", "wake", "awake", "warm_up", "stop"
Rule = Callable[["ScriptedBackend"], None]
_pids = itertools.count(50_000)


class Script:
    def __init__(self) -> None:
        self.rules: dict[tuple[str, Step], Rule] = {}
        self.calls: list[tuple[str, Step]] = []
        self.backends: dict[str, list[ScriptedBackend]] = {}

    def on(self, model: str, step: Step, rule: Rule) -> None:
        """What `model`'s backends do at `step` from now on (raise to fail it)."""
        self.rules[(model, step)] = rule

    def factory(
        self, name: str, spec: ModelSpec, settings: GatewaySettings, logs: LogBuffer, state_dir: Path
    ) -> ScriptedBackend:
        b = ScriptedBackend(name, spec, settings, logs, state_dir, self)
        self.backends.setdefault(name, []).append(b)
        return b

    def steps(self, model: str | None = None) -> list[str]:
        return [f"{m}:{s}" for m, s in self.calls if model is None or m == model]

    def do(self, backend: ScriptedBackend, step: Step) -> None:
        self.calls.append((backend.name, step))
        rule = self.rules.get((backend.name, step))
        if rule is not None:
            rule(backend)


def fail(message: str, *log: str) -> Rule:
    def rule(_b: ScriptedBackend) -> None:
        raise BackendError(message, list(log))

    return rule


class ScriptedBackend(Backend):
    kind = "scripted"

    def __init__(
        self, name: str, spec: ModelSpec, settings: GatewaySettings, logs: LogBuffer, state_dir: Path, script: Script
    ):
        super().__init__(name, spec, settings, logs, state_dir)
        self.script = script
        self.pid = next(_pids)
        self.port = 1
        self.status: str | None = None
        self._exited: asyncio.Future[str] | None = None
        self.ram_bytes = 3 << 30

    def die(self, status: str = "killed by SIGKILL") -> None:
        """The server ends on its own: the lifecycle hears it through wait_exit."""
        self.status = status
        if self._exited is not None and not self._exited.done():
            self._exited.set_result(status)

    async def start(self) -> None:
        self._exited = asyncio.get_running_loop().create_future()
        self.script.do(self, "start")
        self.started_at = 0.0

    def exit_status(self) -> str | None:
        return self.status

    async def wait_exit(self) -> str:
        assert self._exited is not None
        return await asyncio.shield(self._exited)

    async def stop(self, grace_s: float) -> None:
        self.script.do(self, "stop")
        self.die(self.status or "stopped")

    def pids(self) -> set[int]:
        return {self.pid} if self.status is None else set()

    def host_memory_bytes(self) -> int:
        return self.ram_bytes

    async def wait_ready(self, timeout_s: float, poll_s: float = 0.05, on_phase=None) -> None:
        self.script.do(self, "ready")

    async def sleep(self, level: int, timeout_s: float) -> None:
        self.script.do(self, "sleep")

    async def wake(self, level: int, timeout_s: float) -> None:
        self.script.do(self, "wake")

    async def wait_awake(self, timeout_s: float, poll_s: float = 0.02) -> None:
        self.script.do(self, "awake")

    async def warm_up(self, timeout_s: float) -> None:
        self.script.do(self, "warm_up")
