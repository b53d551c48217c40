"""Test helpers shared by every area: free ports, real processes started and reaped."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import httpx

PY = sys.executable
ROOT = Path(__file__).resolve().parent.parent
FONT = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf"
T = TypeVar("T")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen | None = None) -> None:
    """Poll `url` until it answers 200; fail early if `proc` exits."""
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2.0, trust_env=False)
            if r.status_code == 200:
                return
            last = f"status {r.status_code}"
        except httpx.TransportError as exc:
            last = type(exc).__name__
        time.sleep(0.05)
    raise TimeoutError(f"{url} not ready after {timeout}s ({last})")


def wait_until(
    cond: Callable[[], T], timeout: float, what: str, detail: Callable[[], str] = lambda: "", poll_s: float = 0.05
) -> T:
    """Poll `cond` until it returns something true (returned); TimeoutError naming `what`, plus `detail()`."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what} not reached after {timeout} s; {detail()}")
        time.sleep(poll_s)


@contextlib.contextmanager
def running(
    argv: list[str],
    health_url: str | None = None,
    timeout: float = 120.0,
    env: dict[str, str] | None = None,
    log_path: Path | None = None,
    cwd: Path | None = None,
) -> Iterator[subprocess.Popen]:
    """Start argv in its own process group; wait for health_url; always reap it."""
    full_env = {**os.environ, **(env or {})}
    out = open(log_path, "wb") if log_path else subprocess.DEVNULL
    proc = subprocess.Popen(argv, env=full_env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True, cwd=cwd)
    try:
        if health_url:
            wait_http(health_url, timeout, proc)
        yield proc
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        if log_path:
            out.close()  # type: ignore[union-attr]


def worker_cmd(engine: str, *extra: str, python: str = "${PYTHON}") -> list[str]:
    """A registry entry's `cmd` running `vlmswap worker` with `engine` on the port the gateway picks."""
    return [python, "-m", "vlmswap", "worker", "--engine", engine, *extra, "--port", "${PORT}",
            "--served-model-name", "${SERVED_NAME}"]  # fmt: skip


def worker_argv(engine: str, port: int, *extra: str) -> list[str]:
    return [PY, "-m", "vlmswap", "worker", "--engine", engine, "--port", str(port), *extra]
