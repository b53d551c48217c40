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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from vlmswap.api.errors import error_body
from vlmswap.gateway.guard import IN_PROCESS_IDENTITY
from vlmswap.registry.profiles import Identity

ASGIApp = Callable[
    [dict[str, Any], Callable[[], Awaitable[dict[str, Any]]], Callable[[dict[str, Any]], Awaitable[None]]],
    Awaitable[None],
]


@dataclass(frozen=True)
class Call:
    """One HTTP request as it travels from the ingress to a replica (picklable).

    `identity`: the profile the ingress signed the caller in as. The replica's gateway takes it
    as is (its Guard, its Admission: the profile's models, priority, limits, usage), so no key
    travels past the ingress and a document job's pages, which have no key at all, run as
    their owner.
    """

    method: str
    path: str
    query: bytes = b""
    headers: tuple[tuple[bytes, bytes], ...] = ()
    body: bytes = b""
    identity: Identity | None = None


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
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": req.method,
        "scheme": "http",
        "path": req.path,
        "raw_path": req.path.encode(),
        "query_string": req.query,
        "root_path": "",
        "headers": list(req.headers),
        "client": ("127.0.0.1", 0),
        "server": ("127.0.0.1", 0),
    }
    if req.identity is not None:
        scope[IN_PROCESS_IDENTITY] = req.identity
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
        elif msg["type"] == "http.response.body" and msg.get("body"):
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
            yield json.dumps(
                error_body(500, f"the replica failed: {type(task.exception()).__name__}", code="replica_error")
            ).encode()
    finally:
        gone.set()
        if not task.done():
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 5.0)
            task.cancel()


class Lifespan:
    """An ASGI app's lifespan, run in process: `start()` is its startup, `stop()` its shutdown.

    A replica runs the gateway app's own lifespan (start the manager, clear orphans, open the
    connection pool; then stop every backend), so whatever `vlmswap serve` does at start and
    exit, a replica does too.
    """

    def __init__(self, app: ASGIApp):
        self.app = app
        self._to_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._from_app: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None

    async def _expect(self, done: str) -> None:
        assert self._task is not None
        getter = asyncio.ensure_future(self._from_app.get())
        await asyncio.wait({getter, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not getter.done():
            getter.cancel()
            exc = self._task.exception() if not self._task.cancelled() else None
            raise RuntimeError(f"the app's lifespan ended before {done}: {exc!r}")
        msg = getter.result()
        if msg["type"] != done:
            raise RuntimeError(f"the app's lifespan failed: {msg.get('message') or msg['type']}")

    async def start(self) -> None:
        scope = {"type": "lifespan", "asgi": {"version": "3.0", "spec_version": "2.0"}, "state": {}}
        self._task = asyncio.create_task(self.app(scope, self._to_app.get, self._from_app.put))
        await self._to_app.put({"type": "lifespan.startup"})
        await self._expect("lifespan.startup.complete")

    async def stop(self) -> None:
        if self._task is None or self._task.done():
            return
        await self._to_app.put({"type": "lifespan.shutdown"})
        try:
            await self._expect("lifespan.shutdown.complete")
        finally:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5.0)
