"""A real `vlmswap serve` process in front of fault-server backends, always reaped."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.servers import fault_cmd, is_fault_server
from tests.support import ROOT, free_port, wait_until
from vlmswap.backends.process import cleanup_orphans


def fault_model(*flags: str, **fields: Any) -> dict[str, Any]:
    """A registry entry running the fault server with `flags`."""
    return {"cmd": fault_cmd(*flags), **fields}


def fault_servers_of(root_pids: set[int] | None = None) -> list[psutil.Process]:
    """Live fault-server processes (all of them, or those whose pid file lives in our state dir)."""
    out = []
    for p in psutil.process_iter(["pid", "cmdline", "status"]):
        try:
            if p.info["status"] == psutil.STATUS_ZOMBIE or not p.info["cmdline"]:
                continue
            if is_fault_server(p.info["cmdline"]) and (root_pids is None or p.pid in root_pids):
                out.append(p)
        except psutil.Error:
            continue
    return out


class Gateway:
    """`python -m vlmswap serve` on a free port with a registry written from a dict."""

    def __init__(self, tmp: Path, models: dict[str, dict[str, Any]], state_dir: Path | None = None, **gateway: Any):
        self.tmp = tmp
        self.state_dir = state_dir or tmp / "state"
        for name, m in models.items():
            m.setdefault("served_name", name)
        self.config = tmp / f"registry-{len(list(tmp.glob('registry-*.yaml')))}.yaml"
        self.config.write_text(yaml.safe_dump({"gateway": gateway, "models": models}, sort_keys=False))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / f"gateway-{self.port}.log"
        self.proc: subprocess.Popen | None = None
        self.http = httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    def start(self, timeout: float = 60.0) -> Gateway:
        env = {**os.environ, "VLMSWAP_STATE_DIR": str(self.state_dir), "PYTHONUNBUFFERED": "1"}
        env.pop("VLMSWAP_API_KEY", None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vlmswap", "serve", "--config", str(self.config), "--port", str(self.port)],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.log()[-3000:]}")
            with contextlib.suppress(httpx.TransportError):
                if self.http.get("/health", timeout=2).status_code == 200:
                    return self
            if time.monotonic() > deadline:
                raise TimeoutError(f"gateway not up after {timeout} s:\n{self.log()[-3000:]}")
            time.sleep(0.05)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def status(self) -> dict[str, Any]:
        r = self.http.get("/api/status")
        r.raise_for_status()
        return r.json()

    def model(self, name: str) -> dict[str, Any]:
        return self.status()["models"][name]

    def wait_for(self, cond, timeout: float = 30.0, what: str = "condition") -> Any:
        return wait_until(cond, timeout, what, lambda: f"status: {self.status()}", poll_s=0.02)

    def chat(self, model: str, text: str = "hi", **kw: Any) -> httpx.Response:
        return self.http.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": text}], **kw}
        )

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.http.close()
        if getattr(self, "_log", None):
            self._log.close()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Any]:
    """gateways(models, **settings) -> a started Gateway; all are stopped and their backends reaped."""
    made: list[Gateway] = []

    def make(models: dict[str, dict[str, Any]], start: bool = True, **settings: Any) -> Gateway:
        gw = Gateway(tmp_path, models, **settings)
        made.append(gw)
        return gw.start() if start else gw

    yield make
    for gw in made:
        gw.stop()
    for gw in made:  # safety net: nothing of ours may outlive the test
        cleanup_orphans(gw.state_dir, grace_s=0.5)
