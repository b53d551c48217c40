"""The gateway's FastAPI app: OpenAI routes, the admin API, SSE events, metrics.

Every decision lives in the manager (and its scheduler); this module only translates HTTP.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sse_starlette.sse import EventSourceResponse

from vlmswap import __version__
from vlmswap.api import openapi
from vlmswap.api.errors import error_response, install_handlers
from vlmswap.api.openai_types import BODY_MODELS, ModelList
from vlmswap.api.openapi import error_responses
from vlmswap.gateway import proxied_routes, pull
from vlmswap.gateway.guard import OPEN_PATHS, BodyTooLarge, Guard, identity
from vlmswap.gateway.jobs import JobService
from vlmswap.gateway.jobs import router as jobs_router
from vlmswap.gateway.metrics import GatewayMetrics
from vlmswap.gateway.proxy import Proxy, new_pool
from vlmswap.gateway.schemas import Health, Logs, ModelState, SleepResult, Status, UnloadResult
from vlmswap.registry.profiles import OPEN, Identity, Profiles, Usage
from vlmswap.swap.manager import Manager

SSE_PING_S = 15
log = logging.getLogger("vlmswap.gateway")


def _models_list(manager: Manager, who: Identity | None = None) -> dict[str, Any]:
    data = []
    for name, spec in manager.registry.models.items():
        if who is not None and not who.may_use(name):
            continue  # a profile sees the models it may use
        st = manager.models[name]
        data.append(
            {
                "id": spec.served_name,
                "object": "model",
                "created": 0,
                "owned_by": "vlmswap",
                "name": name,
                "aliases": list(spec.aliases),
                "family": spec.family,
                "capabilities": list(spec.capabilities),
                "state": st.state,
                "description": spec.description,
            }
        )
    return {"object": "list", "data": data}


def create_app(
    manager: Manager, *, api_key: str | None = None, max_body_bytes: int | None = None, preload: str | None = None
) -> Guard:
    """The gateway for `manager` (an ASGI app); its lifespan starts the manager and shuts it (and every
    backend) down.

    `preload`: a model to load once started (not waited for; requests queue meanwhile).
    `api_key`: a shorthand for one admin profile, beside the registry's `profiles:`.
    """
    if max_body_bytes is None:
        max_body_bytes = int(manager.settings.max_body_mb * 1024 * 1024)
    profiles = Profiles(manager.registry, api_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        app.state.pool = proxy.pool = new_pool()
        app.state.orphan_messages = await manager.start()
        for msg in app.state.orphan_messages:
            log.warning("%s", msg)
        await app.state.jobs.start()  # picks up the document jobs a stopped gateway left unfinished
        if preload is not None:
            await manager.load(preload, wait=False)
        try:
            yield
        finally:
            await app.state.jobs.stop()  # before the manager: runners leave their pages to the next start
            await manager.shutdown()
            await app.state.pool.aclose()

    app = FastAPI(
        title="vlmswap gateway",
        version=__version__,
        lifespan=lifespan,
        redoc_url=None,
        description="OpenAI-compatible API over several models on one GPU, one resident at a time; "
        "the admin API; switch progress as Server-Sent Events; document OCR.",
    )
    app.state.manager = manager
    app.state.metrics = GatewayMetrics(manager)
    app.state.jobs = JobService(manager)
    app.state.usage = Usage()
    app.state.metrics.watch_usage(app.state.usage)
    install_handlers(app)
    openapi.install(app, BODY_MODELS, bearer_except=OPEN_PATHS if profiles.enabled else None)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(_request: Request, _exc: BodyTooLarge) -> JSONResponse:
        return error_response(
            413,
            f"request body is over the limit of {max_body_bytes} bytes (gateway.max_body_mb)",
            code="body_too_large",
        )

    # --- OpenAI ----------------------------------------------------------------------------

    @app.get("/v1/models", response_model=ModelList, tags=["OpenAI"])
    async def list_models(request: Request) -> dict[str, Any]:
        return _models_list(manager, identity(request.scope))

    # POST /v1/chat/completions and /v1/completions: served by the Proxy middleware (proxy.py),
    # described by never-reached declarations.
    app.include_router(proxied_routes.router)

    # --- admin -----------------------------------------------------------------------------

    @app.get("/health", response_model=Health)
    async def health() -> dict[str, Any]:
        return {"status": "ok", "resident": manager.resident()}

    @app.get("/api/me")
    async def me(request: Request) -> dict[str, Any]:
        """The signed-in profile: its name, whether it is an admin, the models it may use."""
        who = identity(request.scope) or OPEN
        models = [n for n in manager.registry.models if who.may_use(n)]
        return {
            "profile": who.name,
            "admin": who.admin,
            "models": models,
            "priority": who.priority,
            "max_concurrent": who.max_concurrent,
            "requests_per_minute": who.requests_per_minute,
        }

    @app.get("/api/usage")
    async def usage(request: Request) -> dict[str, Any]:
        """Requests, tokens and GPU seconds per profile (an admin sees every profile, others their own)."""
        who = identity(request.scope) or OPEN
        data = app.state.usage.to_dict()
        return {"profiles": data if who.admin else {k: v for k, v in data.items() if k == who.name}}

    @app.get("/api/status", response_model=Status)
    async def status() -> dict[str, Any]:
        return manager.status()

    @app.post(
        "/api/models/{name:path}/load",
        responses={
            200: {"model": ModelState, "description": "ready (or, without wait, already resident)"},
            202: {"model": ModelState, "description": "switch requested"},
            **error_responses(
                {
                    404: "unknown model",
                    409: "a later load superseded this one (wait=true)",
                    502: "the model failed to start (wait=true)",
                    503: "the gateway is not running",
                    504: "not ready within the model's bounds (wait=true)",
                }
            ),
        },
    )
    async def load(name: str, wait: bool = False) -> JSONResponse:
        result = await manager.load(name, wait=wait)
        return JSONResponse(result, status_code=200 if wait or result["state"] == "ready" else 202)

    unloaded: dict[int | str, dict[str, Any]] = {
        200: {"model": UnloadResult, "description": "nothing to unload"},
        202: {"model": UnloadResult, "description": "unloading"},
    }

    @app.post("/api/models/{name:path}/unload", responses={**unloaded, **error_responses({404: "unknown model"})})
    async def unload_model(name: str) -> JSONResponse:
        result = await manager.unload(name)
        return JSONResponse(result, status_code=202 if result["unloading"] else 200)

    @app.post(
        "/api/models/{name:path}/sleep",
        responses={
            200: {"model": SleepResult, "description": "already asleep"},
            202: {"model": SleepResult, "description": "going to sleep after its requests in flight"},
            **error_responses({404: "unknown model", 409: "the model has no sleep mode, or is not awake"}),
        },
    )
    async def sleep_model(name: str) -> JSONResponse:
        result = await manager.sleep(name)
        return JSONResponse(result, status_code=202 if result["sleeping"] else 200)

    @app.post("/api/unload", responses=unloaded)
    async def unload() -> JSONResponse:
        result = await manager.unload()
        return JSONResponse(result, status_code=202 if result["unloading"] else 200)

    @app.get("/api/models/{name:path}/logs", response_model=Logs, responses=error_responses({404: "unknown model"}))
    async def logs(name: str, tail: int = Query(100, ge=0, le=100_000)) -> dict[str, Any]:
        real = manager.resolve(name)
        return {"model": real, "lines": manager.logs(real, tail)}

    @app.get(
        "/api/events",
        response_class=EventSourceResponse,
        responses={
            200: {
                "description": "Server-Sent Events, endless: first `hello` (seq, resident), then every event the "
                "manager publishes (`state`, `switch` phases, ...), its type as the SSE event name, JSON as data",
                "content": {"text/event-stream": {"schema": {"type": "string"}}},
            }
        },
    )
    async def events(request: Request) -> EventSourceResponse:
        sub = manager.subscribe()  # registered now, before the response starts: nothing is missed

        async def stream() -> AsyncIterator[dict[str, Any]]:
            try:
                yield {
                    "event": "hello",
                    "data": json.dumps({"type": "hello", "seq": manager.events.seq, "resident": manager.resident()}),
                }
                async for ev in sub:
                    yield {"id": str(ev["seq"]), "event": ev["type"], "data": json.dumps(ev)}
            finally:
                await sub.aclose()

        return EventSourceResponse(stream(), ping=SSE_PING_S)

    @app.get(
        "/metrics",
        response_class=PlainTextResponse,
        responses={
            200: {
                "description": "Prometheus text exposition format",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }
        },
    )
    async def metrics() -> Response:
        return Response(app.state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    # Documents: /api/ocr, written in its own module; mounted when present.
    if importlib.util.find_spec("vlmswap.gateway.ocr") is not None:
        try:
            from vlmswap.gateway import ocr
        except ImportError as exc:  # a missing optional dependency must not take the gateway down
            log.warning("POST /api/ocr disabled: %s", exc)
        else:
            app.include_router(ocr.router)
    app.include_router(jobs_router)  # /api/jobs: documents as resumable jobs (gateway/jobs.py)

    app.include_router(pull.router)  # /api/models/{name}/pull: model files fetched ahead of a switch

    # Proxy and Guard wrap the FastAPI app rather than sit in its middleware stack: proxied
    # requests then skip Starlette's ServerErrorMiddleware and FastAPI's layers (CPU per request,
    # see bench/README.md, Gateway). Everything else, lifespan included, passes through to `app`.
    proxy = Proxy(app, manager=manager, metrics=app.state.metrics, usage=app.state.usage)
    return Guard(proxy, profiles=profiles, max_body_bytes=max_body_bytes)


__all__ = ["create_app"]
