"""The OpenAI routes: take a lease on the requested model, pass the request through.

Kept small on purpose, because it sits on every request: the body is read and parsed once,
re-encoded only when `model` must be rewritten to the served name, and the backend's answer
is relayed as bytes (streams chunk by chunk, never buffered whole) over one shared
keep-alive `httpx.AsyncClient`.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

import httpx
from fastapi import Request
from fastapi.responses import Response, StreamingResponse

from vlmswap.errors import APIError, error_body
from vlmswap.manager import Lease, Manager, Ticket

PASS_RESPONSE_HEADERS = ("content-type", "cache-control")


class ClientGone(Exception):
    """The client disconnected while its request waited in the queue."""


async def _disconnected(request: Request) -> None:
    while True:
        msg = await request.receive()
        if msg["type"] == "http.disconnect":
            return


def new_client() -> httpx.AsyncClient:
    return httpx.AsyncClient(
        timeout=httpx.Timeout(connect=10.0, read=None, write=60.0, pool=None),
        limits=httpx.Limits(max_connections=1000, max_keepalive_connections=200, keepalive_expiry=30.0),
        trust_env=False,
    )


class Proxy:
    def __init__(self, manager: Manager, client: httpx.AsyncClient, metrics: Any = None):
        self.manager = manager
        self.client = client
        self.metrics = metrics

    async def forward(self, request: Request, path: str) -> Response:
        t0 = time.perf_counter()
        body = await request.body()
        try:
            payload = json.loads(body)
        except ValueError as exc:
            raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
        if not isinstance(payload, dict):
            raise APIError(400, "request body must be a JSON object", code="invalid_request")
        model_id = payload.get("model")
        if not isinstance(model_id, str) or not model_id:
            raise APIError(400, "`model` is required: one of the ids GET /v1/models lists", param="model",
                           code="invalid_request")
        try:
            ticket = self.manager.request(model_id)
        except APIError as exc:
            self._observe(self.manager.registry.resolve(model_id) or "unknown", exc.status, t0)
            raise
        spec = self.manager.registry.models[ticket.name]
        if model_id != spec.served_name:
            payload["model"] = spec.served_name
            body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        stream = payload.get("stream") is True
        try:
            lease = ticket.future.result() if ticket.future.done() else await self._wait(ticket, request)
        except ClientGone:
            self._observe(ticket.name, 499, t0)
            return Response(status_code=499)
        except APIError as exc:
            self._observe(ticket.name, exc.status, t0)
            raise
        return await self._send(request, path, body, stream, ticket, lease, t0)

    async def _wait(self, ticket: Ticket, request: Request) -> Lease:
        """Wait for the grant; a client that disconnects meanwhile leaves the queue."""
        waiter = asyncio.ensure_future(ticket.wait())
        gone = asyncio.ensure_future(_disconnected(request))
        try:
            await asyncio.wait({waiter, gone}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (waiter, gone):
                if not task.done():
                    task.cancel()
        if waiter.done() and not waiter.cancelled():
            return waiter.result()
        try:
            await waiter  # its cancellation releases the ticket
        except (asyncio.CancelledError, APIError):
            pass
        raise ClientGone()

    async def _send(self, request: Request, path: str, body: bytes, stream: bool, ticket: Ticket, lease: Lease,
                    t0: float) -> Response:
        headers = {"content-type": "application/json", "accept": request.headers.get("accept", "*/*"),
                   "accept-encoding": "identity"}
        req = self.client.build_request("POST", lease.base_url + path, content=body, headers=headers)
        try:
            resp = await self.client.send(req, stream=True)
        except (httpx.HTTPError, OSError) as exc:
            ticket.release()
            self._observe(lease.name, 502, t0)
            raise APIError(502, self._failure(lease, exc), code="backend_unreachable") from None
        except BaseException:
            ticket.release()
            raise
        out_headers = {k: v for k, v in resp.headers.items() if k in PASS_RESPONSE_HEADERS}
        is_sse = resp.headers.get("content-type", "").startswith("text/event-stream")
        if stream and resp.status_code == 200 and is_sse:
            self._observe(lease.name, 200, t0)
            return StreamingResponse(self._relay(resp, ticket, lease), status_code=200, headers=out_headers)
        try:
            content = await resp.aread()
        except (httpx.HTTPError, OSError) as exc:
            self._observe(lease.name, 502, t0)
            raise APIError(502, self._failure(lease, exc), code="backend_died") from None
        finally:
            await resp.aclose()
            ticket.release()
        self._observe(lease.name, resp.status_code, t0)
        return Response(content, status_code=resp.status_code, headers=out_headers)

    async def _relay(self, resp: httpx.Response, ticket: Ticket, lease: Lease) -> AsyncIterator[bytes]:
        try:
            async for chunk in resp.aiter_raw():
                yield chunk
        except (httpx.HTTPError, OSError) as exc:
            err = error_body(502, self._failure(lease, exc), code="backend_died")
            self._observe(lease.name, 502, None)
            yield b"data: " + json.dumps(err).encode() + b"\n\n"
        finally:
            await resp.aclose()
            ticket.release()

    def _failure(self, lease: Lease, exc: BaseException) -> str:
        # The manager learns of a crash a moment after the connection breaks; give it that moment.
        why = lease.error
        if why is None:
            backend = self.manager._backends.get(lease.name)
            status = backend.exit_status() if backend is not None else None
            if status is not None:
                why = f"{lease.name} exited unexpectedly ({status})"
        detail = f" ({why})" if why else ""
        return f"the backend of {lease.name} failed during the request: {type(exc).__name__}{detail}"

    def _observe(self, model: str, status: int, t0: float | None) -> None:
        if self.metrics is not None:
            self.metrics.observe_request(model, status, 0.0 if t0 is None else time.perf_counter() - t0)
