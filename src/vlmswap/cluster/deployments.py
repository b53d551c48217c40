"""The three Ray Serve deployments of the cluster mode, bound into one application.

- `ModelHost`, N replicas (one GPU each): the single gateway's app (`create_app(manager)`),
  run in process without a socket, so every request meets the same scheduler, queue, switch
  rules and error bodies as under `vlmswap serve`. Its `@serve.multiplexed` loader only
  records the model for Ray's router (the manager does the switching, on the request's lease):
  Ray then sends the next request for that model to this replica.
- `Ingress`, a FastAPI app (`@serve.ingress`): the single gateway's routes. It reads the model
  id (JSON body or OCR form), resolves it against the registry (so aliases route alike) and
  hands the request to a `ModelHost` with `multiplexed_model_id` set; the answer comes back
  chunk by chunk. Status, metrics and events come from the `Board`.
- `Board`, one replica: every replica reports its status and metrics to it each second and
  forwards its events; it answers for the cluster (`aggregate.py`).

Deployments are built by `build_app` inside a function because the API key and the number of
models a replica keeps (`max_num_models_per_replica`) are fixed when the classes are made.
No `from __future__ import annotations` here: FastAPI must see the route methods' real
annotations (`Request`) through Serve's class-based view.
"""


import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from ray import serve
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import UploadFile

from vlmswap import __version__
from vlmswap.cluster import aggregate, slots
from vlmswap.cluster.asgi_call import Call, Head, call
from vlmswap.config import Registry, parse_registry
from vlmswap.errors import APIError, error_body, install_handlers
from vlmswap.events import EventBus
from vlmswap.gateway.guard import Guard

APP_NAME = "vlmswap"
REPORT_PERIOD_S = 1.0
STALE_S = 5.0              # a replica silent this long is left out of the cluster's status
SSE_PING_S = 15
LEAVE_TIMEOUT_S = 2.0
FORWARD_HEADERS = frozenset({b"content-type", b"accept"})
PASS_BACK_HEADERS = frozenset({b"content-type", b"cache-control", b"retry-after"})
EVENT_FIELDS = ("type", "model", "state", "phase", "elapsed_s", "message")
log = logging.getLogger("vlmswap.cluster")


@dataclass(frozen=True)
class ClusterOptions:
    """What `vlmswap cluster serve` decides; everything the deployments need (picklable)."""

    registry: dict[str, Any]            # Registry.model_dump(): each replica parses it again
    replicas: int = 1
    gpus_per_replica: float = 1.0
    models_per_replica: int = 1         # Ray's LRU per replica: what one replica keeps awake or asleep
    api_key: str | None = None
    min_replicas: int | None = None     # set with max_replicas: Ray Serve autoscaling
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    state_dir: str | None = None        # base of the replicas' state dirs (default: vlmswap's own)

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None


def _registry(data: dict[str, Any]) -> Registry:
    return parse_registry(data, "cluster registry")


# --- Board -----------------------------------------------------------------------------------

@serve.deployment(num_replicas=1, max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0})
class Board:
    """The cluster's view: the last report of every replica, and one event stream for all."""

    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}
        self.bus = EventBus()

    def _live(self) -> list[dict[str, Any]]:
        now = time.time()
        for rid in [r for r, rep in self.reports.items() if now - rep["time"] > STALE_S]:
            rep = self.reports.pop(rid)
            self.bus.publish("replica", None, state="lost", message=f"replica {rid} on {rep['node']} stopped reporting",
                             replica=rid, node=rep["node"])
        return list(self.reports.values())

    async def report(self, rep: dict[str, Any]) -> None:
        if rep["replica"] not in self.reports:
            self.bus.publish("replica", None, state="up", message=f"replica {rep['replica']} up on {rep['node']} "
                             f"(slot {rep['slot']}, GPUs {rep['gpu_ids'] or 'none'})", replica=rep["replica"],
                             node=rep["node"])
        self.reports[rep["replica"]] = rep

    async def leave(self, replica: str) -> None:
        rep = self.reports.pop(replica, None)
        if rep is not None:
            self.bus.publish("replica", None, state="down", message=f"replica {replica} stopped", replica=replica,
                             node=rep["node"])

    async def publish(self, replica: str, node: str, ev: dict[str, Any]) -> None:
        extra = {k: v for k, v in ev.items() if k not in (*EVENT_FIELDS, "seq", "time")}
        self.bus.publish(ev["type"], ev.get("model"), state=ev.get("state"), phase=ev.get("phase"),
                         elapsed_s=ev.get("elapsed_s"), message=ev.get("message") or "",
                         **{**extra, "replica": replica, "node": node, "replica_seq": ev.get("seq")})

    async def status(self) -> dict[str, Any]:
        return aggregate.cluster_status(self._live(), time.time())

    async def metrics(self) -> dict[str, str]:
        return {r["replica"]: r["metrics"] for r in self._live()}

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        sub = self.bus.subscribe()  # before the hello: nothing published after it is missed
        try:
            st = aggregate.cluster_status(self._live(), time.time())
            yield {"type": "hello", "seq": self.bus.seq, "resident": st["resident"], "residents": st["residents"]}
            async for ev in sub:
                yield ev
        finally:
            await sub.aclose()


# --- ModelHost -------------------------------------------------------------------------------

class Hosted:
    """What Ray's multiplexing LRU holds for a model: a name whose eviction the replica notes."""

    def __init__(self, name: str, routed: set[str]):
        self.name = name
        self._routed = routed
        routed.add(name)

    def __del__(self) -> None:  # Ray calls it on eviction from its LRU
        self._routed.discard(self.name)


class ModelHostBase:
    """One replica: vlmswap's manager and gateway app, in process, on this replica's GPU."""

    async def __init__(self, registry_data: dict[str, Any], board: Any, state_dir: str | None) -> None:  # type: ignore[misc]
        import ray

        from vlmswap import gpu
        from vlmswap.backends.base import state_dir as default_state_dir
        from vlmswap.gateway import create_app
        from vlmswap.manager import Manager

        registry = _registry(registry_data)
        ctx = serve.get_replica_context()
        self.replica = ctx.replica_id.unique_id
        self.node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        base = Path(state_dir) if state_dir else default_state_dir()
        self.slot = slots.claim(base / "cluster" / ctx.app_name)
        probe = functools.partial(gpu.probe, int(self.gpu_ids[0])) if self.gpu_ids else gpu.probe
        self.manager = Manager(registry, state_dir=self.slot.state_dir, gpu_probe=probe,
                               gateway_id=f"{socket.gethostname()}-{self.replica}")
        self.app = create_app(self.manager)   # its lifespan is not run: the manager is started here
        self.board = board
        self.routed: set[str] = set()
        self._changed = asyncio.Event()
        for msg in await self.manager.start():   # stops what a dead replica of this slot left running
            log.warning("replica %s: %s", self.replica, msg)
        self._tasks = [asyncio.create_task(self._report_loop()), asyncio.create_task(self._forward_events())]

    async def hosted(self, name: str) -> Hosted:
        return Hosted(name, self.routed)

    async def handle(self, req: Call) -> AsyncIterator[Head | bytes]:
        """One HTTP request through this replica's gateway app; the response head, then its body."""
        name = serve.get_multiplexed_model_id()
        if name:
            await self.hosted(name)   # Ray's LRU (the subclass's multiplexed loader): routing only
        async for item in call(self.app, req):
            yield item

    async def _metrics_text(self) -> str:
        chunks = [c async for c in call(self.app, Call("GET", "/metrics")) if isinstance(c, bytes)]
        return b"".join(chunks).decode()

    async def _report_loop(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                await self.board.report.remote({
                    "replica": self.replica, "node": self.node, "pid": os.getpid(), "slot": self.slot.index,
                    "gpu_ids": self.gpu_ids, "state_dir": str(self.slot.state_dir), "time": time.time(),
                    "routed_models": sorted(self.routed.copy()),   # copy: Ray evicts from a thread
                    "status": self.manager.status(),
                    "metrics": await self._metrics_text(),
                })
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), REPORT_PERIOD_S)

    async def _forward_events(self) -> None:
        sub = self.manager.subscribe()
        try:
            async for ev in sub:
                self._changed.set()
                with contextlib.suppress(Exception):
                    await self.board.publish.remote(self.replica, self.node, ev)
        finally:
            await sub.aclose()

    async def __del__(self) -> None:
        """Ray's graceful stop: every backend this replica started goes with it."""
        for task in getattr(self, "_tasks", ()):
            task.cancel()
        if hasattr(self, "manager"):
            t0 = time.monotonic()
            await self.manager.shutdown()
            log.warning("replica %s: backends stopped in %.1f s", self.replica, time.monotonic() - t0)
            self.slot.release()
            # The board may be going away too (the whole app is deleted): do not wait on it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.board.leave.remote(self.replica), LEAVE_TIMEOUT_S)


# --- Ingress ---------------------------------------------------------------------------------

def _forward_headers(request: Request) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k, v) for k, v in request.headers.raw if k in FORWARD_HEADERS)


def _replica_failed(exc: BaseException) -> dict[str, Any]:
    return error_body(502, f"the replica serving the request failed: {type(exc).__name__}: {str(exc)[:300]}",
                      code="replica_failed")


def _openai_model(body: bytes) -> str:
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_request")
    model = payload.get("model")
    if not isinstance(model, str) or not model:
        raise APIError(400, "`model` is required: one of the ids GET /v1/models lists", param="model",
                       code="invalid_request")
    return model


async def _form_model(request: Request, body: bytes) -> str:
    """The `model` field of an OCR upload (the form is parsed here only to route it)."""
    from vlmswap.gateway.ocr import DEFAULT_MODEL, MAX_FILES

    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        return DEFAULT_MODEL   # the replica answers 415 with the reason
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
        return DEFAULT_MODEL   # malformed: the replica answers 400 with the reason
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
    registry = _registry(opts.registry)
    app = FastAPI(title="vlmswap cluster", version=__version__, docs_url=None, redoc_url=None, openapi_url=None)
    install_handlers(app)
    app.add_middleware(Guard, api_key=opts.api_key, max_body_bytes=int(registry.gateway.max_body_mb * 1024 * 1024))
    return app


def build_app(opts: ClusterOptions) -> Any:
    """The Ray Serve application: Ingress -> ModelHost replicas, and the Board."""
    registry = _registry(opts.registry)

    # Ray finds the loader's `self` by its name: the decorated method keeps the name `hosted`.
    loader = serve.multiplexed(max_num_models_per_replica=opts.models_per_replica)(ModelHostBase.hosted)
    ModelHost = type("ModelHost", (ModelHostBase,), {"hosted": loader})
    scaling: dict[str, Any] = (
        {"autoscaling_config": {"min_replicas": opts.min_replicas if opts.min_replicas is not None else 1,
                                "max_replicas": opts.max_replicas,
                                "target_ongoing_requests": opts.target_ongoing_requests}}
        if opts.autoscaling else {"num_replicas": opts.replicas})
    host_dep = serve.deployment(
        ModelHost, name="ModelHost",
        # Queueing is the manager's job (gateway.max_queue): Ray must not hold requests back.
        max_ongoing_requests=registry.gateway.max_queue + 64,
        # The work happens in the backends the manager starts; the replica itself only relays.
        ray_actor_options={"num_cpus": 0, "num_gpus": opts.gpus_per_replica},
        graceful_shutdown_timeout_s=registry.gateway.stop_grace_s + 15,   # manager.shutdown(): stop, no drain
        **scaling,
    )

    fastapi_app = ingress_app(opts)

    @serve.deployment(name="Ingress", max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0})
    @serve.ingress(fastapi_app)
    class Ingress:
        def __init__(self, host: Any, board: Any) -> None:
            self.host = host
            self.board = board
            self.registry = _registry(opts.registry)

        def resolve(self, model_id: str) -> str:
            name = self.registry.resolve(model_id)
            if name is None:
                known = ", ".join(self.registry.known_ids())
                raise APIError(404, f"The model `{model_id}` does not exist. Known models: {known}",
                               param="model", code="model_not_found")
            return name

        async def forward(self, request: Request, name: str, body: bytes = b"") -> Response:
            return await self.send(Call(request.method, request.url.path, request.url.query.encode(),
                                        _forward_headers(request), body), name)

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
            except Exception as exc:   # RayActorError, ActorDiedError, a lost connection to the replica
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
            return await self.forward(request, self.resolve(_openai_model(body)), body)

        @fastapi_app.post("/v1/completions")
        async def completions(self, request: Request) -> Response:
            body = await request.body()
            return await self.forward(request, self.resolve(_openai_model(body)), body)

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
            return {"status": "ok", "resident": st["resident"], "residents": st["residents"],
                    "replicas": len(st["replicas"])}

        @fastapi_app.get("/api/status")
        async def status(self) -> dict[str, Any]:
            return await self.board.status.remote()

        @fastapi_app.get("/metrics")
        async def metrics(self) -> Response:
            texts, st = await self.board.metrics.remote(), await self.board.status.remote()
            return Response(aggregate.cluster_metrics(texts, aggregate.replica_families(st)),
                            media_type="text/plain; version=0.0.4; charset=utf-8")

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
                        yield ({"event": "hello", "data": json.dumps(ev)} if ev["type"] == "hello" else
                               {"id": str(ev["seq"]), "event": ev["type"], "data": json.dumps(ev)})
                finally:
                    gen.cancel()

            return EventSourceResponse(stream(), ping=SSE_PING_S)

    board = Board.bind()
    return Ingress.bind(host_dep.bind(opts.registry, board, opts.state_dir), board)


__all__ = ["APP_NAME", "ClusterOptions", "build_app", "ingress_app", "Board", "ModelHostBase"]
