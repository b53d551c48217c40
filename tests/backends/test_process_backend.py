"""The process backend against real fault-server processes: start, readiness, faults, stop."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import psutil
import pytest

from vlmswap.backends.base import BackendError
from vlmswap.backends.process import group_members

pytestmark = pytest.mark.timeout(60)


def gone(pids: set[int]) -> bool:
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                return False
        except psutil.NoSuchProcess:
            continue
    return True


async def test_slow_start_is_ready_after_the_delay_not_before(factory):
    b = factory.backend("--startup-delay", "1.0")
    phases: list[str] = []
    t0 = time.monotonic()
    await b.start()
    await b.wait_ready(20, on_phase=lambda phase, msg: phases.append(msg))
    elapsed = time.monotonic() - t0
    assert elapsed >= 1.0, f"ready after {elapsed:.2f} s, before the 1 s startup delay"
    assert "port not accepting connections yet" in phases
    assert b.alive()
    await b.stop(5)


async def test_never_healthy_times_out_with_log_tail(factory):
    b = factory.backend("--never-healthy")
    await b.start()
    t0 = time.monotonic()
    with pytest.raises(BackendError) as info:
        await b.wait_ready(1.5)
    assert time.monotonic() - t0 >= 1.5
    assert "not ready after" in str(info.value)
    assert any("never healthy" in line for line in info.value.log_tail)
    await b.stop(5)
    assert not b.alive()


async def test_exit_during_start_fails_at_once_with_its_last_lines(factory):
    b = factory.backend("--exit-during-start", "7")
    await b.start()
    t0 = time.monotonic()
    with pytest.raises(BackendError) as info:
        await b.wait_ready(60)
    took = time.monotonic() - t0
    assert took < 5, f"took {took:.1f} s to notice an exit; the timeout was 60 s"
    assert "exited during start (exit code 7)" in info.value.message
    assert any("simulated failure while loading fm" in line for line in info.value.log_tail)
    assert any("exiting with code 7" in line for line in info.value.log_tail)
    await b.stop(5)
    assert not b.pid_path.exists()


async def test_wrong_served_name_is_not_ready(factory):
    b = factory.backend("--wrong-name")
    msgs: list[str] = []
    await b.start()
    with pytest.raises(BackendError, match="not ready after"):
        await b.wait_ready(1.0, on_phase=lambda phase, msg: msgs.append(msg))
    assert any("fm-wrong" in m and "not fm" in m for m in msgs)
    await b.stop(5)


async def test_stop_leaves_no_process_of_the_group(factory):
    b = factory.backend("--child")
    await b.start()
    await b.wait_ready(20)
    pids = b.pids()
    assert len(pids) == 2, f"server and its child expected, got {pids}"
    pgid = b._pgid
    t0 = time.monotonic()
    await b.stop(10)
    assert time.monotonic() - t0 < 5, "a server that honours SIGTERM should not need the grace period"
    assert group_members(pgid) == []
    assert gone(pids)
    assert b.exit_status() == "exit code 0"
    assert any("SIGTERM to process group" in line for line in b.logs.tail(10))


async def test_ignoring_sigterm_is_still_gone_after_grace(factory):
    b = factory.backend("--ignore-sigterm", "--child")
    await b.start()
    await b.wait_ready(20)
    pids = b.pids()
    assert len(pids) == 2
    pgid = b._pgid
    t0 = time.monotonic()
    await b.stop(0.5)
    took = time.monotonic() - t0
    assert 0.5 <= took < 5, took
    assert group_members(pgid) == []
    assert gone(pids), "the server or its SIGTERM-ignoring child survived"
    assert b.exit_status() == "killed by SIGKILL"
    tail = "\n".join(b.logs.tail(10))
    assert "SIGKILL to process group" in tail and "stopped fm (killed by SIGKILL)" in tail


async def test_fixed_port_already_taken_is_a_clear_error(factory, state_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = factory.backend(port=port)
        with pytest.raises(BackendError) as info:
            await b.start()
    msg = str(info.value)
    assert f"port {port} is already in use" in msg
    assert f"pid {os.getpid()}" in msg, msg  # psutil sees who holds it: this very test process
    assert b._proc is None and not b.pid_path.exists()


async def test_fixed_free_port_is_used(factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    b = factory.backend(port=port)
    await b.start()
    await b.wait_ready(20)
    assert b.port == port and b.base_url == f"http://127.0.0.1:{port}"
    await b.stop(5)


async def test_pid_file_written_at_start_and_removed_at_stop(factory):
    b = factory.backend()
    await b.start()
    data = json.loads(b.pid_path.read_text())
    p = psutil.Process(b.pid)
    assert data["pid"] == b.pid == data["pgid"] == os.getpgid(b.pid)
    assert data["create_time"] == p.create_time()
    assert data["gateway_pid"] == os.getpid()
    assert data["argv"][1].endswith("fault_server.py") and str(b.port) in data["argv"]
    assert data["model"] == "fm" and data["port"] == b.port
    await b.wait_ready(20)
    await b.stop(5)
    assert not b.pid_path.exists()


async def test_crash_while_ready_shows_in_exit_status(factory):
    b = factory.backend()
    await b.start()
    await b.wait_ready(20)
    assert b.exit_status() is None
    os.kill(b.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    import asyncio

    while b.exit_status() is None and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert b.exit_status() in ("killed by SIGKILL", "exited")
    t0 = time.monotonic()
    await b.stop(5)
    assert time.monotonic() - t0 < 2
    assert b.exit_status() == "killed by SIGKILL"
    assert not b.pid_path.exists()
    assert any("had already ended" in line for line in b.logs.tail(5))


async def test_output_goes_to_the_ring_buffer_and_the_log_file(factory, state_dir):
    b = factory.backend()
    await b.start()
    await b.wait_ready(20)
    await b.stop(5)
    tail = b.logs.tail(50)
    assert any("starting fm on port" in line for line in tail)
    assert any("listening on http://127.0.0.1" in line for line in tail)
    assert any("shutting down" in line for line in tail)
    text = (state_dir / "logs" / "fm.log").read_text()
    assert "listening on http://127.0.0.1" in text


async def test_missing_executable_is_a_clear_error(factory, state_dir):
    from vlmswap.backends.base import LogBuffer
    from vlmswap.backends.process import ProcessBackend
    from vlmswap.registry.config import GatewaySettings, ModelSpec

    spec = ModelSpec(served_name="x", cmd=["/nonexistent/vllm", "serve"])
    b = ProcessBackend("x", spec, GatewaySettings(), LogBuffer(None), state_dir)
    with pytest.raises(BackendError, match=r"cannot run '/nonexistent/vllm'"):
        await b.start()
    assert b.exit_status() == "not started"
    await b.stop(1)  # nothing to stop: no error


def test_start_ready_stop_under_uvloop(factory):
    """The gateway runs on uvloop when installed: the same lifecycle must hold there."""
    uvloop = pytest.importorskip("uvloop")

    async def lifecycle() -> None:
        b = factory.backend("--child")
        await b.start()
        await b.wait_ready(20)
        pids = b.pids()
        assert len(pids) == 2
        await b.stop(5)
        assert gone(pids) and group_members(b._pgid) == []
        assert b.exit_status() == "exit code 0"
        assert any("listening on" in line for line in b.logs.tail(20))
        crashed = factory.backend("--exit-during-start", "3", name="other")
        await crashed.start()
        with pytest.raises(BackendError, match=r"exited during start \(exit code 3\)"):
            await crashed.wait_ready(30)
        await crashed.stop(1)

    uvloop.run(lifecycle())
