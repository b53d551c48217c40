"""DockerBackend against the real engine: start, ready, logs, stop, and each clear error."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import docker
from tests.docker.conftest import failing_spec, httpd_spec, spec_of
from tests.support import free_port
from vlmswap.backends import docker as dk
from vlmswap.backends.base import BackendError, LogBuffer
from vlmswap.registry.config import GatewaySettings

pytestmark = pytest.mark.docker


def make(name: str, entry: dict[str, Any], state_dir: Path, **settings: Any) -> dk.DockerBackend:
    return dk.DockerBackend(name, spec_of(entry), GatewaySettings(**settings), LogBuffer(None), state_dir)


def gone(engine: Any, cid: str) -> bool:
    try:
        engine.api.inspect_container(cid)
    except docker.errors.NotFound:
        return True
    return False


def labelled(engine: Any, state_dir: Path) -> list[Any]:
    return engine.containers.list(all=True, filters={"label": f"{dk.LABEL_GATEWAY}={dk.gateway_id(state_dir)}"})


def test_container_starts_labelled_on_loopback_ready_and_stops(engine, busybox_image, state_dir):
    port = free_port()
    b = make(
        "model-a", httpd_spec(busybox_image, "served-a", port, delay=0.3, shm_size="64m", ipc="shareable"), state_dir
    )

    async def run() -> tuple[set[int], float]:
        await b.start()
        await b.wait_ready(30)
        pids = b.pids()
        t0 = time.monotonic()
        await b.stop(5)
        return pids, time.monotonic() - t0

    assert b.exit_status() == "not started"
    cid_holder: dict[str, str] = {}
    orig_stop = b._stop_sync

    def spy_stop(grace: float) -> None:  # inspect the live container just before it goes
        c = engine.containers.get(b.container_id)
        cid_holder["id"] = c.id
        cid_holder["labels"] = c.labels
        cid_holder["ports"] = c.attrs["HostConfig"]["PortBindings"]
        cid_holder["host_config"] = c.attrs["HostConfig"]
        cid_holder["env"] = c.attrs["Config"]["Env"]
        orig_stop(grace)

    b._stop_sync = spy_stop  # type: ignore[method-assign]
    pids, stop_s = asyncio.run(run())

    assert cid_holder["labels"][dk.LABEL_MODEL] == "model-a"
    assert cid_holder["labels"][dk.LABEL_SERVED] == "served-a"
    assert cid_holder["labels"][dk.LABEL_GATEWAY] == dk.gateway_id(state_dir)
    assert cid_holder["ports"] == {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert cid_holder["host_config"]["ShmSize"] == 64 * 1024 * 1024
    assert cid_holder["host_config"]["IpcMode"] == "shareable"
    assert "SERVED_NAME=served-a" in cid_holder["env"] and "PORT=8080" in cid_holder["env"]
    assert pids and all(not psutil.pid_exists(p) for p in pids), "container processes outlive stop()"
    assert b.port == port
    assert stop_s < 4, "a container that handles SIGTERM should not wait out the grace period"
    assert gone(engine, cid_holder["id"])
    assert b.exit_status() == "exit code 0"
    assert b.pids() == set()
    log = "\n".join(b.logs.tail(50))
    assert "model served-a listening on 8080" in log
    assert "got SIGTERM" in log


def test_stop_container_ignoring_sigterm_is_gone_after_grace(engine, busybox_image, state_dir):
    b = make("stubborn", httpd_spec(busybox_image, "stubborn", free_port(), ignore_term=True), state_dir)

    async def run() -> float:
        await b.start()
        await b.wait_ready(30)
        t0 = time.monotonic()
        await b.stop(1)
        return time.monotonic() - t0

    took = asyncio.run(run())
    assert 0.9 <= took < 8, f"stop took {took:.2f} s with a 1 s grace"
    assert b.exit_status() == "exit code 137"  # SIGKILL after the grace
    assert gone(engine, b.container_id)
    assert "got SIGTERM" not in "\n".join(b.logs.tail(50))


def test_container_exiting_during_start_fails_fast_with_its_log(engine, busybox_image, state_dir):
    b = make("crashy", failing_spec(busybox_image, "crashy", free_port(), code=3), state_dir)

    async def run() -> BackendError:
        await b.start()
        t0 = time.monotonic()
        with pytest.raises(BackendError) as info:
            await b.wait_ready(30)
        assert time.monotonic() - t0 < 10, "an exit during start must fail at once, not at startup_timeout_s"
        await b.stop(1)
        return info.value

    err = asyncio.run(run())
    assert "exited during start (exit code 3)" in err.message
    assert any("CUDA out of memory" in line for line in err.log_tail)
    assert any("loading weights for crashy" in line for line in err.log_tail)
    assert labelled(engine, state_dir) == []


def test_image_not_present_is_named_and_not_pulled(engine, busybox_image, state_dir):
    image = "vlmswap-test/absent:never-built"
    b = make("absent", {**httpd_spec(busybox_image, "absent", free_port()), "image": image}, state_dir)
    with pytest.raises(BackendError) as info:
        asyncio.run(b.start())
    assert image in info.value.message and "not present locally" in info.value.message
    assert "pull: true" in info.value.message
    assert labelled(engine, state_dir) == []
    assert any(image in line for line in b.logs.tail(5))


def test_pull_true_tries_the_registry_and_says_why_it_failed(engine, busybox_image, state_dir):
    image = f"127.0.0.1:{free_port()}/absent:1"  # a registry address nothing listens on
    entry = {**httpd_spec(busybox_image, "pulled", free_port()), "image": image, "pull": True}
    b = make("pulled", entry, state_dir)
    with pytest.raises(BackendError) as info:
        asyncio.run(b.start())
    assert f"cannot pull image {image}" in info.value.message
    assert labelled(engine, state_dir) == []


def test_engine_unreachable_names_the_socket(busybox_image, state_dir, tmp_path, monkeypatch):
    dead = f"unix://{tmp_path}/no-engine.sock"
    monkeypatch.setenv("DOCKER_HOST", dead)
    b = make("a", httpd_spec(busybox_image, "a", free_port()), state_dir)
    with pytest.raises(BackendError) as info:
        asyncio.run(b.start())
    assert info.value.message.startswith(f"Docker engine not reachable at {dead} (DOCKER_HOST)")
    assert b.exit_status() == "not started"
    assert dk.cleanup_orphans(state_dir) == [f"could not look for orphaned containers: {info.value.message}"]


def test_engine_unreachable_from_gateway_setting(busybox_image, state_dir, tmp_path):
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))  # bound, never listening: connection refused
    url = f"tcp://127.0.0.1:{listener.getsockname()[1]}"
    try:
        b = make("a", httpd_spec(busybox_image, "a", free_port()), state_dir, docker_host=url)
        with pytest.raises(BackendError) as info:
            asyncio.run(b.start())
    finally:
        listener.close()
    assert f"Docker engine not reachable at {url} (gateway.docker_host)" in info.value.message


def test_host_port_in_use_is_a_clear_error(engine, busybox_image, state_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        b = make("a", httpd_spec(busybox_image, "a", port), state_dir)
        with pytest.raises(BackendError) as info:
            asyncio.run(b.start())
    assert f"host port 127.0.0.1:{port} is already in use" in info.value.message
    assert labelled(engine, state_dir) == []


def test_gpu_request_without_gpu_runtime_is_a_clear_error(engine, busybox_image, state_dir):
    b = make("gpu", httpd_spec(busybox_image, "gpu", free_port(), gpus="all"), state_dir)
    if "nvidia" in (engine.info().get("Runtimes") or {}):
        # An engine with the NVIDIA runtime: the same request must simply work.
        async def run() -> None:
            await b.start()
            await b.wait_ready(30)
            await b.stop(2)

        asyncio.run(run())
        return
    with pytest.raises(BackendError) as info:
        asyncio.run(b.start())
    assert "GPU requested (gpus: all)" in info.value.message
    assert "nvidia" in info.value.message
    assert labelled(engine, state_dir) == []


def test_stale_container_of_this_gateway_is_replaced_on_start(engine, busybox_image, state_dir):
    entry = httpd_spec(busybox_image, "a", free_port())
    first, second = make("a", entry, state_dir), make("a", entry, state_dir)

    async def run() -> None:
        await first.start()
        await first.wait_ready(30)
        await second.start()  # same name, same gateway: the first one's container goes
        await second.wait_ready(30)
        await second.stop(2)

    asyncio.run(run())
    assert first.container_id != second.container_id
    assert gone(engine, first.container_id)
    assert any("removing stale container" in line for line in second.logs.tail(20))


def test_cleanup_orphans_removes_only_this_gateways_containers(engine, busybox_image, state_dir, tmp_path):
    other_dir = tmp_path / "other-gateway"
    other_dir.mkdir()
    mine = make("a", httpd_spec(busybox_image, "a", free_port()), state_dir)
    theirs = make("b", httpd_spec(busybox_image, "b", free_port()), other_dir)
    exited = make("c", failing_spec(busybox_image, "c", free_port()), state_dir)
    try:
        asyncio.run(mine.start())
        asyncio.run(theirs.start())
        asyncio.run(exited.start())
        deadline = time.monotonic() + 10
        while exited.exit_status() is None and time.monotonic() < deadline:
            time.sleep(0.02)

        messages = dk.cleanup_orphans(state_dir, grace_s=2)

        assert sorted(messages) == sorted(
            [
                f"stopped and removed orphaned container {mine.container_name} (model a) left by an earlier gateway",
                f"removed (exited) orphaned container {exited.container_name} (model c) left by an earlier gateway",
            ]
        )
        assert gone(engine, mine.container_id) and gone(engine, exited.container_id)
        assert engine.containers.get(theirs.container_id).status == "running"
        assert dk.cleanup_orphans(state_dir) == []
    finally:
        from tests.docker.conftest import remove_labelled

        remove_labelled(engine, dk.gateway_id(other_dir))


def test_cleanup_leaves_containers_of_a_running_gateway_alone(engine, busybox_image, state_dir):
    """Labels name the gateway's pid and start time; a live gateway keeps its containers."""
    proc = subprocess.Popen(["sleep", "60"])
    try:
        start = psutil.Process(proc.pid).create_time()
        c = engine.containers.run(
            busybox_image,
            ["sleep", "60"],
            detach=True,
            labels={
                dk.LABEL_MODEL: "a",
                dk.LABEL_GATEWAY: dk.gateway_id(state_dir),
                dk.LABEL_GATEWAY_PID: str(proc.pid),
                dk.LABEL_GATEWAY_START: f"{start:.3f}",
            },
        )
        messages = dk.cleanup_orphans(state_dir)
        assert messages == [f"left container {c.name} (model a) alone: its gateway (pid {proc.pid}) is still running"]
        assert engine.containers.get(c.id).status == "running"
    finally:
        proc.kill()
        proc.wait()
    assert dk.cleanup_orphans(state_dir, grace_s=0)[0].startswith(f"stopped and removed orphaned container {c.name}")


def test_host_port_zero_picks_a_free_port_and_port_must_be_published(engine, busybox_image, state_dir):
    entry = httpd_spec(busybox_image, "anywhere", 0)
    del entry["port"]
    b = make("anywhere", entry, state_dir)

    async def run() -> None:
        await b.start()
        await b.wait_ready(30)
        await b.stop(2)

    asyncio.run(run())
    assert b.port not in (None, 0, 8080)
    assert any(f"127.0.0.1:{b.port} -> 8080" in line for line in b.logs.tail(20))

    wrong = make("wrong", {**httpd_spec(busybox_image, "wrong", free_port()), "port": 1}, state_dir)
    with pytest.raises(BackendError) as info:
        asyncio.run(wrong.start())
    assert "`port` 1 is not one of the host ports in `ports`" in info.value.message
    assert labelled(engine, state_dir) == []
