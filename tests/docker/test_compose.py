"""deploy/compose.yaml validates with Compose itself and mirrors deploy/registry.docker.yaml."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support import ROOT
from vlmswap.registry.config import load_registry, render_argv

pytestmark = pytest.mark.docker

COMPOSE = ROOT / "deploy" / "compose.yaml"
REGISTRY = ROOT / "deploy" / "registry.docker.yaml"


def compose_cmd() -> list[str]:
    """`docker compose` (the CLI plugin) when present, else Debian's `docker-compose`."""
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    legacy = shutil.which("docker-compose")
    if legacy:
        return [legacy]
    pytest.fail(
        "neither `docker compose` nor `docker-compose` is installed; `make system-deps` installs "
        "Debian's docker-compose",
        pytrace=False,
    )


def compose_config(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*compose_cmd(), "-f", str(path), "config"], capture_output=True, text=True, timeout=60)


@pytest.fixture(scope="module")
def config() -> dict[str, Any]:
    """The file as Compose resolves it (anchors merged, ports and volumes in one syntax)."""
    out = compose_config(COMPOSE)
    assert out.returncode == 0, out.stderr
    return yaml.safe_load(out.stdout)


def test_compose_file_validates_and_an_invalid_one_does_not(tmp_path):
    assert compose_config(COMPOSE).returncode == 0
    broken = tmp_path / "compose.yaml"
    broken.write_text(COMPOSE.read_text().replace("    init: true", "    initt: true"))
    out = compose_config(broken)
    assert out.returncode != 0 and "initt" in out.stderr + out.stdout


def test_plain_up_starts_only_the_gateway(config):
    registry = load_registry(REGISTRY)
    docker_models = {n for n, s in registry.models.items() if s.backend == "docker"}
    services = config["services"]
    assert set(services) == docker_models | {"gateway"}
    assert "profiles" not in services["gateway"]
    for name in docker_models:
        assert services[name]["profiles"] == ["models"], name


def test_gateway_service_manages_the_engine_with_the_docker_registry(config):
    gw = config["services"]["gateway"]
    mounts = _mounts(gw["volumes"])
    assert ("/var/run/docker.sock", "/var/run/docker.sock", False) in mounts
    inside = next(dst for src, dst, ro in mounts if src == str(REGISTRY) and ro)
    assert gw["command"][:3] == ["serve", "--config", inside]
    host = gw["command"][gw["command"].index("--host") + 1]
    assert host == "127.0.0.1"
    assert gw["network_mode"] == "host"  # reaches the models on 127.0.0.1:<port>, as the registry says
    assert gw["environment"]["VLMSWAP_STATE_DIR"] in {dst for _src, dst, _ro in mounts}


def _published(ports: list[Any]) -> dict[int, tuple[str, int]]:
    """Compose's normalised ports -> {container: (ip, host)}; v1 gives `ip:host:container/tcp`
    strings, v2 (the CLI plugin) gives mappings."""
    out = {}
    for p in ports:
        if isinstance(p, dict):
            out[int(p["target"])] = (p.get("host_ip", ""), int(p["published"]))
        else:
            ip, host, container = str(p).removesuffix("/tcp").split(":")
            out[int(container)] = (ip, int(host))
    return out


def _mounts(volumes: list[Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) from either Compose's short strings or v2's mappings."""
    out = []
    for v in volumes:
        if isinstance(v, dict):
            out.append((v["source"], v["target"], bool(v.get("read_only"))))
        else:
            src, dst, mode = ([*v.split(":"), "rw"])[:3]
            out.append((src, dst, mode == "ro"))
    return out


def _gpu_devices(devices: list[dict[str, Any]]) -> list[tuple[str, str, list[str]]]:
    return [
        (
            d.get("driver", ""),
            "all" if d.get("count") in ("all", -1) else str(d.get("count")),
            d.get("capabilities", []),
        )
        for d in devices
    ]


def test_model_services_match_the_docker_registry(config):
    registry = load_registry(REGISTRY)
    named_volumes = {key: (v or {}).get("name", key) for key, v in config["volumes"].items()}
    checked = 0
    for name, spec in registry.models.items():
        if spec.backend != "docker":
            continue
        svc = config["services"][name]
        assert svc["image"] == spec.image, name
        published = _published(svc["ports"])
        assert published == {c: ("127.0.0.1", h) for c, h in spec.ports.items()}, name
        assert spec.port in spec.ports.values()
        container_port = next(c for c, h in spec.ports.items() if h == spec.port)
        argv, env = render_argv(
            spec.command or [], spec.env, {"PORT": str(container_port), "SERVED_NAME": spec.served_name, "MODEL": name}
        )
        assert svc["command"] == argv, name
        assert svc["environment"] == env, name
        assert env["VLLM_SERVER_DEV_MODE"] == "1" and "--enable-sleep-mode" in argv
        compose_volumes = {named_volumes.get(src, src): dst for src, dst, _ro in _mounts(svc["volumes"])}
        assert compose_volumes == spec.volumes, name
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert spec.gpus == "all"
        assert _gpu_devices(devices) == [("nvidia", "all", ["gpu"])], name
        assert svc.get("ipc") == spec.ipc, name
        checked += 1
    assert checked == 4


def _vllm_flags(argv: list[str]) -> list[str]:
    """A vLLM command line without what legitimately differs: entry point, model spelling, --host."""
    args = list(argv)
    if args[:2] == ["vllm", "serve"]:
        args = ["--model", *args[2:]]
    i = args.index("--host")
    del args[i : i + 2]
    return args


def test_docker_registry_uses_the_default_registry_arguments():
    default = load_registry(None)
    docker = load_registry(REGISTRY)
    for name, spec in docker.models.items():
        if spec.backend != "docker":
            continue
        seed = default.models[name]
        assert spec.served_name == seed.served_name and spec.port == seed.port, name
        assert _vllm_flags(spec.command or []) == _vllm_flags(seed.cmd or []), name
        assert spec.command[spec.command.index("--host") + 1] == "0.0.0.0"  # published on 127.0.0.1 only
        assert spec.env == seed.env, name
        assert (spec.family, spec.capabilities, spec.sleep_mode) == (seed.family, seed.capabilities, seed.sleep_mode)


def test_docker_registry_validates_with_the_cli():
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "vlmswap", "config", "check", str(REGISTRY)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "ok (5 models)" in out.stdout
