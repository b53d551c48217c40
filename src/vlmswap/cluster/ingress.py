"""The Ingress deployment: the single gateway's HTTP surface in front of every replica.

It reads the model id (JSON body or OCR form), resolves it against the registry (so aliases
route alike) and hands the request to a ModelHost with `multiplexed_model_id` set; the answer
comes back chunk by chunk. Status, metrics and events come from the Board. No
`from __future__ import annotations` here: FastAPI must see the route methods' real
annotations (`Request`) through Serve's class-based view.
"""

import asyncio
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import UploadFile

from vlmswap import __version__
from vlmswap.api.errors import APIError, error_body, install_handlers
from vlmswap.cluster import aggregate
from vlmswap.cluster.asgi_call import Call, Head
from vlmswap.cluster.options import ClusterOptions, registry_of
from vlmswap.gateway.guard import Guard
from vlmswap.gateway.proxy import read_openai_body
from vlmswap.registry.profiles import Profiles

SSE_PING_S = 15
FORWARD_HEADERS = frozenset({b"content-type", b"accept"})
PASS_BACK_HEADERS = frozenset({b"content-type", b"cache-control", b"retry-after"})
log = logging.getLogger("vlmswap.cluster")


def _forward_headers(request: Request) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k, v) for k, v in request.headers.raw if k in FORWARD_HEADERS)


def _replica_failed(exc: BaseException) -> dict[str, Any]:
    return error_body(
        502, f"the replica serving the request failed: {type(exc).__name__}: {str(exc)[:300]}", code="replica_failed"
    )


async def _form_model(request: Request, body: bytes) -> str:
    """The `model` field of an OCR upload (the form is parsed here only to route it)."""
    from vlmswap.gateway.ocr import DEFAULT_MODEL, MAX_FILES

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return DEFAULT_MODEL  # the replica answers 415 with the reason
    replayed = False

    async def receive() -> dict[str, Any]:
        nonlocal replayed
        if replayed:
            return {"type": "http.disconnect"}
        replayed = True
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=MAX_FILES, max_fields=20)
    except Exception:
        return DEFAULT_MODEL  # malformed: the replica answers 400 with the reason
    try:
        value = form.get("model")
        if value is None or isinstance(value, UploadFile):
            return DEFAULT_MODEL
        return str(value).strip() or DEFAULT_MODEL
    finally:
        await form.close()


def ingress_app(opts: ClusterOptions) -> FastAPI:
    """The ingress's FastAPI app before its routes: error bodies, then the gateway's own Guard
    (API key, body cap at `gateway.max_body_mb`) in front of everything."""
    registry = registry_of(opts.registry)
    app = FastAPI(title="vlmswap cluster", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    install_handlers(app)
    app.add_middleware(
        Guard, profiles=Profiles(registry, opts.api_key), max_body_bytes=int(registry.gateway.max_body_mb * 1024 * 1024)
    )
    return app


def ingress_deployment(opts: ClusterOptions) -> Any:
    """The Ingress deployment: `ingress_app(opts)` with the gateway's routes, as a Serve class."""
    fastapi_app = ingress_app(opts)

    @serve.deployment(name="Ingress", max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0})
    @serve.ingress(fastapi_app)
    class Ingress:
        def __init__(self, host: Any, board: Any) -> None:
            self.host = host
            self.board = board
            self.registry = registry_of(opts.registry)

        def resolve(self, model_id: str) -> str:
            return self.registry.require(model_id)

        async def forward(self, request: Request, name: str, body: bytes = b"") -> Response:
            return await self.send(
                Call(request.method, request.url.path, request.url.query.encode(), _forward_headers(request), body),
                name,
            )

        async def send(self, req: Call, name: str) -> Response:
            """`req` to a replica that holds `name` (or will); its answer back as it comes.

            A replica that dies before answering is a 502 with an error body; one that dies
            while streaming ends the stream with an error event, as the single gateway does.
            """
            gen = self.host.options(stream=True, multiplexed_model_id=name).handle.remote(req)
            try:
                head = await gen.__anext__()
                assert isinstance(head, Head)
                headers = {k.decode(): v.decode() for k, v in head.headers if k in PASS_BACK_HEADERS}
                if not headers.get("content-type", "").startswith("text/event-stream"):
                    content = b"".join([c async for c in gen])
                    return Response(content, status_code=head.status, headers=headers)
            except (APIError, asyncio.CancelledError):
                gen.cancel()
                raise
            except Exception as exc:  # RayActorError, ActorDiedError, a lost connection to the replica
                gen.cancel()
                log.warning("replica failed during %s %s: %s", req.method, req.path, exc)
                return JSONResponse(_replica_failed(exc), status_code=502)

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in gen:
                        yield chunk
                except Exception as exc:
                    yield b"data: " + json.dumps(_replica_failed(exc)).encode() + b"\n\n"
                finally:
                    gen.cancel()

            return StreamingResponse(relay(), status_code=head.status, headers=headers)

        # --- OpenAI ------------------------------------------------------------------------

        @fastapi_app.post("/v1/chat/completions")
        async def chat_completions(self, request: Request) -> Response:
            body = await request.body()
            return await self.forward(request, self.resolve(read_openai_body(body)[1]), body)

        @fastapi_app.post("/v1/completions")
        async def completions(self, request: Request) -> Response:
            body = await request.body()
            return await self.forward(request, self.resolve(read_openai_body(body)[1]), body)

        @fastapi_app.get("/v1/models")
        async def list_models(self) -> dict[str, Any]:
            return aggregate.models_list(self.registry.models, await self.board.status.remote())

        # --- documents ---------------------------------------------------------------------

        @fastapi_app.post("/api/ocr")
        async def ocr(self, request: Request) -> Response:
            body = await request.body()
            return await self.forward(request, self.resolve(await _form_model(request, body)), body)

        # --- admin -------------------------------------------------------------------------

        @fastapi_app.get("/health")
        async def health(self) -> dict[str, Any]:
            st = await self.board.status.remote()
            return {
                "status": "ok",
                "resident": st["resident"],
                "residents": st["residents"],
                "replicas": len(st["replicas"]),
            }

        @fastapi_app.get("/api/status")
        async def status(self) -> dict[str, Any]:
            return await self.board.status.remote()

        @fastapi_app.get("/metrics")
        async def metrics(self) -> Response:
            texts, st = await self.board.metrics.remote(), await self.board.status.remote()
            return Response(
                aggregate.cluster_metrics(texts, aggregate.replica_families(st)),
                media_type="text/plain; version=0.0.4; charset=utf-8",
            )

        @fastapi_app.post("/api/models/{name:path}/load")
        async def load(self, request: Request, name: str) -> Response:
            return await self.forward(request, self.resolve(name))

        @fastapi_app.post("/api/models/{name:path}/unload")
        async def unload_model(self, request: Request, name: str) -> Response:
            return await self.forward(request, self.resolve(name))

        @fastapi_app.get("/api/models/{name:path}/logs")
        async def logs(self, request: Request, name: str) -> Response:
            return await self.forward(request, self.resolve(name))

        @fastapi_app.post("/api/unload")
        async def unload(self) -> Response:
            """Every replica's resident model, each on the replica that holds it."""
            st = await self.board.status.remote()
            done = []
            for s in st["replicas"]:
                if s["resident"]:
                    r = await self.send(Call("POST", f"/api/models/{s['resident']}/unload"), s["resident"])
                    done.append({"replica": s["replica"], "model": s["resident"], "status": r.status_code})
            if not done:
                return JSONResponse({"model": None, "unloading": False, "message": "no model is resident"})
            return JSONResponse({"model": done[0]["model"], "unloading": True, "replicas": done}, status_code=202)

        @fastapi_app.get("/api/events")
        async def events(self) -> EventSourceResponse:
            gen = self.board.options(stream=True).events.remote()

            async def stream() -> AsyncIterator[dict[str, Any]]:
                try:
                    async for ev in gen:
                        yield (
                            {"event": "hello", "data": json.dumps(ev)}
                            if ev["type"] == "hello"
                            else {"id": str(ev["seq"]), "event": ev["type"], "data": json.dumps(ev)}
                        )
                finally:
                    gen.cancel()

            return EventSourceResponse(stream(), ping=SSE_PING_S)

    return Ingress
