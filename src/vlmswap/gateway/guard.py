"""Bearer auth (profiles), the admin API's gate and the request body cap, as plain ASGI middleware.

Plain ASGI (not BaseHTTPMiddleware) because it wraps every proxied request and stream:
it must add no buffering and next to no time.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlmswap.api.errors import error_body
from vlmswap.registry.profiles import Identity, Profiles

OPEN_PATHS = frozenset({"/health"})
IN_PROCESS_IDENTITY = "vlmswap.identity"
"""Scope key of a request made in process by code that already signed its caller in (the
cluster's ingress, calling a replica's gateway app through Ray). An ASGI server builds each
scope from the wire and never sets this key, so no network request can carry it."""
ADMIN_ACTIONS = frozenset({"load", "unload", "sleep", "pull"})


def is_admin_route(method: str, path: str) -> bool:
    """The admin API: what changes which models run, and the backends' logs."""
    if path == "/api/unload":
        return True
    if path.startswith("/api/models/"):
        action = path.rsplit("/", 1)[-1]
        return (method == "POST" and action in ADMIN_ACTIONS) or action == "logs"
    return False


def identity(scope: Scope) -> Identity | None:
    """The profile the Guard signed this request in as (None outside the Guard)."""
    state = scope.get("state")
    who = state.get("profile") if isinstance(state, dict) else None
    return who if isinstance(who, Identity) else None


class BodyTooLarge(Exception):
    pass


async def _send_error(
    send: Send, status: int, message: str, code: str, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = json.dumps(error_body(status, message, code=code)).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()), *headers],
        }
    )
    await send({"type": "http.response.body", "body": body})


class Guard:
    """401 without a profile's `Authorization: Bearer KEY` (except /health), 403 for the admin API
    without `admin`, 413 above max_body_bytes. The profile rides on in `scope["state"]["profile"]`.
    A request called in process with `scope[IN_PROCESS_IDENTITY]` is that profile's, without a key."""

    def __init__(self, app: ASGIApp, *, profiles: Profiles, max_body_bytes: int):
        self.app = app
        self.profiles = profiles
        self.max_body = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length: int | None = None
        auth = b""
        for k, v in scope["headers"]:
            if k == b"authorization":
                auth = v
            elif k == b"content-length":
                try:
                    length = int(v)
                except ValueError:
                    length = None
        who = scope.get(IN_PROCESS_IDENTITY)
        if not isinstance(who, Identity):
            who = self.profiles.identify(auth)
        if scope["path"] not in OPEN_PATHS:
            if who is None:
                await _send_error(
                    send,
                    401,
                    "missing or wrong API key (send `Authorization: Bearer KEY`)",
                    "invalid_api_key",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
            if not who.admin and is_admin_route(scope["method"], scope["path"]):
                await _send_error(send, 403, f"profile {who.name} may not use the admin API", "admin_only")
                return
        if who is not None:
            scope.setdefault("state", {})["profile"] = who
        if length is not None and length > self.max_body:
            await _send_error(
                send,
                413,
                f"request body of {length} bytes is over the limit of {self.max_body} bytes (gateway.max_body_mb)",
                "body_too_large",
            )
            return
        if length is not None:
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): count as it arrives.
        seen = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.max_body:
                    raise BodyTooLarge()
            return msg

        async def tracking_send(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            if not started:
                await _send_error(
                    send,
                    413,
                    f"request body is over the limit of {self.max_body} bytes (gateway.max_body_mb)",
                    "body_too_large",
                )
