"""Test images made locally: no registry is reachable from the test machines.

One tiny image, imported from a rootfs tarball built here from Debian's busybox-static:
`/bin/busybox` and its applets (sh, httpd, ...), `/tmp`, and `/lib`, `/lib64` as the same
symlinks into `/usr` the host has. Plain, it serves static `/health` and `/v1/models`
files with `busybox httpd`. With the host's Python prefix, the venv, the project and `/usr`
bind-mounted read-only at the same paths, it runs the real vlmswap worker: the paths come
from `sys.prefix` / `sys.base_prefix`, never from where this checkout happens to be.
"""

from __future__ import annotations

import hashlib
import io
import os
import subprocess
import sys
import tarfile
from pathlib import Path

import docker

BUSYBOX = "/bin/busybox"
REPO = "vlmswap-test/busybox"


def _applets() -> list[str]:
    out = subprocess.run([BUSYBOX, "--list"], check=True, capture_output=True, text=True).stdout
    return sorted({a.strip() for a in out.split() if a.strip() and "/" not in a})


def _usr_links() -> dict[str, str]:
    """`/lib` and `/lib64` as on the host when they point into /usr (merged /usr)."""
    links = {}
    for name in ("lib", "lib64"):
        p = Path("/") / name
        if p.is_symlink():
            links[name] = os.readlink(p)
    return links


def rootfs_tar() -> bytes:
    """The image's root filesystem as an uncompressed tar, deterministic for one host."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:

        def add_dir(name: str, mode: int = 0o755) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, mode, 0
            tar.addfile(info)

        def add_link(name: str, target: str) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.linkname, info.mode, info.mtime = tarfile.SYMTYPE, target, 0o777, 0
            tar.addfile(info)

        for d in ("bin", "etc", "tmp", "usr", "www", "www/v1", "root", "proc", "sys", "dev"):
            add_dir(d, 0o1777 if d == "tmp" else 0o755)
        data = Path(BUSYBOX).read_bytes()
        info = tarfile.TarInfo("bin/busybox")
        info.size, info.mode, info.mtime = len(data), 0o755, 0
        tar.addfile(info, io.BytesIO(data))
        for applet in _applets():
            if applet != "busybox":
                add_link(f"bin/{applet}", "busybox")
        for name, target in _usr_links().items():
            add_link(name, target)
        for name, text in (("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"), ("etc/group", "root:x:0:\n")):
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(raw), 0o644, 0
            tar.addfile(info, io.BytesIO(raw))
    return buf.getvalue()


def ensure_busybox_image(client: docker.DockerClient) -> str:
    """Import the image once per rootfs content; later calls (and later sessions) reuse it."""
    data = rootfs_tar()
    tag = hashlib.sha256(data).hexdigest()[:12]
    ref = f"{REPO}:{tag}"
    try:
        client.images.get(ref)
        return ref
    except docker.errors.ImageNotFound:
        pass
    client.api.import_image_from_data(data, repository=REPO, tag=tag, changes=["ENV PATH=/bin", "WORKDIR /tmp"])
    client.images.get(ref)  # raises if the import did not produce it
    return ref


def host_python_volumes() -> dict[str, str]:
    """Read-only bind mounts that let the image run this interpreter, venv and project."""
    import vlmswap

    mounts = {"/usr": "/usr:ro"}
    tests_root = Path(__file__).resolve().parents[2]  # tests/servers/fault_server.py lives here
    for path in (Path(sys.base_prefix), Path(sys.prefix), Path(vlmswap.__file__).resolve().parents[2], tests_root):
        p = str(path.resolve())
        if any(p == m or p.startswith(m.rstrip("/") + "/") for m in mounts):
            continue
        mounts = {k: v for k, v in mounts.items() if not k.startswith(p + "/")}
        mounts[p] = f"{p}:ro"
    for name in ("lib", "lib64"):
        if not (Path("/") / name).is_symlink() and (Path("/") / name).is_dir():
            mounts[f"/{name}"] = f"/{name}:ro"
    return mounts
