"""Orphan cleanup: backends left by a gateway that died hard are stopped by the next one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from tests.support import ROOT
from vlmswap.backends.process import cleanup_orphans, group_members, pid_file

pytestmark = pytest.mark.timeout(60)
GATEWAY = Path(__file__).with_name("orphan_gateway.py")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def start_and_kill_gateway(state_dir: Path, name: str, *flags: str) -> dict:
    """Start a stand-in gateway with one backend, then SIGKILL the gateway: its backend lives on."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    gw = subprocess.Popen(
        [sys.executable, str(GATEWAY), str(state_dir), name, "--", *flags],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
        start_new_session=True,
    )
    try:
        line = gw.stdout.readline()
        assert line, f"stand-in gateway died with {gw.wait(5)}"
        info = json.loads(line)
    finally:
        os.killpg(gw.pid, signal.SIGKILL)  # the gateway only: the backend has its own group
        gw.wait(10)
        gw.stdout.close()
    return info


@pytest.fixture
def reap():
    pgids: list[int] = []
    yield pgids
    for pgid in pgids:
        if group_members(pgid):
            os.killpg(pgid, signal.SIGKILL)


def test_backend_left_by_a_killed_gateway_is_stopped_and_reported(state_dir, reap):
    info = start_and_kill_gateway(state_dir, "qwen2-vl", "--child")
    pid = info["pid"]
    reap.append(pid)
    assert alive(pid), "the backend should outlive its SIGKILLed gateway"
    assert len(info["pids"]) == 2
    assert pid_file(state_dir, "qwen2-vl").exists()
    messages = cleanup_orphans(state_dir, grace_s=2)
    assert len(messages) == 1
    assert messages[0].startswith(f"stopped orphaned backend qwen2-vl (pid {pid}) left by an earlier gateway")
    assert not any(alive(p) for p in info["pids"])
    assert group_members(pid) == []
    assert not pid_file(state_dir, "qwen2-vl").exists()
    assert cleanup_orphans(state_dir) == []


def test_orphan_that_ignores_sigterm_is_killed(state_dir, reap):
    info = start_and_kill_gateway(state_dir, "stubborn", "--ignore-sigterm")
    reap.append(info["pid"])
    t0 = time.monotonic()
    messages = cleanup_orphans(state_dir, grace_s=0.5)
    assert time.monotonic() - t0 >= 0.5
    assert messages and "stopped orphaned backend stubborn" in messages[0]
    assert not alive(info["pid"])


def test_reused_pid_is_not_mistaken_for_a_backend(state_dir, reap):
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    reap.append(other.pid)
    try:
        path = pid_file(state_dir, "qwen2-vl")
        path.parent.mkdir(parents=True)
        real = psutil.Process(other.pid).create_time()
        path.write_text(
            json.dumps(
                {
                    "model": "qwen2-vl",
                    "pid": other.pid,
                    "pgid": other.pid,
                    "create_time": real - 1000.0,
                    "argv": ["vllm", "serve"],
                    "gateway_pid": 1,
                    "gateway_create_time": 0.0,
                }
            )
        )
        assert cleanup_orphans(state_dir, grace_s=0.5) == []
        assert other.poll() is None, "an unrelated process holding a reused pid was killed"
        assert not path.exists(), "the stale pid file should be removed"
    finally:
        other.kill()
        other.wait(5)


def test_backend_of_a_gateway_still_running_is_left_alone(state_dir, reap):
    fake_gateway = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    backend = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)
    reap += [fake_gateway.pid, backend.pid]
    try:
        path = pid_file(state_dir, "m")
        path.parent.mkdir(parents=True)
        path.write_text(
            json.dumps(
                {
                    "model": "m",
                    "pid": backend.pid,
                    "pgid": backend.pid,
                    "create_time": psutil.Process(backend.pid).create_time(),
                    "argv": [],
                    "gateway_pid": fake_gateway.pid,
                    "gateway_create_time": psutil.Process(fake_gateway.pid).create_time(),
                }
            )
        )
        messages = cleanup_orphans(state_dir, grace_s=0.5)
        assert messages == [
            f"left backend m (pid {backend.pid}) alone: it belongs to gateway pid "
            f"{fake_gateway.pid}, which is still running"
        ]
        assert backend.poll() is None
        assert path.exists()
    finally:
        for p in (fake_gateway, backend):
            p.kill()
            p.wait(5)


def test_unreadable_and_dead_pid_files_are_removed(state_dir):
    d = state_dir / "pids"
    d.mkdir(parents=True)
    (d / "junk.json").write_text("{not json")
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait(10)
    ct = time.time()
    (d / "dead.json").write_text(json.dumps({"model": "dead", "pid": dead.pid, "pgid": dead.pid, "create_time": ct}))
    assert cleanup_orphans(state_dir) == []
    assert list(d.iterdir()) == []
