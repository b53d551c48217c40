"""The OpenAI routes as plain ASGI: admit the request, take a lease on its model, pass it through.

This sits on every request, so it skips the web framework: FastAPI's routing, dependency and
response layers cost more CPU than the proxying itself. The body is read and parsed once,
re-encoded only when `model` must be rewritten to the served name; the backend's answer is
relayed as bytes (streams chunk by chunk, never buffered whole) over one shared keep-alive
connection pool (`upstream.Upstream`; httpx/httpcore's pool cost ~90 % of the gateway's CPU
per request, see bench/README.md, Gateway).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from typing import Any

from starlette.types import ASGIApp, Receive, Scope, Send

from vlmswap.api.errors import APIError, error_body
from vlmswap.gateway.guard import BodyTooLarge, identity
from vlmswap.gateway.loading import LoadingStream
from vlmswap.gateway.upstream import Response as UpstreamResponse
from vlmswap.gateway.upstream import Upstream
from vlmswap.registry.profiles import OPEN
from vlmswap.swap.admission import Admission, Entry
from vlmswap.swap.manager import Lease

PATHS = frozenset({"/v1/chat/completions", "/v1/completions"})
PASS_RESPONSE_HEADERS = (b"content-type", b"cache-control")


def read_openai_body(body: bytes) -> tuple[dict[str, Any], str]:
    """An OpenAI request body and its `model`, or the 400 that says what is wrong with it."""
    try:
        payload = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested deeper than Python's stack
        why = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise APIError(400, f"request body is not valid JSON: {why}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_request")
    model_id = payload.get("model")
    if not isinstance(model_id, str) or not model_id:
        raise APIError(
            400, "`model` is required: one of the ids GET /v1/models lists", param="model", code="invalid_request"
        )
    return payload, model_id


class ClientGone(Exception):
    """The client disconnected while its request waited in the queue."""


def new_pool() -> Upstream:
    return Upstream()


async def _json_response(send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    hdrs = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    hdrs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": hdrs})
    await send({"type": "http.response.body", "body": data})


async def _error(send: Send, exc: APIError) -> None:
    await _json_response(
        send,
        exc.status,
        error_body(exc.status, exc.message, param=exc.param, code=exc.code, extra=exc.extra),
        exc.headers,
    )


async def _wait_disconnect(receive: Receive) -> None:
    while True:
        msg = await receive()
        if msg["type"] == "http.disconnect":
            return


class Proxy:
    """ASGI middleware: serves POST /v1/chat/completions and /v1/completions, passes the rest to `app`.

    Every request enters through `admission` (the profile, its limits, the queue, usage, metrics)."""

    def __init__(self, app: ASGIApp, admission: Admission):
        self.app = app
        self.admission = admission
        self.manager = admission.manager
        self.pool: Upstream | None = None

    async def aclose(self) -> None:
        if self.pool is not None:
            await self.pool.aclose()
            self.pool = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] in PATHS and scope["method"] == "POST":
            try:
                await self.forward(scope, receive, send)
            except APIError as exc:
                await _error(send, exc)
            except BodyTooLarge:
                raise  # the guard answers 413
            return
        await self.app(scope, receive, send)

    async def forward(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                await _error(send, APIError(499, "client closed the request", code="client_gone"))
                return
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body"):
                break
        body = b"".join(chunks)
        payload, model_id = read_openai_body(body)
        entry = self.admission.enter(identity(scope) or OPEN, model_id)
        status = 500
        try:
            status = await self._serve(scope, receive, send, body, payload, model_id, entry)
        except APIError as exc:
            status = exc.status
            raise
        finally:
            entry.close(status)

    async def _serve(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        body: bytes,
        payload: dict[str, Any],
        model_id: str,
        entry: Entry,
    ) -> int:
        """The request's answer, sent; returns its status."""
        spec = self.manager.registry.models[entry.name]
        if model_id != spec.served_name:
            payload["model"] = spec.served_name
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        stream = payload.get("stream") is True
        loading = None
        if (
            stream
            and entry.queued
            and scope["path"] == "/v1/chat/completions"
            and self.manager.settings.stream_loading_status
        ):
            loading = LoadingStream(send, spec.served_name)
            send = loading.send
        try:
            lease = await self._wait(entry, receive, loading) if entry.queued else await entry.wait()
        except ClientGone:
            entry.observe(499)
            # Nobody reads this (the server drops it), but the response is complete, as ASGI expects.
            await _error(send, APIError(499, "client closed the request", code="client_gone"))
            return 499
        except APIError as exc:
            entry.observe(exc.status)
            if loading is not None and loading.started:
                await _error(send, exc)  # inside the stream already open: an error event
                return exc.status
            raise
        try:
            return await self._exchange(scope, receive, send, body, stream, lease, entry)
        except APIError as exc:
            if loading is not None and loading.started:
                await _error(send, exc)
                return exc.status
            raise

    async def _wait(self, entry: Entry, receive: Receive, loading: LoadingStream | None = None) -> Lease:
        """Wait for the grant; a client that disconnects meanwhile leaves the queue. With `loading`,
        the switch's progress events are streamed to the client meanwhile."""
        waiter = asyncio.ensure_future(entry.wait())
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        sub = self.manager.subscribe() if loading is not None else None
        try:
            while True:
                getter = asyncio.ensure_future(sub.__anext__()) if sub is not None else None
                pending = {waiter, gone} | ({getter} if getter is not None else set())
                done, _ = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                if getter is not None and getter in done and loading is not None:
                    await loading.progress(getter.result())
                    if not (waiter.done() or gone.done()):
                        continue
                elif getter is not None:
                    getter.cancel()
                break
            if sub is not None and loading is not None and waiter.done():
                for ev in sub.drain():  # the switch's last steps (ready) were published before the grant
                    await loading.progress(ev)
        finally:
            if sub is not None:
                await sub.aclose()
            for task in (waiter, gone):
                if not task.done():
                    task.cancel()
        if waiter.done() and not waiter.cancelled():
            return waiter.result()
        with contextlib.suppress(asyncio.CancelledError, APIError):
            await waiter  # its cancellation releases the ticket
        raise ClientGone()

    async def _exchange(
        self, scope: Scope, receive: Receive, send: Send, body: bytes, stream: bool, lease: Lease, entry: Entry
    ) -> int:
        pool = getattr(scope["app"].state, "pool", None) if "app" in scope else None
        if pool is None:
            if self.pool is None:
                self.pool = new_pool()
            pool = self.pool
        accept = next((v for k, v in scope["headers"] if k == b"accept"), b"*/*")
        host, _, port = lease.base_url.split("/", 3)[2].rpartition(":")
        headers = [(b"content-type", b"application/json"), (b"accept", accept)]
        try:
            resp = await pool.request(host, int(port), b"POST", scope["path"].encode(), headers, body)
        except Exception as exc:  # UpstreamError, OSError (refused, reset), timeouts
            entry.observe(502)
            raise APIError(502, self._failure(lease, exc), code="backend_unreachable") from None
        out = [(k, v) for k, v in resp.headers if k in PASS_RESPONSE_HEADERS]  # names come lower-cased
        ctype = next((v for k, v in out if k == b"content-type"), b"")
        if stream and resp.status == 200 and ctype.startswith(b"text/event-stream"):
            return await self._relay(receive, send, resp, out, lease, entry)
        try:
            content = b"".join([c async for c in resp.aiter_stream()])
        except Exception as exc:
            entry.observe(502)
            raise APIError(502, self._failure(lease, exc), code="backend_died") from None
        finally:
            await resp.aclose()
        entry.observe(resp.status)
        entry.count(content)
        out.append((b"content-length", str(len(content)).encode()))
        await send({"type": "http.response.start", "status": resp.status, "headers": out})
        await send({"type": "http.response.body", "body": content})
        return resp.status

    async def _relay(
        self,
        receive: Receive,
        send: Send,
        resp: UpstreamResponse,
        headers: list[tuple[bytes, bytes]],
        lease: Lease,
        entry: Entry,
    ) -> int:
        """Chunk by chunk; a client that leaves stops the relay, a backend that dies ends it with an error event."""
        entry.observe(200)

        async def pump() -> None:
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            try:
                async for chunk in resp.aiter_stream():
                    if b'"usage"' in chunk:  # a stream's usage chunk, when asked for
                        for line in chunk.split(b"\n"):
                            if line.startswith(b"data: {") and b'"usage"' in line:
                                entry.count(line[6:])
                    await send({"type": "http.response.body", "body": chunk, "more_body": True})
            except Exception as exc:
                err = error_body(502, self._failure(lease, exc), code="backend_died")
                self.admission.observe(lease.name, 502, None)  # counted again: it failed midway
                await send(
                    {
                        "type": "http.response.body",
                        "body": b"data: " + json.dumps(err).encode() + b"\n\n",
                        "more_body": True,
                    }
                )
            await send({"type": "http.response.body", "body": b"", "more_body": False})

        relay = asyncio.ensure_future(pump())
        gone = asyncio.ensure_future(_wait_disconnect(receive))
        try:
            await asyncio.wait({relay, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (relay, gone):
                if not task.done():
                    task.cancel()
            await asyncio.gather(relay, gone, return_exceptions=True)
            await resp.aclose()
        if relay.done() and not relay.cancelled() and relay.exception() is not None:
            raise relay.exception()  # type: ignore[misc]
        return 200

    def _failure(self, lease: Lease, exc: BaseException) -> str:
        why = lease.error
        if why is None:
            status = self.manager.exit_status(lease.name)
            if status is not None:
                why = f"{lease.name} exited unexpectedly ({status})"
        detail = f" ({why})" if why else ""
        return f"the backend of {lease.name} failed during the request: {type(exc).__name__}{detail}"
