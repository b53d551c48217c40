"""Shared by the gateway benchmarks: a lean raw HTTP/1.1 client, process helpers, machine facts.

The client is a few lines of asyncio on a kept-alive socket rather than httpx: a heavy client
on a 2-core machine would eat the CPU the proxies under test need, and its cost would hide
theirs. Every target (backend directly, nginx, the gateway) is measured with this same client.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
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


def chat_body(model: str, text: str = "hello gateway benchmark", stream: bool = False, max_tokens: int | None = None) -> bytes:
    req: dict = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    if max_tokens:
        req["max_tokens"] = max_tokens
    return json.dumps(req).encode()


def post(path: str, body: bytes, host: str = "127.0.0.1", port: int = 0, headers: dict[str, str] | None = None) -> bytes:
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n{extra}\r\n").encode() + body


class Conn:
    """One kept-alive HTTP/1.1 connection; request() returns (status, body, t_first_byte, t_chunks)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None

    async def open(self) -> "Conn":
        self.r, self.w = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return self

    async def close(self) -> None:
        if self.w is not None:
            self.w.close()
            with contextlib.suppress(Exception):
                await self.w.wait_closed()

    async def request(self, raw: bytes) -> tuple[int, bytes, float, list[float]]:
        if self.w is None:
            await self.open()
        assert self.r is not None and self.w is not None
        self.w.write(raw)
        await self.w.drain()
        head = await self.r.readuntil(b"\r\n\r\n")
        t_first = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        chunks: list[float] = []
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await self.r.readuntil(b"\r\n")
                    break
                body += await self.r.readexactly(size)
                await self.r.readexactly(2)
                chunks.append(time.perf_counter())
            data = bytes(body)
        elif "content-length" in headers:
            data = await self.r.readexactly(int(headers["content-length"]))
        else:
            data = await self.r.read()
        if headers.get("connection", "").lower() == "close":
            await self.close()
            self.w = None
        return status, data, t_first, chunks


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
