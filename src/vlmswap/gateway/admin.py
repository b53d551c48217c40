"""The gateway's own API: health, who is asking, usage, status, load/unload/sleep, logs, events, metrics.

Routes only: each asks the manager (or the usage counts) and translates the answer to HTTP.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from sse_starlette.sse import EventSourceResponse

from vlmswap.api.openapi import error_responses
from vlmswap.gateway import state
from vlmswap.gateway.guard import identity
from vlmswap.gateway.schemas import Health, Logs, ModelStatus, SleepResult, Status, UnloadResult
from vlmswap.registry.profiles import OPEN

SSE_PING_S = 15

router = APIRouter()

LOAD_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": ModelStatus, "description": "ready (or, without wait, already resident)"},
    202: {"model": ModelStatus, "description": "switch requested"},
    **error_responses(
        {
            404: "unknown model",
            409: "a later load superseded this one (wait=true)",
            502: "the model failed to start (wait=true)",
            503: "the gateway is not running",
            504: "not ready within the model's bounds (wait=true)",
        }
    ),
}
UNLOAD_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": UnloadResult, "description": "nothing to unload"},
    202: {"model": UnloadResult, "description": "unloading"},
}
SLEEP_ANSWERS: dict[int | str, dict[str, Any]] = {
    200: {"model": SleepResult, "description": "already asleep"},
    202: {"model": SleepResult, "description": "going to sleep after its requests in flight"},
    **error_responses({404: "unknown model", 409: "the model has no sleep mode, or is not awake"}),
}
EVENTS_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Server-Sent Events, endless: first `hello` (seq, resident), then every event the "
        "manager publishes (`state`, `switch` phases, ...), its type as the SSE event name, JSON as data",
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    }
}
METRICS_ANSWER: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Prometheus text exposition format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
}


@router.get("/health", response_model=Health)
async def health(request: Request) -> dict[str, Any]:
    return {"status": "ok", "resident": state.manager(request).resident()}


@router.get("/api/me")
async def me(request: Request) -> dict[str, Any]:
    """The signed-in profile: its name, whether it is an admin, the models it may use."""
    who = identity(request.scope) or OPEN
    return {
        "profile": who.name,
        "admin": who.admin,
        "models": [n for n in state.manager(request).registry.models if who.may_use(n)],
        "priority": who.priority,
        "max_concurrent": who.max_concurrent,
        "requests_per_minute": who.requests_per_minute,
    }


@router.get("/api/usage")
async def usage(request: Request) -> dict[str, Any]:
    """Requests, tokens and GPU seconds per profile (an admin sees every profile, others their own)."""
    who = identity(request.scope) or OPEN
    data = state.usage(request).to_dict()
    return {"profiles": data if who.admin else {k: v for k, v in data.items() if k == who.name}}


@router.get("/api/status", response_model=Status)
async def status(request: Request) -> dict[str, Any]:
    return state.manager(request).status()


@router.post("/api/models/{name:path}/load", responses=LOAD_ANSWERS)
async def load(request: Request, name: str, wait: bool = False) -> JSONResponse:
    result = await state.manager(request).load(name, wait=wait)
    return JSONResponse(result, status_code=200 if wait or result["state"] == "ready" else 202)


@router.post("/api/models/{name:path}/unload", responses={**UNLOAD_ANSWERS, **error_responses({404: "unknown model"})})
async def unload_model(request: Request, name: str) -> JSONResponse:
    result = await state.manager(request).unload(name)
    return JSONResponse(result, status_code=202 if result["unloading"] else 200)


@router.post("/api/models/{name:path}/sleep", responses=SLEEP_ANSWERS)
async def sleep_model(request: Request, name: str) -> JSONResponse:
    result = await state.manager(request).sleep(name)
    return JSONResponse(result, status_code=202 if result["sleeping"] else 200)


@router.post("/api/unload", responses=UNLOAD_ANSWERS)
async def unload(request: Request) -> JSONResponse:
    result = await state.manager(request).unload()
    return JSONResponse(result, status_code=202 if result["unloading"] else 200)


@router.get("/api/models/{name:path}/logs", response_model=Logs, responses=error_responses({404: "unknown model"}))
async def logs(request: Request, name: str, tail: int = Query(100, ge=0, le=100_000)) -> dict[str, Any]:
    manager = state.manager(request)
    real = manager.resolve(name)
    return {"model": real, "lines": manager.logs(real, tail)}


@router.get("/api/events", response_class=EventSourceResponse, responses=EVENTS_ANSWER)
async def events(request: Request) -> EventSourceResponse:
    manager = state.manager(request)
    sub = manager.subscribe()  # registered now, before the response starts: nothing is missed

    async def stream() -> AsyncIterator[dict[str, Any]]:
        try:
            hello = {"type": "hello", "seq": manager.events.seq, "resident": manager.resident()}
            yield {"event": "hello", "data": json.dumps(hello)}
            async for ev in sub:
                yield {"id": str(ev["seq"]), "event": ev["type"], "data": json.dumps(ev)}
        finally:
            await sub.aclose()

    return EventSourceResponse(stream(), ping=SSE_PING_S)


@router.get("/metrics", response_class=PlainTextResponse, responses=METRICS_ANSWER)
async def metrics(request: Request) -> Response:
    return Response(state.metrics(request).render(), media_type="text/plain; version=0.0.4; charset=utf-8")


__all__ = ["router"]
