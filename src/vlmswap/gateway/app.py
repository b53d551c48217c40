"""The gateway's ASGI app: the routers, the objects they share, and the lifespan that runs the manager.

Every decision lives in the manager (and its scheduler); the routes only translate HTTP, and
every request for model work enters through the one `Admission` (the proxy's chat and
completions, `/api/ocr`, each page of a document job).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from vlmswap import __version__
from vlmswap.api import openapi
from vlmswap.api.errors import error_response, install_handlers
from vlmswap.api.openai_types import BODY_MODELS
from vlmswap.gateway import admin, jobs, ocr, openai_routes, pull
from vlmswap.gateway.guard import OPEN_PATHS, BodyTooLarge, Guard
from vlmswap.gateway.jobs_runner import JobService, LeasedPages
from vlmswap.gateway.metrics import GatewayMetrics
from vlmswap.gateway.proxy import Proxy, new_pool
from vlmswap.registry.profiles import Profiles, Usage
from vlmswap.swap.admission import Admission
from vlmswap.swap.manager import Manager

log = logging.getLogger("vlmswap.gateway")

ROUTERS = (
    openai_routes.router,  # GET /v1/models; the completion routes are the proxy's
    admin.router,  # health, me, usage, status, load/unload/sleep, logs, events, metrics
    ocr.router,  # POST /api/ocr
    jobs.router,  # /api/jobs: documents as resumable jobs
    pull.router,  # /api/models/{name}/pull: model files fetched ahead of a switch
)


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
    app = FastAPI(
        title="vlmswap gateway",
        version=__version__,
        lifespan=lifespan,
        redoc_url=None,
        description="OpenAI-compatible API over several models on one GPU, one resident at a time; "
        "the admin API; switch progress as Server-Sent Events; document OCR.",
    )
    share(app, manager, profiles, preload)
    install_handlers(app)
    app.add_exception_handler(BodyTooLarge, too_large(max_body_bytes))
    openapi.install(app, BODY_MODELS, bearer_except=OPEN_PATHS if profiles.enabled else None)
    for router in ROUTERS:
        app.include_router(router)
    # Proxy and Guard wrap the FastAPI app rather than sit in its middleware stack: proxied
    # requests then skip Starlette's ServerErrorMiddleware and FastAPI's layers (CPU per request,
    # see bench/README.md, Gateway). Everything else, lifespan included, passes through to `app`.
    app.state.proxy = Proxy(app, app.state.admission)
    return Guard(app.state.proxy, profiles=profiles, max_body_bytes=max_body_bytes)


def share(app: FastAPI, manager: Manager, profiles: Profiles, preload: str | None) -> None:
    """The objects the routes share (`gateway.state` reads them back, typed)."""
    st = app.state
    st.manager = manager
    st.profiles = profiles
    st.preload = preload
    st.usage = Usage()
    st.metrics = GatewayMetrics(manager)
    st.metrics.watch_usage(st.usage)
    st.admission = Admission(manager, st.usage, st.metrics)
    st.jobs = JobService(
        registry=manager.registry,
        events=manager.events,
        profiles=profiles,
        pages=LeasedPages(st.admission),
        store_dir=manager.state_dir / "jobs",
    )


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    st = app.state
    st.pool = st.proxy.pool = new_pool()
    st.orphan_messages = await st.manager.start()
    for msg in st.orphan_messages:
        log.warning("%s", msg)
    await st.jobs.start()  # picks up the document jobs a stopped gateway left unfinished
    if st.preload is not None:
        await st.manager.load(st.preload, wait=False)
    try:
        yield
    finally:
        await st.jobs.stop()  # before the manager: runners leave their pages to the next start
        await st.manager.shutdown()
        await st.pool.aclose()


def too_large(max_body_bytes: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
    async def handler(_request: Request, _exc: Exception) -> JSONResponse:
        return error_response(
            413,
            f"request body is over the limit of {max_body_bytes} bytes (gateway.max_body_mb)",
            code="body_too_large",
        )

    return handler


__all__ = ["create_app"]
