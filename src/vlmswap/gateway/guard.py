"""Bearer auth and the request body cap, as plain ASGI middleware.

Plain ASGI (not BaseHTTPMiddleware) because it wraps every proxied request and stream:
it must add no buffering and next to no time.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Sequence

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from vlmswap.errors import error_body

OPEN_PATHS = frozenset({"/health"})


class BodyTooLarge(Exception):
    pass


async def _send_error(send: Send, status: int, message: str, code: str,
                      headers: Sequence[tuple[bytes, bytes]] = ()) -> None:
    body = json.dumps(error_body(status, message, code=code)).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class Guard:
    """401 without the right `Authorization: Bearer KEY` (except /health); 413 above max_body_bytes."""

    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int):
        self.app = app
        self.expected = f"Bearer {api_key}".encode() if api_key else None
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
        if (self.expected is not None and scope["path"] not in OPEN_PATHS
                and not hmac.compare_digest(auth, self.expected)):
            await _send_error(send, 401, "missing or wrong API key (send `Authorization: Bearer KEY`)",
                              "invalid_api_key", [(b"www-authenticate", b"Bearer")])
            return
        if length is not None and length > self.max_body:
            await _send_error(send, 413, f"request body of {length} bytes is over the limit of "
                                         f"{self.max_body} bytes (gateway.max_body_mb)", "body_too_large")
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
                await _send_error(send, 413, f"request body is over the limit of {self.max_body} bytes "
                                             f"(gateway.max_body_mb)", "body_too_large")
