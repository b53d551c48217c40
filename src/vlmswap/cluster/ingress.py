"""The Ingress deployment: the single gateway's HTTP surface in front of every replica.

It signs the caller in (the gateway's own Guard), reads the model id (JSON body or OCR form),
resolves it against the registry (so aliases route alike) and hands the request to a ModelHost
with `multiplexed_model_id` set and the caller's profile in the call (`Call.identity`: the
replica's Admission applies it); the answer comes back chunk by chunk. Status, metrics, usage
and events come from the Board. Document jobs are the ingress's own: it keeps their store and
runs them (`cluster/jobs.py`), each page a request routed like any other. No
`from __future__ import annotations` here: FastAPI must see the route methods' real
annotations (`Request`) through Serve's class-based view.
"""

import json
import logging
import os
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import UploadFile

from vlmswap import __version__
from vlmswap.api.errors import APIError, install_handlers
from vlmswap.cluster import aggregate, jobs
from vlmswap.cluster.asgi_call import Call
from vlmswap.cluster.forward import ReplicaFailed, open_call, replica_failed
from vlmswap.cluster.options import ClusterOptions, registry_of
from vlmswap.gateway import jobs as job_routes
from vlmswap.gateway import preferences
from vlmswap.gateway.guard import Guard, identity
from vlmswap.gateway.openai_routes import models_list
from vlmswap.gateway.proxy import read_openai_body
from vlmswap.registry.profiles import Identity, Profiles

SSE_PING_S = 15
HEAD_NODE_RESOURCE = "node:__internal_head__"  # Ray gives every cluster's head node this resource
FORWARD_HEADERS = frozenset({b"content-type", b"accept"})
PASS_BACK_HEADERS = frozenset({b"content-type", b"cache-control", b"retry-after"})
log = logging.getLogger("vlmswap.cluster")


def _forward_headers(request: Request) -> tuple[tuple[bytes, bytes], ...]:
    """What a replica needs of the caller's headers: the body's type and what it accepts. Never
    `Authorization`: the ingress signed the caller in, the call carries the profile instead."""
    return tuple((k, v) for k, v in request.headers.raw if k in FORWARD_HEADERS)


def _who(request: Request) -> Identity:
    """The profile the Guard signed the caller in as (without profiles and a key: the open one)."""
    who = identity(request.scope)
    if who is None:  # only /health passes the Guard unsigned, and it calls no replica
        raise APIError(401, "missing or wrong API key (send `Authorization: Bearer KEY`)", code="invalid_api_key")
    return who


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
    app = FastAPI(
        title="vlmswap cluster",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        lifespan=jobs.lifespan(opts),  # the document jobs' store and runners, in this replica
    )
    install_handlers(app)
    app.add_middleware(
        Guard, profiles=Profiles(registry, opts.api_key), max_body_bytes=int(registry.gateway.max_body_mb * 1024 * 1024)
    )
    app.include_router(job_routes.router)  # /api/jobs: the single gateway's routes over the ingress's JobService
    app.include_router(preferences.router)  # /api/me/preferences: the single gateway's routes, the ingress's store
    return app


def ingress_deployment(opts: ClusterOptions) -> Any:
    """The Ingress deployment: `ingress_app(opts)` with the gateway's routes, as a Serve class."""
    fastapi_app = ingress_app(opts)

    # One replica, on the head node: it keeps the document jobs' store on that node's disk, so a
    # restarted ingress (Ray starts it on the head again) finds and resumes them.
    @serve.deployment(
        name="Ingress",
        num_replicas=1,
        max_ongoing_requests=10_000,
        ray_actor_options={"num_cpus": 0, "resources": {HEAD_NODE_RESOURCE: 0.001}},
    )
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
                Call(
                    request.method,
                    request.url.path,
                    request.url.query.encode(),
                    _forward_headers(request),
                    body,
                    identity=_who(request),
                ),
                name,
            )

        async def send(self, req: Call, name: str) -> Response:
            """`req` to a replica that holds `name` (or will); its answer back as it comes.

            A replica that dies before answering is a 502 with an error body; one that dies
            while streaming ends the stream with an error event, as the single gateway does.
            """
            try:
                head, gen = await open_call(self.host, req, name)
            except ReplicaFailed as exc:
                return JSONResponse(exc.body, status_code=502)
            headers = {k.decode(): v.decode() for k, v in head.headers if k in PASS_BACK_HEADERS}
            if not headers.get("content-type", "").startswith("text/event-stream"):
                try:
                    content = b"".join([c async for c in gen])
                except Exception as exc:
                    gen.cancel()
                    log.warning("replica failed during %s %s: %s", req.method, req.path, exc)
                    return JSONResponse(replica_failed(exc), status_code=502)
                return Response(content, status_code=head.status, headers=headers)

            async def relay() -> AsyncIterator[bytes]:
                try:
                    async for chunk in gen:
                        yield chunk
                except Exception as exc:
                    yield b"data: " + json.dumps(replica_failed(exc)).encode() + b"\n\n"
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
        async def list_models(self, request: Request) -> dict[str, Any]:
            """As one gateway's: the models the caller may use, each in its cluster-wide state."""
            st = await self.board.status.remote()
            states = {name: m.get("state", "stopped") for name, m in st["models"].items()}
            return models_list(self.registry.models, states, identity(request.scope))

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

        @fastapi_app.get("/api/me")
        async def me(self, request: Request) -> dict[str, Any]:
            """The signed-in profile, as one gateway says it (the ingress signs callers in)."""
            who = _who(request)
            return {
                "profile": who.name,
                "admin": who.admin,
                "models": [n for n in self.registry.models if who.may_use(n)],
                "priority": who.priority,
                "max_concurrent": who.max_concurrent,
                "requests_per_minute": who.requests_per_minute,
            }

        @fastapi_app.get("/api/usage")
        async def usage(self, request: Request) -> dict[str, Any]:
            """Every replica's usage per profile, summed (an admin sees every profile, others their own)."""
            who = _who(request)
            data = await self.board.usage.remote()
            return {"profiles": data if who.admin else {k: v for k, v in data.items() if k == who.name}}

        @fastapi_app.get("/api/status")
        async def status(self, request: Request) -> dict[str, Any]:
            st: dict[str, Any] = await self.board.status.remote()
            service = jobs.service_of(request.app)
            st["ingress"] = {
                "pid": os.getpid(),
                "node": jobs.node_name(),
                "jobs_dir": str(service.store_dir) if service is not None else None,
                "jobs_active": service.db.active_count() if service is not None and service.store else 0,
            }
            return st

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

        @fastapi_app.post("/api/models/{name:path}/sleep")
        async def sleep_model(self, request: Request, name: str) -> Response:
            return await self.forward(request, self.resolve(name))

        @fastapi_app.post("/api/models/{name:path}/pull")
        async def pull(self, request: Request, name: str) -> Response:
            """Into the Hugging Face cache of the node whose replica Ray routes the model to."""
            return await self.forward(request, self.resolve(name))

        @fastapi_app.get("/api/models/{name:path}/pull")
        async def pull_status(self, request: Request, name: str) -> Response:
            return await self.forward(request, self.resolve(name))

        @fastapi_app.get("/api/models/{name:path}/logs")
        async def logs(self, request: Request, name: str) -> Response:
            return await self.forward(request, self.resolve(name))

        @fastapi_app.post("/api/unload")
        async def unload(self, request: Request) -> Response:
            """Every replica's resident model, each on the replica that holds it."""
            st = await self.board.status.remote()
            done = []
            for s in st["replicas"]:
                if s["resident"]:
                    call = Call("POST", f"/api/models/{s['resident']}/unload", identity=_who(request))
                    r = await self.send(call, s["resident"])
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
