"""The gateway: a thin HTTP layer (FastAPI) over the manager. Routes only; no decisions."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["create_app"]

if TYPE_CHECKING:
    from vlmswap.gateway.app import create_app


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from vlmswap.gateway.app import create_app

        return create_app
    raise AttributeError(name)
