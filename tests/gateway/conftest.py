"""Real gateways (`python -m vlmswap serve` in a subprocess) in front of real backend processes.

Backends are tests/servers/fault_server.py (vLLM's HTTP protocol, faults on demand) and the
real rapidocr worker. Every process started is reaped; each gateway gets its own state dir.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.support import PY, ROOT, free_port, wait_http, worker_cmd

FAULT = ["${PYTHON}", "-m", "tests.servers.fault_server", "--port", "${PORT}", "--served-model-name", "${SERVED_NAME}"]


def fault_model(served: str, *flags: str, **fields: Any) -> dict[str, Any]:
    """A registry entry whose backend is the fault server with `flags`."""
    return {"served_name": served, "cmd": FAULT + list(flags), **fields}


def rapidocr_model(served: str = "rapidocr", **fields: Any) -> dict[str, Any]:
    return {
        "served_name": served,
        "family": "rapidocr",
        "capabilities": ["ocr", "layout"],
        "cmd": worker_cmd("rapidocr"),
        "startup_timeout_s": 120,
        **fields,
    }


@dataclass
class Gateway:
    url: str
    proc: subprocess.Popen
    state_dir: Path
    log_path: Path
    api_key: str | None = None

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def get(self, path: str, **kw: Any) -> httpx.Response:
        return httpx.get(self.url + path, headers=self.headers, trust_env=False, timeout=30, **kw)

    def post(self, path: str, **kw: Any) -> httpx.Response:
        kw.setdefault("timeout", 60)
        return httpx.post(self.url + path, headers={**self.headers, **kw.pop("headers", {})}, trust_env=False, **kw)

    def status(self) -> dict[str, Any]:
        r = self.get("/api/status")
        r.raise_for_status()
        return r.json()

    def chat(self, model: str, text: str = "hello", **kw: Any) -> httpx.Response:
        return self.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}], **kw}
        )

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        st: dict[str, Any] = {}
        while time.monotonic() < deadline:
            st = self.status()
            if pred(st):
                return st
            time.sleep(0.05)
        raise AssertionError(f"condition not met in {timeout}s; last status: {st}")

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def alive(pid: int) -> bool:
    """Running and not a zombie (a zombie holds nothing; it only waits to be reaped)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


def backend_processes(state_dir: Path) -> list[psutil.Process]:
    """Live processes whose command line names this test's state (fault servers and workers carry
    the gateway's environment; we match on VLMSWAP_STATE_DIR)."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            if p.status() == psutil.STATUS_ZOMBIE:
                continue
            env = p.environ()
        except (psutil.Error, OSError):
            continue
        if env.get("VLMSWAP_STATE_DIR") == str(state_dir) and "serve" not in (p.info["cmdline"] or []):
            out.append(p)
    return out


def write_registry(path: Path, models: dict[str, Any], **gateway: Any) -> Path:
    data = {"gateway": {"stop_grace_s": 2, "drain_timeout_s": 5, **gateway}, "models": models}
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


@contextlib.contextmanager
def start_gateway(
    tmp: Path,
    models: dict[str, Any],
    *extra: str,
    api_key: str | None = None,
    env: dict[str, str] | None = None,
    **gateway: Any,
) -> Iterator[Gateway]:
    tmp.mkdir(parents=True, exist_ok=True)
    cfg = write_registry(tmp / "registry.yaml", models, **gateway)
    state = tmp / "state"
    port = free_port()
    env = {**os.environ, "VLMSWAP_STATE_DIR": str(state), "PYTHONPATH": str(ROOT), **(env or {})}
    env.pop("VLMSWAP_API_KEY", None)
    if api_key:
        env["VLMSWAP_API_KEY"] = api_key
    log_path = tmp / "gateway.log"
    out = open(log_path, "wb")
    proc = subprocess.Popen(
        [PY, "-m", "vlmswap", "serve", "--config", str(cfg), "--port", str(port), *extra],
        env=env,
        cwd=ROOT,
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    gw = Gateway(f"http://127.0.0.1:{port}", proc, state, log_path, api_key)
    try:
        wait_http(gw.url + "/health", 60, proc)
        yield gw
    finally:
        stop_gateway(gw)
        out.close()
        left = backend_processes(state)
        for p in left:
            with contextlib.suppress(psutil.Error):
                p.kill()
        assert not left, f"backends left running after the gateway stopped: {[p.pid for p in left]}"


def stop_gateway(gw: Gateway, timeout: float = 30.0) -> int | None:
    if gw.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(gw.proc.pid, signal.SIGTERM)
        try:
            gw.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(gw.proc.pid, signal.SIGKILL)
            gw.proc.wait(10)
    return gw.proc.returncode


@pytest.fixture(scope="module")
def two_models(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway with two quick fault-server models and one that never starts."""
    tmp = tmp_path_factory.mktemp("gw-two")
    models = {
        "alpha": fault_model("org/alpha", aliases=["a"]),
        "beta": fault_model("org/beta", "--startup-delay", "0.3", aliases=["b"]),
        "broken": fault_model("org/broken", "--exit-during-start", "3"),
        "crashy": fault_model("org/crashy", "--crash-mid-stream", "2"),
        "slow": fault_model("org/slow", "--response-delay", "3"),
        "trickle": fault_model("org/trickle", "--chunk-delay", "0.2"),
    }
    with start_gateway(tmp, models, max_wait_s=5, backoff_initial_s=3, backoff_max_s=6) as gw:
        yield gw
