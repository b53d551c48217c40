"""The OpenAI completion routes as the gateway's OpenAPI document describes them.

The gateway answers POST /v1/chat/completions and /v1/completions in its plain-ASGI proxy
(`proxy.py`), before FastAPI routes anything, so these declarations are never reached. Why
declarations rather than paths spliced into the generated document: FastAPI builds their
entries from the same models and response tables as every other route (the worker uses the
same `completion_route_doc`), and the app's route table then lists every path it serves, so
a test can hold the document to it.
"""

from __future__ import annotations

from fastapi import APIRouter

from vlmswap.api.errors import APIError
from vlmswap.api.openai_types import completion_route_doc

ERRORS = {
    400: "invalid request: not JSON, no `model`, or the backend refused a field",
    404: "`model` is none of the ids GET /v1/models lists",
    413: "request body over gateway.max_body_mb",
    502: "the model's backend failed to start, or died or dropped the connection during the request",
    503: "queue full, the model is unavailable here or backing off after a failed start, or the gateway is "
    "shutting down (Retry-After says when to try again)",
}

router = APIRouter(tags=["OpenAI"])


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


__all__ = ["ERRORS", "router"]
