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
import statistics
import subprocess
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.servers import FAULT_SERVER  # noqa: E402
from tests.servers.rawhttp import Conn, chat_body, post  # noqa: E402,F401  (re-exported for the benches)
from tests.support import free_port, running  # noqa: E402,F401  (free_port re-exported for the benches)

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


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else float("nan")


def wait_http(
    url_host: str, port: int, path: str = "/health", timeout: float = 30.0, proc: subprocess.Popen | None = None
) -> None:
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


def spawned(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None):
    """A process in its own group, reaped at the end (tests.support.running, run from the repo root)."""
    return running(argv, env=env, log_path=log, cwd=ROOT)


def fault_argv(port: int, name: str, *flags: str) -> list[str]:
    return [PY, str(FAULT_SERVER), "--port", str(port), "--served-model-name", name, *flags]


def registry_yaml(models: dict[str, dict], **gateway: object) -> str:
    import yaml

    return yaml.safe_dump({"gateway": dict(gateway), "models": models}, sort_keys=False)


def write_section(title: str, section: str) -> None:
    """Replace the `## title` section of bench/README.md with `section` (appended when missing)."""
    import re

    readme = ROOT / "bench" / "README.md"
    text = readme.read_text() if readme.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^## {re.escape(title)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = (
        pattern.sub(lambda _m: section + "\n", text) if pattern.search(text) else text.rstrip("\n") + "\n\n" + section
    )
    readme.write_text(text)
