"""Backends: the only code that touches processes and containers."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from vlmswap.backends.base import Backend, BackendError, LogBuffer
from vlmswap.registry.config import GatewaySettings, ModelSpec, Registry

__all__ = ["Backend", "BackendError", "BackendFactory", "LogBuffer", "cleanup_orphans", "create"]

BackendFactory = Callable[[str, ModelSpec, GatewaySettings, LogBuffer, Path], Backend]
"""How the lifecycle gets a backend for a model (`create`; tests pass their own)."""


def create(name: str, spec: ModelSpec, settings: GatewaySettings, logs: LogBuffer, state_dir: Path) -> Backend:
    """The backend for a registry entry (docker is imported only when used)."""
    if spec.backend == "docker":
        from vlmswap.backends.docker import DockerBackend

        return DockerBackend(name, spec, settings, logs, state_dir)
    from vlmswap.backends.process import ProcessBackend

    return ProcessBackend(name, spec, settings, logs, state_dir)


def cleanup_orphans(state_dir: Path, registry: Registry) -> list[str]:
    """Stop backends an earlier gateway left running; one message per backend stopped."""
    from vlmswap.backends import process

    messages = process.cleanup_orphans(state_dir)
    if any(spec.backend == "docker" for spec in registry.models.values()):
        from vlmswap.backends import docker

        messages += docker.cleanup_orphans(state_dir, registry.gateway.docker_host)
    return messages
