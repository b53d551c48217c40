"""Which GPU devices a model's container gets, per vendor, as the real engine reports and the container sees.

There is no AMD GPU here, so /dev/kfd and /dev/dri/renderD128 are device nodes made for the
test (the null and zero devices' numbers, owned by a made-up render group); the engine maps
them into the container exactly as it would ROCm's, and the container lists what it got.
"""

from __future__ import annotations

import asyncio
import grp
import os
import stat
from pathlib import Path

import pytest

from tests.docker.conftest import HTTPD_SCRIPT, httpd_spec
from tests.docker.test_backend import labelled, make
from tests.support import free_port
from vlmswap.backends import docker as dk
from vlmswap.backends.base import BackendError

pytestmark = pytest.mark.docker
RENDER_GID = 4242  # no such group on the host: only the device node says it


@pytest.fixture
def rocm_nodes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, Path]:
    dev = tmp_path / "dev"
    (dev / "dri").mkdir(parents=True)
    kfd, render = dev / "kfd", dev / "dri" / "renderD128"
    os.mknod(kfd, 0o666 | stat.S_IFCHR, os.makedev(1, 5))  # needs root, as the Docker tests do
    os.mknod(render, 0o660 | stat.S_IFCHR, os.makedev(1, 3))
    os.chown(render, 0, RENDER_GID)
    monkeypatch.setattr(dk, "KFD", str(kfd))
    monkeypatch.setattr(dk, "DRI", str(dev / "dri"))
    return kfd, dev / "dri"


def amd_spec(image: str, port: int, gpus: object) -> dict:
    entry = httpd_spec(image, "rocm-model", port, gpus=gpus, gpu_vendor="amd")
    listing = 'ls -ln /dev/kfd /dev/dri; echo "groups: $(id -G)"; echo "visible: ${ROCR_VISIBLE_DEVICES:-all}"; '
    entry["command"] = ["sh", "-c", listing + HTTPD_SCRIPT]
    return entry


def test_amd_container_gets_kfd_dri_and_the_groups_that_own_them(engine, busybox_image, state_dir, rocm_nodes):
    kfd, dri = rocm_nodes
    b = make("rocm", amd_spec(busybox_image, free_port(), "all"), state_dir)

    async def run() -> dict:
        await b.start()
        await b.wait_ready(30)
        host_config = engine.api.inspect_container(b.container_id)["HostConfig"]
        await b.stop(2)
        return host_config

    hc = asyncio.run(run())
    devices = {(d["PathOnHost"], d["PathInContainer"], d["CgroupPermissions"]) for d in hc["Devices"]}
    assert devices == {(str(kfd), "/dev/kfd", "rwm"), (str(dri), "/dev/dri", "rwm")}
    video = [str(grp.getgrnam("video").gr_gid)] if "video" in {g.gr_name for g in grp.getgrall()} else []
    assert hc["GroupAdd"] == [*video, str(RENDER_GID)]
    assert not hc.get("DeviceRequests")  # no NVIDIA request on the AMD path
    log = "\n".join(b.logs.tail(50))
    assert "/dev/kfd" in log and "renderD128" in log  # the container really has the nodes
    assert str(RENDER_GID) in next(line for line in log.splitlines() if line.startswith("groups:"))
    assert "visible: all" in log


def test_amd_with_device_ids_sets_rocr_visible_devices(engine, busybox_image, state_dir, rocm_nodes):
    b = make("rocm-one", amd_spec(busybox_image, free_port(), [1]), state_dir)

    async def run() -> None:
        await b.start()
        await b.wait_ready(30)
        await b.stop(2)

    asyncio.run(run())
    assert "visible: 1" in "\n".join(b.logs.tail(50))


def test_nvidia_vendor_asks_for_device_requests(engine, busybox_image, state_dir):
    """Created, not started (no NVIDIA runtime here): the request the engine holds is the NVIDIA one."""
    options, env = dk.gpu_options("m", "0,2", "nvidia")
    labels = {dk.LABEL_GATEWAY: dk.gateway_id(state_dir)}
    c = engine.containers.create(busybox_image, ["true"], labels=labels, **options)
    try:
        reqs = engine.api.inspect_container(c.id)["HostConfig"]["DeviceRequests"]
    finally:
        c.remove(force=True)
    assert env == {}
    assert [(r["DeviceIDs"], r["Capabilities"]) for r in reqs] == [(["0", "2"], [["gpu"]])]


def test_amd_without_the_rocm_driver_is_a_clear_error(engine, busybox_image, state_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(dk, "KFD", str(tmp_path / "no-kfd"))
    monkeypatch.setattr(dk, "DRI", str(tmp_path / "no-dri"))
    b = make("rocm", amd_spec(busybox_image, free_port(), "all"), state_dir)
    with pytest.raises(BackendError) as info:
        asyncio.run(b.start())
    assert "AMD GPU requested (gpus: all)" in info.value.message
    assert "the ROCm kernel driver (amdgpu) is not loaded" in info.value.message
    assert labelled(engine, state_dir) == []
