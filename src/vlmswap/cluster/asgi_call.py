"""Call an ASGI app in process, as one HTTP request, and stream its answer back.

A replica runs the single gateway's app (`vlmswap.gateway.create_app`) without a socket: the
ingress hands it method, path, headers and body through Ray, and gets the response head and
then the body chunk by chunk. httpx's ASGITransport would buffer the whole body, which breaks
streaming; this is the few lines that do not.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable

from vlmswap.errors import error_body

ASGIApp = Callable[[dict[str, Any], Callable[[], Awaitable[dict[str, Any]]],
                    Callable[[dict[str, Any]], Awaitable[None]]], Awaitable[None]]


@dataclass(frozen=True)
class Call:
    """One HTTP request as it travels from the ingress to a replica (picklable)."""

    method: str
    path: str
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""


@dataclass(frozen=True)
class Head:
    """The response's status line and headers: the first item a call yields."""

    status: int
    headers: tuple[tuple[bytes, bytes], ...]


_END = object()


async def call(app: ASGIApp, req: Call) -> AsyncIterator[Head | bytes]:
    """Yield the response's `Head`, then its body chunks (never buffered whole).

    Closing the iterator early (the client left) tells the app `http.disconnect`, as a server
    would; an app that fails before answering becomes a 500 head here, after it a cut body.
    """
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": req.method,
             "scheme": "http", "path": req.path, "raw_path": req.path.encode(), "query_string": req.query,
             "root_path": "", "headers": list(req.headers), "client": ("127.0.0.1", 0),
             "server": ("127.0.0.1", 0)}
    out: asyncio.Queue[Any] = asyncio.Queue()
    gone = asyncio.Event()
    sent_body = False

    async def receive() -> dict[str, Any]:
        nonlocal sent_body
        if not sent_body:
            sent_body = True
            return {"type": "http.request", "body": req.body, "more_body": False}
        await gone.wait()
        return {"type": "http.disconnect"}

    async def send(msg: dict[str, Any]) -> None:
        if msg["type"] == "http.response.start":
            await out.put(Head(int(msg["status"]), tuple((bytes(k), bytes(v)) for k, v in msg.get("headers", ()))))
        elif msg["type"] == "http.response.body":
            if msg.get("body"):
                await out.put(bytes(msg["body"]))

    async def run() -> None:
        try:
            await app(scope, receive, send)
        finally:
            await out.put(_END)

    task = asyncio.create_task(run())
    started = False
    try:
        while True:
            item = await out.get()
            if item is _END:
                break
            started = started or isinstance(item, Head)
            yield item
        await asyncio.wait({task})
        if not task.cancelled() and task.exception() is not None and not started:
            yield Head(500, ((b"content-type", b"application/json"),))
            yield json.dumps(error_body(500, f"the replica failed: {type(task.exception()).__name__}",
                                        code="replica_error")).encode()
    finally:
        gone.set()
        if not task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            task.cancel()
