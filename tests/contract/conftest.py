"""The API contract: both apps' OpenAPI documents, and schemathesis against real processes."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.routing import BaseRoute, Route

from vlmswap.gateway import create_app
from vlmswap.gateway.proxy import PATHS as PROXIED_PATHS
from vlmswap.registry.config import load_registry
from vlmswap.swap.manager import Manager
from vlmswap.worker.engines.rapidocr_engine import RapidOCREngine
from vlmswap.worker.server import create_app as create_worker_app


def gateway_fastapi(tmp: Path, api_key: str | None = None) -> FastAPI:
    """The FastAPI app inside the gateway's ASGI stack (Guard -> Proxy -> FastAPI), not started."""
    manager = Manager(load_registry(None), state_dir=tmp / "state")
    guard: Any = create_app(manager, api_key=api_key)
    return guard.app.app  # type: ignore[no-any-return]


def worker_fastapi() -> FastAPI:
    return create_worker_app(RapidOCREngine(), "rapidocr")


def served_operations(app: FastAPI, extra_paths: frozenset[str] = frozenset()) -> set[tuple[str, str]]:
    """(METHOD, path) for every route `app` answers, in OpenAPI's path spelling ({name:path} -> {name}).

    FastAPI's own documentation routes (/openapi.json, /docs) are left out: they serve the document.
    """
    own = {app.openapi_url, app.docs_url, app.swagger_ui_oauth2_redirect_url, app.redoc_url}
    ops = {("POST", p) for p in extra_paths}
    for route in app.routes:
        if isinstance(route, BaseRoute) and getattr(route, "path", None) in own:
            continue
        assert isinstance(route, Route), f"{route!r}: a route the document cannot list method by method"
        path = route.path.replace(":path}", "}")
        ops |= {(m, path) for m in route.methods or () if m != "HEAD"}
    return ops


def documented_operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in doc["paths"].items() for method in item}


__all__ = ["PROXIED_PATHS", "documented_operations", "gateway_fastapi", "served_operations", "worker_fastapi"]
