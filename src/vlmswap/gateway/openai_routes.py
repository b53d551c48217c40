"""The OpenAI routes: `GET /v1/models` served here, the two completion routes declared here.

The gateway answers POST /v1/chat/completions and /v1/completions in its plain-ASGI proxy
(`proxy.py`), before FastAPI routes anything, so these declarations are never reached. Why
declarations rather than paths spliced into the generated document: FastAPI builds their
entries from the same models and response tables as every other route (the worker uses the
same `completion_route_doc`), and the app's route table then lists every path it serves, so
a test can hold the document to it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fastapi import APIRouter, Request

from vlmswap.api.errors import APIError
from vlmswap.api.openai_types import ModelList, completion_route_doc
from vlmswap.gateway import state
from vlmswap.gateway.guard import identity
from vlmswap.registry.config import ModelSpec
from vlmswap.registry.profiles import Identity
from vlmswap.swap.states import ModelState

ERRORS = {
    400: "invalid request: not JSON, no `model`, or the backend refused a field",
    404: "`model` is none of the ids GET /v1/models lists",
    413: "request body over gateway.max_body_mb",
    502: "the model's backend failed to start, or died or dropped the connection during the request",
    503: "queue full, the model is unavailable here or backing off after a failed start, or the gateway is "
    "shutting down (Retry-After says when to try again)",
}

router = APIRouter(tags=["OpenAI"])


def models_list(models: Mapping[str, ModelSpec], states: Mapping[str, str], who: Identity | None) -> dict[str, Any]:
    """`/v1/models` in OpenAI's shape, with vlmswap's fields: the models `who` may use (None: all), each in
    its state (one gateway's, or a cluster's)."""
    data = [
        {
            "id": spec.served_name,
            "object": "model",
            "created": 0,
            "owned_by": "vlmswap",
            "name": name,
            "aliases": list(spec.aliases),
            "family": spec.family,
            "capabilities": list(spec.capabilities),
            "state": states.get(name, ModelState.STOPPED),
            "description": spec.description,
        }
        for name, spec in models.items()
        if who is None or who.may_use(name)
    ]
    return {"object": "list", "data": data}


@router.get("/v1/models", response_model=ModelList)
async def list_models(request: Request) -> dict[str, Any]:
    """The models this caller may use (a profile sees its own), with their state."""
    manager = state.manager(request)
    states = {name: m.state for name, m in manager.models.items()}
    return models_list(manager.registry.models, states, identity(request.scope))


def _not_proxied() -> APIError:
    return APIError(500, "this route is served by the gateway's proxy; the request bypassed it", code="not_proxied")


@router.post("/v1/chat/completions", **completion_route_doc("chat", errors=ERRORS))
async def chat_completions() -> None:
    """Chat with a model (text and `data:` images); the gateway queues, switches and passes it through."""
    raise _not_proxied()


@router.post("/v1/completions", **completion_route_doc("completion", errors=ERRORS))
async def completions() -> None:
    """Complete a prompt; the gateway queues, switches and passes it through."""
    raise _not_proxied()


__all__ = ["ERRORS", "models_list", "router"]
