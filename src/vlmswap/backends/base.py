"""What every backend (a process or a container serving one model) offers the manager.

Backends are the only code that touches processes and containers. The manager decides
*when* to start and stop; a backend knows *how*. Readiness is judged the same way for all
of them (alive AND health 200 AND served name listed), so it lives here, once.
"""

from __future__ import annotations

import asyncio
import collections
import os
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import httpx
import psutil

from vlmswap.backends.logfiles import RotatingLog
from vlmswap.registry.config import GatewaySettings, ModelSpec

_HTTP_TIMEOUT = httpx.Timeout(2.0, connect=1.0)


class BackendError(Exception):
    """A backend that failed to start, died, or could not be stopped; carries its last log lines."""

    def __init__(self, message: str, log_tail: list[str] | None = None):
        super().__init__(message)
        self.message = message
        self.log_tail = log_tail or []

    def __str__(self) -> str:
        if not self.log_tail:
            return self.message
        return self.message + "\n--- last log lines ---\n" + "\n".join(self.log_tail)


class LogBuffer:
    """A backend's output: the last `maxlen` lines in memory, everything in a log file."""

    MAX_LINE = 16384  # a child that never prints a newline is cut into lines of this many bytes

    def __init__(self, path: Path | None, maxlen: int = 2000, *, max_bytes: int = 20 << 20, keep: int = 3):
        self.path = path
        self._partial = b""
        self._lines: collections.deque[str] = collections.deque(maxlen=maxlen)
        self._lock = threading.Lock()
        self._file = RotatingLog(path, max_bytes=max_bytes, keep=keep) if path is not None else None
        self.listeners: list[Callable[[str], None]] = []  # called with each line (the loading phases)

    def append(self, line: str) -> None:
        line = line.rstrip("\r\n")
        with self._lock:
            self._lines.append(line)
            if self._file is not None:
                self._file.write(line)
        for fn in list(self.listeners):
            fn(line)

    def feed(self, chunk: bytes) -> None:
        """Raw output bytes (a pipe read, a container log chunk): complete lines are appended."""
        self._partial += chunk
        *lines, self._partial = self._partial.split(b"\n")
        for line in lines:
            self.append(line.decode("utf-8", "replace"))
        while len(self._partial) > self.MAX_LINE:
            self.append(self._partial[: self.MAX_LINE].decode("utf-8", "replace"))
            self._partial = self._partial[self.MAX_LINE :]

    def flush(self) -> None:
        """The output ended: keep its last, unterminated line too."""
        if self._partial:
            self.append(self._partial.decode("utf-8", "replace"))
            self._partial = b""

    def mark(self, message: str) -> None:
        """A line of vlmswap's own (start, stop, exit code) among the backend's output."""
        self.append(f"[vlmswap {time.strftime('%H:%M:%S')}] {message}")

    def tail(self, n: int = 50) -> list[str]:
        with self._lock:
            if n <= 0:
                return []
            return list(self._lines)[-n:]

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None


class Backend(ABC):
    """One model's server. Lifecycle: start() -> wait_ready() -> ... -> stop()."""

    kind: str = "?"

    def __init__(self, name: str, spec: ModelSpec, settings: GatewaySettings, logs: LogBuffer, state_dir: Path):
        self.name = name
        self.spec = spec
        self.settings = settings
        self.logs = logs
        self.state_dir = state_dir
        self.port: int | None = spec.port
        self.started_at: float | None = None
        self.variables: dict[str, str] = {}  # more ${NAME}s for the command (GPU_MEMORY_UTILIZATION)

    @property
    def base_url(self) -> str:
        host = self.spec.host if self.spec.host not in ("0.0.0.0", "::") else "127.0.0.1"
        return f"http://{host}:{self.port}"

    @abstractmethod
    async def start(self) -> None:
        """Launch the server and return once it exists (not once it is ready). Raises BackendError."""

    @abstractmethod
    def exit_status(self) -> str | None:
        """None while the server runs; otherwise how it ended (e.g. 'exit code 1', 'killed by SIGKILL')."""

    @abstractmethod
    async def wait_exit(self) -> str:
        """Return once the server has ended on its own or been stopped, with how it ended.

        Push, not poll: the process backend waits on its pidfd, the container backend on the
        engine's `wait`. The lifecycle awaits this once per backend to hear of crashes.
        """

    @abstractmethod
    async def stop(self, grace_s: float) -> None:
        """Ask it to stop, wait `grace_s`, then force it; return only when it is gone."""

    @abstractmethod
    def pids(self) -> set[int]:
        """Host pids of the server and its children, for NVML attribution and invariant checks."""

    def alive(self) -> bool:
        return self.started_at is not None and self.exit_status() is None

    def host_memory_bytes(self) -> int:
        """Resident host memory of the server's processes (what a sleeper holds in RAM)."""
        total = 0
        for pid in self.pids():
            try:
                total += psutil.Process(pid).memory_info().rss
            except psutil.Error:
                continue
        return total

    # --- vLLM's sleep mode, over HTTP (the same for every backend) ---------------------------

    async def _post(self, client: httpx.AsyncClient, path: str, what: str, **kw: object) -> None:
        try:
            r = await client.post(self.base_url + path, **kw)  # type: ignore[arg-type]
        except httpx.TransportError as exc:
            raise BackendError(
                f"{self.name}: {what} failed: {type(exc).__name__} {exc}".rstrip(), self.logs.tail(30)
            ) from None
        if r.status_code != 200:
            raise BackendError(f"{self.name}: {what} answered {r.status_code}: {r.text[:200]}", self.logs.tail(30))

    async def sleep(self, level: int, timeout_s: float) -> None:
        """POST /sleep?level=N: weights to host RAM (1) or dropped (2), KV cache dropped."""
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=1.0), trust_env=False, verify=False
        ) as client:
            await self._post(client, "/sleep", f"POST /sleep?level={level}", params={"level": level})

    async def wake(self, level: int, timeout_s: float) -> None:
        """Level 1: POST /wake_up. Level 2 (weights dropped): vLLM's three calls, weights reloaded
        from the checkpoint before the KV cache is allocated again."""
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=1.0), trust_env=False, verify=False
        ) as client:
            if level == 1:
                await self._post(client, "/wake_up", "POST /wake_up")
                return
            await self._post(client, "/wake_up", "POST /wake_up?tags=weights", params={"tags": "weights"})
            await self._post(
                client, "/collective_rpc", "POST /collective_rpc reload_weights", json={"method": "reload_weights"}
            )
            await self._post(client, "/wake_up", "POST /wake_up?tags=kv_cache", params={"tags": "kv_cache"})

    async def wait_awake(self, timeout_s: float, poll_s: float = 0.02) -> None:
        """After a wake: alive AND /is_sleeping false AND /v1/models lists the served name."""
        deadline = time.monotonic() + timeout_s
        last = ""
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT, trust_env=False, verify=False) as client:
            while True:
                status = self.exit_status()
                if status is not None:
                    raise BackendError(f"{self.name} exited during wake ({status})", self.logs.tail(30))
                try:
                    r = await client.get(self.base_url + "/is_sleeping")
                    if r.status_code == 200 and r.json().get("is_sleeping") is False:
                        m = await client.get(self.base_url + "/v1/models")
                        ids = [d.get("id") for d in m.json().get("data", []) if isinstance(d, dict)]
                        if m.status_code == 200 and self.spec.served_name in ids:
                            return
                        last = f"/v1/models lists {ids}"
                    else:
                        last = f"/is_sleeping answered {r.status_code} {r.text[:100]}"
                except (httpx.TransportError, ValueError) as exc:
                    last = type(exc).__name__
                if time.monotonic() > deadline:
                    raise BackendError(f"{self.name} not awake after {timeout_s:g} s ({last})", self.logs.tail(30))
                await asyncio.sleep(poll_s)

    async def warm_up(self, timeout_s: float) -> None:
        """A 1-token request, so the first client's request does not pay for cold caches."""
        body = {"model": self.spec.served_name, "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1}
        async with httpx.AsyncClient(
            timeout=httpx.Timeout(timeout_s, connect=1.0), trust_env=False, verify=False
        ) as client:
            await self._post(client, "/v1/chat/completions", "warm-up request", json=body)

    def check_starting(self, deadline: float, timeout_s: float) -> None:
        """Fail a start at once when the server has exited, or when its time is up."""
        status = self.exit_status()
        if status is not None:
            raise BackendError(f"{self.name} exited during start ({status})", self.logs.tail(30))
        if time.monotonic() > deadline:
            raise BackendError(f"{self.name} not ready after {timeout_s:.0f} s (startup_timeout_s)", self.logs.tail(30))

    async def wait_ready(
        self, timeout_s: float, poll_s: float = 0.05, on_phase: Callable[[str, str], None] | None = None
    ) -> None:
        """Ready = alive AND GET health answers 200 AND GET /v1/models lists the served name.

        Connection refused means still loading (vLLM binds before it listens). A server that
        exits meanwhile fails at once, with its last log lines.
        """
        deadline = time.monotonic() + timeout_s
        phase = ""
        # verify=False: plain HTTP to the backend; it spares loading the CA bundle (40-90 ms of CPU per start).
        async with httpx.AsyncClient(timeout=_HTTP_TIMEOUT, trust_env=False, verify=False) as client:
            while True:
                self.check_starting(deadline, timeout_s)
                try:
                    r = await client.get(self.base_url + self.spec.health)
                    if r.status_code == 200:
                        if phase != "models" and on_phase:
                            on_phase("loading", "health 200; checking /v1/models")
                        phase = "models"
                        m = await client.get(self.base_url + "/v1/models")
                        if m.status_code == 200:
                            ids = [d.get("id") for d in m.json().get("data", []) if isinstance(d, dict)]
                            if self.spec.served_name in ids:
                                return
                            if on_phase:
                                on_phase("loading", f"/v1/models lists {ids}, not {self.spec.served_name}")
                    elif phase != "health" and on_phase:
                        phase = "health"
                        on_phase("loading", f"health answered {r.status_code}")
                except (httpx.TransportError, ValueError):
                    if phase != "connect" and on_phase:
                        phase = "connect"
                        on_phase("loading", "port not accepting connections yet")
                await asyncio.sleep(poll_s)


def free_port(host: str = "127.0.0.1") -> int:
    """A port the OS says is free now (there is a race; the backend reports 'port taken' if lost)."""
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def state_dir() -> Path:
    """Where pid files and logs go: $VLMSWAP_STATE_DIR, else $XDG_STATE_HOME/vlmswap."""
    base = os.environ.get("VLMSWAP_STATE_DIR")
    if base:
        return Path(base)
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "vlmswap"
