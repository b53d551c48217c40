"""One real `vlmswap cluster serve` (a local Ray, two replicas) for the whole module, always reaped.

The cluster's registry has profiles (an admin, and two readers who may use the models but not
the admin API), so every test goes through the ingress's sign-in and each replica applies the
caller's profile; `Cluster.http` and the clients the tests make sign in as the admin.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.servers import fault_cmd
from tests.support import ROOT, free_port, wait_until, worker_cmd

pytest.importorskip("ray.serve", reason="the cluster mode needs the ray extra (make test installs it)")

SPAWNLOG = Path(__file__).resolve().parent / "spawnlog.py"
UP_TIMEOUT_S = 180
ADMIN_KEY, READER_KEY, OTHER_KEY = "cluster-admin-0001", "cluster-reader-0002", "cluster-other-0003"
NARROW_KEY = "cluster-narrow-0004"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def bearer(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


OCR_FIELDS = {"family": "rapidocr", "capabilities": ["ocr", "layout"]}
PROFILES = {
    "ops": {"key_sha256": sha(ADMIN_KEY), "admin": True},
    "reader": {"key_sha256": sha(READER_KEY)},
    "other": {"key_sha256": sha(OTHER_KEY)},
    "narrow": {"key_sha256": sha(NARROW_KEY), "models": ["ocr-a"]},
}


@dataclass(frozen=True)
class Spawn:
    pid: int
    parent: int
    model: str


class Cluster:
    """`vlmswap cluster serve` on a free port; worker spawns logged by spawnlog.py."""

    def __init__(
        self,
        tmp: Path,
        models: dict[str, list[str]],
        replicas: int = 2,
        fields: dict[str, dict[str, Any]] | None = None,
    ):
        self.tmp = tmp
        self.spawn_log = tmp / "spawns.log"
        self.spawn_log.touch()
        registry = {
            "gateway": {"policy": "single", "max_wait_s": 180},
            "models": {
                name: {
                    "served_name": name,
                    "cmd": ["${PYTHON}", str(SPAWNLOG), str(self.spawn_log), "${MODEL}", "--", *cmd],
                    "startup_timeout_s": 120,
                    "vram_gb": 0,
                    **(fields or {}).get(name, {}),
                }
                for name, cmd in models.items()
            },
            "profiles": PROFILES,
        }
        self.config = tmp / "registry.yaml"
        self.config.write_text(yaml.safe_dump(registry, sort_keys=False))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = tmp / "cluster.log"
        self.http = httpx.Client(base_url=self.url, timeout=180, trust_env=False, headers=bearer(ADMIN_KEY))
        env = {**os.environ, "VLMSWAP_STATE_DIR": str(tmp / "state"), "PYTHONUNBUFFERED": "1"}
        env.pop("VLMSWAP_API_KEY", None)
        self._log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "vlmswap",
                "cluster",
                "serve",
                "--config",
                str(self.config),
                "--replicas",
                str(replicas),
                "--port",
                str(self.port),
                "--gpus-per-replica",
                "0",
                "--no-dashboard",
            ],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_up(self, replicas: int) -> Cluster:
        self.wait_for(
            lambda: len(self.status_or_none()["replicas"]) >= replicas, UP_TIMEOUT_S, f"{replicas} replicas reporting"
        )
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def status_or_none(self) -> dict[str, Any]:
        if self.proc.poll() is not None:
            raise RuntimeError(f"cluster exited with {self.proc.returncode}:\n{self.log()[-4000:]}")
        with contextlib.suppress(httpx.TransportError, ValueError):
            r = self.http.get("/api/status", timeout=10)
            if r.status_code == 200:
                return r.json()
        return {"replicas": []}

    def status(self) -> dict[str, Any]:
        r = self.http.get("/api/status")
        r.raise_for_status()
        return r.json()

    def wait_for(self, cond: Any, timeout: float, what: str) -> Any:
        return wait_until(cond, timeout, what, lambda: f"log:\n{self.log()[-3000:]}", poll_s=0.2)

    def spawns(self) -> list[Spawn]:
        out = []
        for line in self.spawn_log.read_text().splitlines():
            pid, parent, model = line.split()
            out.append(Spawn(int(pid), int(parent), model))
        return out

    def chat(self, model: str, content: Any = "hi", **kw: Any) -> httpx.Response:
        return self.http.post(
            "/v1/chat/completions", json={"model": model, "messages": [{"role": "user", "content": content}], **kw}
        )

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        self.http.close()
        self._log.close()
        return self.proc.returncode


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


class AwakeSampler:
    """Samples the process table: for every replica (the parent of logged workers), how many
    of its workers are alive at once. Runs in a thread for the whole module."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.samples = 0
        self.worst: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.1):
            per_parent: dict[int, int] = {}
            for s in self.cluster.spawns():
                if alive(s.pid):
                    per_parent[s.parent] = per_parent.get(s.parent, 0) + 1
            for parent, n in per_parent.items():
                self.worst[parent] = max(self.worst.get(parent, 0), n)
            self.samples += 1

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    worker = worker_cmd("rapidocr")
    c = Cluster(
        tmp,
        {
            "ocr-a": worker,
            "ocr-b": worker,
            "ocr-c": worker,
            "slow": fault_cmd("--chunk-delay", "0.3", "--response-delay", "6"),
            "chat": fault_cmd("--chunk-delay", "0.05"),
        },
        fields={
            **dict.fromkeys(("ocr-a", "ocr-b", "ocr-c"), OCR_FIELDS),
            "chat": {"capabilities": ["chat"]},
        },
    )
    try:
        yield c.wait_up(2)
    finally:
        c.stop()
        for s in c.spawns():  # whatever a failed test left: reap it
            with contextlib.suppress(psutil.Error):
                for p in [psutil.Process(s.pid), *psutil.Process(s.pid).children(recursive=True)]:
                    p.kill()


@pytest.fixture(scope="module")
def sampler(cluster: Cluster) -> Iterator[AwakeSampler]:
    s = AwakeSampler(cluster)
    yield s
    s.stop()


@pytest.fixture
def ui_server(cluster: Cluster, tmp_path: Path) -> Iterator[str]:
    """`vlmswap ui --gateway CLUSTER_URL` as a user runs it, signed in as the admin."""
    from tests.support import PY, running

    port = free_port()
    argv = [PY, "-m", "vlmswap", "ui", "--gateway", cluster.url, "--port", str(port)]
    with running(
        argv,
        f"http://127.0.0.1:{port}/_stcore/health",
        timeout=90,
        log_path=tmp_path / "ui.log",
        env={"VLMSWAP_STATE_DIR": str(tmp_path / "state"), "VLMSWAP_API_KEY": ADMIN_KEY},
    ):
        yield f"http://127.0.0.1:{port}"
