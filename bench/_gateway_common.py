"""Shared by the gateway benchmarks: process helpers, machine facts, and the lean raw client.

The client (tests/servers/rawhttp.py) is a few lines of asyncio on a kept-alive socket rather
than httpx: a heavy client on a 2-core machine would eat the CPU the proxies under test need,
and its cost would hide theirs. Every target (backend directly, nginx, the gateway) is measured
with this same client.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import FAULT_SERVER  # noqa: E402
from tests.servers.rawhttp import Conn, chat_body, post  # noqa: E402,F401  (re-exported for the benches)

PY = sys.executable


def machine() -> str:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    ram = psutil.virtual_memory().total / 2**30
    return f"{os.cpu_count()} CPU cores ({cpu}), {ram:.0f} GiB RAM, Python {platform.python_version()}, {platform.system()} {platform.release()}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def wait_http(url_host: str, port: int, path: str = "/health", timeout: float = 30.0,
              proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(f"http://{url_host}:{port}{path}", timeout=2, trust_env=False).status_code == 200:
                return
        time.sleep(0.01)
    raise TimeoutError(f"{url_host}:{port}{path} not up after {timeout} s")


@contextlib.contextmanager
def spawned(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Iterator[subprocess.Popen]:
    out = open(log, "ab") if log else subprocess.DEVNULL
    p = subprocess.Popen(argv, env={**os.environ, **(env or {})}, stdout=out, stderr=subprocess.STDOUT,
                         start_new_session=True, cwd=ROOT)
    try:
        yield p
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGTERM)
        try:
            p.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)
        if log:
            out.close()  # type: ignore[union-attr]


def fault_argv(port: int, name: str, *flags: str) -> list[str]:
    return [PY, str(FAULT_SERVER), "--port", str(port), "--served-model-name", name, *flags]


def registry_yaml(models: dict[str, dict], **gateway: object) -> str:
    import yaml

    return yaml.safe_dump({"gateway": dict(gateway), "models": models}, sort_keys=False)
