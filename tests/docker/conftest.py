"""Fixtures for the container tests: a real Docker engine, images made here, model specs.

No skips: when the engine is not there these tests fail and say how to start it, because
a skipped container test would look like a passing one.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.docker.images import ensure_busybox_image, host_python_volumes
from tests.support import ROOT
from vlmswap.backends import docker as dk
from vlmswap.registry.config import ModelSpec

# A vLLM-shaped server in ~10 lines of sh: static /health and /v1/models, served by
# busybox httpd; SIGTERM ends it at once (sh with a trap as pid 1 forwards nothing, it exits).
HTTPD_SCRIPT = (
    'echo "model $SERVED_NAME loading"; sleep "${DELAY:-0}"; mkdir -p /www/v1; '
    'printf \'{"object":"list","data":[{"id":"%s"}]}\' "$SERVED_NAME" > /www/v1/models; '
    'echo ok > /www/health; trap "$ON_TERM" TERM; httpd -f -p "$PORT" -h /www & '
    'echo "model $SERVED_NAME listening on $PORT"; wait'
)
CONTAINER_PORT = 8080
FAULT_SERVER = ROOT / "tests" / "servers" / "fault_server.py"


@pytest.fixture(scope="session")
def engine() -> Iterator[Any]:
    try:
        client = dk.connect()
    except Exception as exc:
        pytest.fail(
            f"the docker tests need a running Docker engine ({exc}); start it with "
            f"`dockerd >/tmp/dockerd.log 2>&1 &` or `make system-deps`",
            pytrace=False,
        )
    yield client
    client.close()


@pytest.fixture(scope="session")
def busybox_image(engine: Any) -> str:
    return ensure_busybox_image(engine)


@pytest.fixture
def state_dir(tmp_path: Path, engine: Any) -> Iterator[Path]:
    """A gateway state dir; whatever containers carry its gateway id are removed afterwards."""
    d = tmp_path / "state"
    d.mkdir()
    yield d
    remove_labelled(engine, dk.gateway_id(d))


def remove_labelled(engine: Any, gid: str) -> None:
    import docker

    for c in engine.containers.list(all=True, filters={"label": f"{dk.LABEL_GATEWAY}={gid}"}):
        with contextlib.suppress(docker.errors.NotFound):
            c.remove(force=True)


def httpd_spec(
    image: str, served_name: str, host_port: int, *, delay: float = 0.0, ignore_term: bool = False, **extra: Any
) -> dict[str, Any]:
    """Registry entry (a dict, as YAML would give) of a busybox httpd 'model' container."""
    return {
        "served_name": served_name,
        "backend": "docker",
        "image": image,
        "command": ["sh", "-c", HTTPD_SCRIPT],
        "env": {
            "SERVED_NAME": "${SERVED_NAME}",
            "PORT": "${PORT}",
            "DELAY": str(delay),
            "ON_TERM": "" if ignore_term else "echo got SIGTERM; exit 0",
        },
        "ports": {CONTAINER_PORT: host_port},
        "port": host_port,
        "startup_timeout_s": 30,
        **extra,
    }


def failing_spec(image: str, served_name: str, host_port: int, code: int = 3) -> dict[str, Any]:
    script = (
        f'echo "loading weights for $SERVED_NAME"; echo "RuntimeError: CUDA out of memory" >&2; sleep 0.2; exit {code}'
    )
    return {
        "served_name": served_name,
        "backend": "docker",
        "image": image,
        "command": ["sh", "-c", script],
        "env": {"SERVED_NAME": "${SERVED_NAME}"},
        "ports": {CONTAINER_PORT: host_port},
        "port": host_port,
        "startup_timeout_s": 30,
    }


def worker_spec(image: str, served_name: str, host_port: int) -> dict[str, Any]:
    """The real vlmswap worker (rapidocr engine) in the busybox image, on the host's Python."""
    return {
        "served_name": served_name,
        "backend": "docker",
        "image": image,
        "command": [
            "${PYTHON}",
            "-m",
            "vlmswap",
            "worker",
            "--engine",
            "rapidocr",
            "--host",
            "0.0.0.0",
            "--port",
            "${PORT}",
            "--served-model-name",
            "${SERVED_NAME}",
        ],
        "env": {"HOME": "/tmp", "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"},
        "volumes": host_python_volumes(),
        "ports": {CONTAINER_PORT: host_port},
        "port": host_port,
        "startup_timeout_s": 120,
        "family": "rapidocr",
        "capabilities": ["ocr", "layout", "chat"],
    }


def fault_server_spec(image: str, served_name: str, host_port: int, *flags: str) -> dict[str, Any]:
    """tests/servers/fault_server.py (vLLM's HTTP protocol, faults on demand) in a container."""
    return {
        "served_name": served_name,
        "backend": "docker",
        "image": image,
        "command": [
            "${PYTHON}",
            str(FAULT_SERVER),
            "--host",
            "0.0.0.0",
            "--port",
            "${PORT}",
            "--served-model-name",
            "${SERVED_NAME}",
            *flags,
        ],
        "env": {"HOME": "/tmp", "PYTHONUNBUFFERED": "1"},
        "volumes": host_python_volumes(),
        "ports": {CONTAINER_PORT: host_port},
        "port": host_port,
        "startup_timeout_s": 60,
    }


def fault_process_spec(served_name: str, *flags: str) -> dict[str, Any]:
    """The same server as a plain process (process backend, free port)."""
    return {
        "served_name": served_name,
        "cmd": ["${PYTHON}", str(FAULT_SERVER), "--port", "${PORT}", "--served-model-name", "${SERVED_NAME}", *flags],
        "startup_timeout_s": 60,
    }


def spec_of(entry: dict[str, Any]) -> ModelSpec:
    return ModelSpec.model_validate(entry)
