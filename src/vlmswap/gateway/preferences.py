"""`GET/PUT /api/me/preferences`: the signed-in profile's preferences (registry/preferences.py).

Every profile reads and writes only its own; no admin right is needed. The body is checked
twice: its shape by pydantic (unknown fields, bad values: 400), its models against the
registry and what the profile may use (400 naming the field).
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request

from vlmswap.api.errors import APIError
from vlmswap.api.openapi import error_responses
from vlmswap.gateway import state
from vlmswap.gateway.guard import identity
from vlmswap.registry.preferences import Preferences, check_models
from vlmswap.registry.profiles import OPEN

router = APIRouter()

PUT_ERRORS = error_responses(
    {400: "unknown field, bad value, or a model that is unknown, not allowed, or cannot do the task"}
)


@router.get("/api/me/preferences", response_model=Preferences)
async def get_preferences(request: Request) -> Preferences:
    """The signed-in profile's preferences (every field null and no presets until it saves some)."""
    who = identity(request.scope) or OPEN
    return await asyncio.to_thread(state.preferences(request).get, who.name)


@router.put("/api/me/preferences", response_model=Preferences, responses=PUT_ERRORS)
async def put_preferences(request: Request, prefs: Preferences) -> Preferences:
    """Replace the signed-in profile's preferences (fields left out become null); answers what was stored,
    model ids as registry names."""
    who = identity(request.scope) or OPEN
    registry = state.registry(request)
    allowed = None if who.models is None else set(who.models)
    checked, problems = check_models(prefs, registry, allowed)
    if problems:
        param = problems[0].split(":", 1)[0]
        raise APIError(400, "; ".join(problems), param=param, code="invalid_preferences")
    return await asyncio.to_thread(state.preferences(request).put, who.name, checked)


__all__ = ["router"]
