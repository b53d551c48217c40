"""Fixtures for the process backend tests: real fault-server processes, always reaped."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import signal
from pathlib import Path
from typing import Any

import pytest

from tests.servers import fault_cmd
from vlmswap.backends.base import LogBuffer
from vlmswap.backends.process import ProcessBackend, group_members
from vlmswap.registry.config import GatewaySettings, ModelSpec


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> bool | None:
    """Run `async def` tests of this folder in a fresh event loop (no pytest-asyncio needed)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        asyncio.run(pyfuncitem.obj(**{n: pyfuncitem.funcargs[n] for n in names}))
        return True
    return None


class Factory:
    """Makes fault-server backends; the fixture stops whatever a test leaves running."""

    def __init__(self, state_dir: Path):
        self.state_dir = state_dir
        self.made: list[ProcessBackend] = []

    def spec(self, *flags: str, name: str = "fm", **fields: Any) -> ModelSpec:
        return ModelSpec(served_name=name, cmd=fault_cmd(*flags), **fields)

    def backend(self, *flags: str, name: str = "fm", **fields: Any) -> ProcessBackend:
        spec = self.spec(*flags, name=name, **fields)
        logs = LogBuffer(self.state_dir / "logs" / f"{name}.log")
        b = ProcessBackend(name, spec, GatewaySettings(), logs, self.state_dir)
        self.made.append(b)
        return b


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def factory(state_dir: Path):
    f = Factory(state_dir)
    yield f
    for b in f.made:  # safety net: a failed test must not leave processes behind
        pgid = b._pgid
        if pgid is not None and group_members(pgid):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)
        b.logs.close()
