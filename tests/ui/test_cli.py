"""`vlmswap up` and `vlmswap ui` as users run them: real processes, real ports, real signals."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import psutil
import yaml

from tests.support import PY, free_port, wait_http
from tests.ui.helpers import worker_cmd


def _answers(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _wait_gone(pids: list[int], timeout: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout
    alive = list(pids)
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]
        time.sleep(0.05)
    return alive


def test_up_starts_gateway_and_ui_and_sigterm_stops_both_and_the_backend(tmp_path: Path):
    reg = tmp_path / "registry.yaml"
    reg.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "ocr-a": {
                        "served_name": "ocr-a",
                        "cmd": worker_cmd("rapidocr"),
                        "family": "rapidocr",
                        "capabilities": ["ocr", "layout"],
                    }
                }
            }
        )
    )
    port, ui_port = free_port(), free_port()
    out = tmp_path / "up.log"
    with open(out, "wb") as log:
        proc = subprocess.Popen(
            [PY, "-m", "vlmswap", "up", "--config", str(reg), "--port", str(port), "--ui-port", str(ui_port)],
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "VLMSWAP_STATE_DIR": str(tmp_path / "state")},
        )
    try:
        gw, ui = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{ui_port}"
        wait_http(f"{ui}/_stcore/health", 120, proc)
        wait_http(f"{gw}/api/status", 30, proc)
        deadline = time.monotonic() + 30
        while "vlmswap web UI" not in out.read_text() and time.monotonic() < deadline:
            time.sleep(0.05)
        text = out.read_text()
        assert f"vlmswap gateway: {gw}" in text and f"vlmswap web UI:  {ui}" in text
        # Nothing is preloaded; a load starts the backend, whose process must go with the rest.
        assert httpx.get(f"{gw}/api/status", trust_env=False).json()["resident"] is None
        httpx.post(f"{gw}/api/models/ocr-a/load", params={"wait": "true"}, timeout=120, trust_env=False)
        backend_pids = httpx.get(f"{gw}/api/status", trust_env=False).json()["models"]["ocr-a"]["pids"]
        children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert backend_pids and set(backend_pids) <= set(children)
        os.kill(proc.pid, signal.SIGTERM)  # only `up` itself: it must stop its children
        assert proc.wait(90) == 0
        assert _wait_gone(children) == []
        assert not _answers(f"{gw}/api/status") and not _answers(f"{ui}/_stcore/health")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def test_up_with_a_missing_registry_says_which_file_and_exits_2(tmp_path: Path):
    r = subprocess.run(
        [PY, "-m", "vlmswap", "up", "--config", str(tmp_path / "nope.yaml")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2
    assert r.stderr.strip() == f"{tmp_path / 'nope.yaml'}: no such file"


def test_ui_serves_the_app_headless_on_loopback(ui_server: str):
    page = httpx.get(ui_server, timeout=10, trust_env=False)
    assert page.status_code == 200 and '<div id="root">' in page.text
    conns = [
        c
        for c in psutil.net_connections("tcp")
        if c.laddr and c.laddr.port == int(ui_server.rsplit(":", 1)[1]) and c.status == psutil.CONN_LISTEN
    ]
    assert conns and all(c.laddr.ip in ("127.0.0.1", "::1") for c in conns)
