"""The worker's HTTP server: the part of vLLM's OpenAI-compatible API that vlmswap relies on.

The gateway treats a worker exactly like `vllm serve`, so the routes, bodies and SSE framing
follow vLLM/OpenAI: `/health`, `/v1/models`, `/v1/chat/completions`, `/v1/completions` and
vLLM's sleep-mode endpoints. Engines are blocking code; each generation runs on its own thread
and its pieces cross to the event loop as they are produced, so a stream is never buffered.
One generation at a time per engine: a single-GPU engine is not safe to share.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any, Literal, TypeVar

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Receive, Scope, Send
from starlette.types import Message as ASGIMessage

from vlmswap.api import openapi
from vlmswap.api.errors import APIError, error_response, install_handlers, invalid_request
from vlmswap.api.images import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS, ImageError, decode_data_url, open_image
from vlmswap.api.openai_types import (
    BODY_MODELS,
    ChatCompletionRequest,
    ChatMessage,
    CompletionRequest,
    ImageURL,
    ModelList,
    SamplingParams,
    TextPart,
    completion_route_doc,
)
from vlmswap.worker.engines.base import Engine, Generation, GenerationRequest, Message

log = logging.getLogger("vlmswap.worker")

DEFAULT_MAX_MODEL_LEN = 32768


# ---------------------------------------------------------------------------------------------
# Body size cap: by Content-Length up front, and by counting what actually arrives (chunked
# uploads carry no length, and a client may lie about it).


class BodyTooLarge(APIError):
    def __init__(self, max_bytes: int):
        super().__init__(
            413,
            f"request body over the limit of {max_bytes / 1048576:g} MiB ({max_bytes} bytes)",
            code="body_too_large",
        )


class BodySizeLimit:
    """ASGI middleware: refuse HTTP request bodies over `max_bytes` with an OpenAI 413 body."""

    def __init__(self, app: ASGIApp, max_bytes: int):
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await error_response(400, "invalid Content-Length header")(scope, receive, send)
                    return
                if declared > self.max_bytes:
                    exc = BodyTooLarge(self.max_bytes)
                    await error_response(413, exc.message, code=exc.code)(scope, receive, send)
                    return
        seen = 0

        async def counting_receive() -> ASGIMessage:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise BodyTooLarge(self.max_bytes)  # the route's exception handler answers 413
            return message

        await self.app(scope, counting_receive, send)


# ---------------------------------------------------------------------------------------------
# Request bodies: the models live in vlmswap.api.openai_types (the gateway documents them too).

_B = TypeVar("_B", bound=BaseModel)


def _validated(model: type[_B], data: dict[str, Any]) -> _B:
    """The request body as `model`, or a 400 naming the first bad field."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise invalid_request(exc.errors()) from None


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    try:
        data = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise APIError(400, f"request body is not valid JSON: {exc}", code="invalid_json") from None
    except RecursionError:  # json's C parser recurses per level: a body of 5000 `[` ends here, not in a 500
        raise APIError(400, "request body is not valid JSON: nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise APIError(400, "request body must be a JSON object", code="invalid_json")
    return data


def parse_messages(
    messages: list[ChatMessage], *, max_bytes: int, max_pixels: int, max_total_pixels: int | None = None
) -> list[Message]:
    """Validated OpenAI messages -> engine messages, decoding data-URL images under the caps.

    Each image is capped at `max_pixels`, and all images of the request together at
    `max_total_pixels` (default twice that): a body of many tiny, highly compressed PNGs would
    otherwise decode into gigabytes.
    """
    budget = 2 * max_pixels if max_total_pixels is None else max_total_pixels
    total = 0
    out: list[Message] = []
    for i, m in enumerate(messages):
        texts: list[str] = [m.content] if isinstance(m.content, str) else []
        images = []
        for j, part in enumerate(m.content if isinstance(m.content, list) else []):
            if isinstance(part, TextPart):
                texts.append(part.text)
            else:
                pwhere = f"messages[{i}].content[{j}].image_url"
                url = part.image_url.url if isinstance(part.image_url, ImageURL) else part.image_url
                try:
                    im = open_image(decode_data_url(url, max_bytes=max_bytes), max_pixels=max_pixels)
                except ImageError as exc:
                    raise APIError(400, f"{pwhere}: {exc}", param=pwhere, code=exc.code) from None
                total += im.width * im.height
                if total > budget:
                    raise APIError(
                        400,
                        f"{pwhere}: the request's images hold {total} pixels together, over the cap of {budget}",
                        param=pwhere,
                        code="image_too_large",
                    )
                images.append(im)
        role = "system" if m.role == "developer" else m.role
        out.append(Message(role=role, text="\n".join(texts), images=images))
    return out


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [s for s in ([stop] if isinstance(stop, str) else stop) if s]


# ---------------------------------------------------------------------------------------------
# Generation on a thread; pieces handed to the event loop one by one.

_END = object()


class _Failed:
    def __init__(self, exc: BaseException):
        self.exc = exc


class _Job:
    """One generation on its own (daemon) thread.

    The thread owns the engine lock from the moment it starts: it releases the lock when the
    engine is done, whatever the client does, so a vanished client never wedges the worker.
    """

    def __init__(self, engine: Engine, request: GenerationRequest, lock: asyncio.Lock):
        self.engine = engine
        self.request = request
        self.lock = lock
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.started: asyncio.Future[Generation] = self.loop.create_future()
        self.cancelled = threading.Event()
        self.generation: Generation | None = None

    def start(self) -> None:
        threading.Thread(target=self._run, name="vlmswap-generate", daemon=True).start()

    def _call(self, fn: Callable[..., Any], *args: Any) -> None:
        with contextlib.suppress(RuntimeError):  # loop already closed at shutdown
            self.loop.call_soon_threadsafe(fn, *args)

    def _resolve(self, result: Generation | None, exc: BaseException | None) -> None:
        if self.started.done():
            return
        if exc is not None:
            self.started.set_exception(exc)
        else:
            self.started.set_result(result)  # type: ignore[arg-type]

    def _run(self) -> None:
        try:
            try:
                gen = self.engine.generate(self.request)
            except BaseException as exc:
                self._call(self._resolve, None, exc)
                return
            self.generation = gen
            self._call(self._resolve, gen, None)
            it = iter(gen)
            try:
                for piece in it:
                    if self.cancelled.is_set():
                        break
                    if piece:
                        self._call(self.queue.put_nowait, piece)
            except Exception as exc:
                log.exception("engine failed while generating")
                self._call(self.queue.put_nowait, _Failed(exc))
            finally:
                close = getattr(it, "close", None)
                if close is not None:
                    with contextlib.suppress(Exception):
                        close()
                self._call(self.queue.put_nowait, _END)
        finally:
            self._call(self.lock.release)

    async def pieces(self) -> AsyncIterator[str]:
        while True:
            item = await self.queue.get()
            if item is _END:
                return
            if isinstance(item, _Failed):
                raise item.exc
            yield item


class _StopFilter:
    """Cut the text at the first stop string, holding back a tail that may begin one."""

    def __init__(self, stops: list[str]):
        self.stops = stops
        self.buf = ""
        self.stopped = False

    def feed(self, piece: str) -> str:
        if not self.stops:
            return piece
        self.buf += piece
        hits = [i for i in (self.buf.find(s) for s in self.stops) if i >= 0]
        if hits:
            out, self.buf, self.stopped = self.buf[: min(hits)], "", True
            return out
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), keep, -1):
                if self.buf.endswith(s[:k]):
                    keep = k
                    break
        cut = len(self.buf) - keep
        out, self.buf = self.buf[:cut], self.buf[cut:]
        return out

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out


def _dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------------------


class Worker:
    """One served engine: its name, caps and load state, and the one lock generations take in turn."""

    def __init__(self, engine: Engine, served_name: str, *, max_body_bytes: int, max_pixels: int, loaded: bool):
        self.engine = engine
        self.served_name = served_name
        self.max_body_bytes = max_body_bytes
        self.max_pixels = max_pixels
        self.loaded = loaded
        self.load_error: str | None = None
        self.lock = asyncio.Lock()
        self.created = int(time.time())
        self.clients_gone = 0  # requests whose client left before the answer was complete
        self.waiting = 0  # requests waiting for the engine (vLLM's num_requests_waiting)

    async def load(self) -> None:
        """At startup, when the CLI did not load the engine first: /health says 503 until it is done."""
        try:
            await asyncio.to_thread(self.engine.load)
            self.loaded = True
        except Exception as exc:
            log.exception("engine failed to load")
            self.load_error = f"{type(exc).__name__}: {exc}"

    def not_ready(self) -> str:
        return f"model failed to load: {self.load_error}" if self.load_error else "model is still loading"

    def check_model(self, model: Any) -> None:
        if not model or not isinstance(model, str):
            raise APIError(400, "the 'model' field is required", param="model", code="model_required")
        if model != self.served_name:
            raise APIError(
                404,
                f"The model `{model}` does not exist. This worker serves: {self.served_name}",
                param="model",
                code="model_not_found",
                extra={"available": [self.served_name]},
            )

    def check_ready(self) -> None:
        if not self.loaded:
            raise APIError(503, self.not_ready(), code="not_ready")
        if self.engine.is_sleeping:
            raise APIError(503, f"model {self.served_name} is sleeping; POST /wake_up first", code="sleeping")

    async def start_job(self, req: GenerationRequest) -> _Job:
        """Wait for the engine, then start the generation; its first piece (or error) has arrived on return."""
        self.waiting += 1
        try:
            await self.lock.acquire()
        finally:
            self.waiting -= 1
        try:
            self.check_ready()  # it may have gone to sleep while this request waited its turn
            job = _Job(self.engine, req, self.lock)
            job.start()
        except BaseException:
            self.lock.release()
            raise
        try:
            await asyncio.shield(job.started)
        except asyncio.CancelledError:
            job.cancelled.set()
            raise
        except APIError:
            raise
        except ValueError as exc:
            raise APIError(400, str(exc), code="invalid_request") from None
        except Exception as exc:
            log.exception("engine failed to start a generation")
            raise APIError(500, f"engine error: {type(exc).__name__}: {exc}", code="engine_error") from None
        return job

    async def watch_disconnect(self, request: Request, job: _Job) -> None:
        """Stop the engine early when a non-streaming client goes away (a stream notices by itself)."""
        while not job.cancelled.is_set():
            if await request.is_disconnected():
                job.cancelled.set()
                self.clients_gone += 1
                return
            await asyncio.sleep(0.25)


def sampling(body: SamplingParams, messages: list[Message]) -> GenerationRequest:
    return GenerationRequest(
        messages=messages,
        max_tokens=body.max_completion_tokens or body.max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=_stops(body.stop),
    )


Kind = Literal["chat", "completion"]


class Completion:
    """One generation's answer, in OpenAI's shape: a whole body, or a stream of SSE chunks."""

    def __init__(self, worker: Worker, job: _Job, kind: Kind, body: SamplingParams):
        self.worker = worker
        self.job = job
        self.kind = kind
        self.body = body
        self.id = ("chatcmpl-" if kind == "chat" else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())
        self.stopper = _StopFilter(_stops(body.stop))
        self.include_usage = bool(body.stream_options and body.stream_options.include_usage)

    def usage(self) -> dict[str, int]:
        g = self.job.generation
        p, c = (g.prompt_tokens, g.completion_tokens) if g else (0, 0)
        return {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}

    def finish_reason(self) -> str:
        if self.stopper.stopped:
            return "stop"
        return self.job.generation.finish_reason if self.job.generation else "stop"

    async def respond(self, request: Request) -> Response:
        if self.body.stream:
            return StreamingResponse(
                self.events(),
                media_type="text/event-stream",
                headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
            )
        return JSONResponse(await self.whole(request))

    async def whole(self, request: Request) -> dict[str, Any]:
        parts: list[str] = []
        job, stopper = self.job, self.stopper
        watcher = asyncio.create_task(self.worker.watch_disconnect(request, job))
        try:
            async for piece in job.pieces():
                parts.append(stopper.feed(piece))
                if stopper.stopped:
                    job.cancelled.set()
                    break
        except Exception as exc:
            raise APIError(500, f"engine error: {type(exc).__name__}: {exc}", code="engine_error") from None
        finally:
            watcher.cancel()
            if not stopper.stopped:
                parts.append(stopper.flush())
        text = "".join(parts)
        if self.kind == "chat":
            choice: dict[str, Any] = {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": self.finish_reason(),
            }
        else:
            choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": self.finish_reason()}
        return {
            "id": self.id,
            "object": "chat.completion" if self.kind == "chat" else "text_completion",
            "created": self.created,
            "model": self.worker.served_name,
            "choices": [choice],
            "usage": self.usage(),
        }

    def chunk(self, delta_text: str | None, finish_reason: str | None = None, *, role: bool = False) -> str:
        if self.kind == "chat":
            delta: dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if delta_text is not None:
                delta["content"] = delta_text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        else:
            choice = {"index": 0, "text": delta_text or "", "logprobs": None, "finish_reason": finish_reason}
        c: dict[str, Any] = {**self._chunk_head(), "choices": [choice]}
        if self.include_usage:
            c["usage"] = None
        return f"data: {_dumps(c)}\n\n"

    def _chunk_head(self) -> dict[str, Any]:
        obj = "chat.completion.chunk" if self.kind == "chat" else "text_completion"
        return {"id": self.id, "object": obj, "created": self.created, "model": self.worker.served_name}

    async def events(self) -> AsyncIterator[str]:
        job, stopper = self.job, self.stopper
        completed = False
        try:
            if self.kind == "chat":
                yield self.chunk("", role=True)
            try:
                async for piece in job.pieces():
                    out = stopper.feed(piece)
                    if out:
                        yield self.chunk(out)
                    if stopper.stopped:
                        job.cancelled.set()
                        break
                if not stopper.stopped:
                    rest = stopper.flush()
                    if rest:
                        yield self.chunk(rest)
            except Exception as exc:
                err = {
                    "error": {
                        "message": f"engine error: {type(exc).__name__}: {exc}",
                        "type": "server_error",
                        "param": None,
                        "code": "engine_error",
                    }
                }
                yield f"data: {_dumps(err)}\n\n"
                yield "data: [DONE]\n\n"
                completed = True
                return
            yield self.chunk(None if self.kind == "chat" else "", self.finish_reason())
            if self.include_usage:
                yield f"data: {_dumps({**self._chunk_head(), 'choices': [], 'usage': self.usage()})}\n\n"
            yield "data: [DONE]\n\n"
            completed = True
        finally:
            if not completed:
                self.worker.clients_gone += 1
            job.cancelled.set()  # no-op when done; stops the engine early when the client left


# -- the app ------------------------------------------------------------------------------------


def create_app(
    engine: Engine,
    served_name: str,
    *,
    max_body_bytes: int = DEFAULT_MAX_BYTES,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    loaded: bool = False,
) -> FastAPI:
    """An app serving `engine` as `served_name`.

    With `loaded=False` the engine is loaded on a thread at startup and `/health` answers 503
    until it is ready; the CLI loads first (`loaded=True`) so a failed load exits the process,
    and the port is not open until the model is, as with vLLM.
    """
    from vlmswap import __version__

    app = FastAPI(
        title="vlmswap worker",
        version=__version__,
        lifespan=lifespan,
        redoc_url=None,
        description="vLLM's OpenAI-compatible API (the part vlmswap relies on) over an embedded engine.",
    )
    install_handlers(app)
    openapi.install(app, BODY_MODELS)
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    app.state.worker = Worker(engine, served_name, max_body_bytes=max_body_bytes, max_pixels=max_pixels, loaded=loaded)
    app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    w = worker_of(app)
    task = None if w.loaded else asyncio.create_task(w.load())
    yield
    if task is not None and not task.done():
        task.cancel()


def worker_of(app: Any) -> Worker:
    found: Worker = app.state.worker
    return found


router = APIRouter()
NOT_READY = openapi.error_responses({503: "the model is loading or failed to load"})
EMPTY: dict[int | str, dict[str, Any]] = {200: {"description": "done (empty body)", "content": None}}
ERRORS = {
    400: "invalid request: bad JSON, a bad field, an image that cannot be read or is over the caps",
    404: "`model` is not the model this worker serves",
    413: "request body over the size cap",
    503: "the model is loading, failed to load, or is sleeping",
}


@router.get(
    "/health",
    responses={200: {"description": "ready (empty body)", "content": None}, **NOT_READY},
    response_class=Response,
)
async def health(request: Request) -> Response:
    w = worker_of(request.app)
    if w.loaded:
        return Response(status_code=200)
    return error_response(503, w.not_ready(), code="not_ready")


@router.get("/version")
async def version(request: Request) -> dict[str, str]:
    from vlmswap import __version__

    return {"version": __version__, "engine": worker_of(request.app).engine.name}


@router.get("/v1/models", response_model=ModelList)
async def models(request: Request) -> dict[str, Any]:
    w = worker_of(request.app)
    card = {
        "id": w.served_name,
        "object": "model",
        "created": w.created,
        "owned_by": "vlmswap",
        "root": w.served_name,
        "parent": None,
        "max_model_len": int(getattr(w.engine, "max_model_len", DEFAULT_MAX_MODEL_LEN)),
    }
    return {"object": "list", "data": [card]}


@router.post("/v1/chat/completions", **completion_route_doc("chat", errors=ERRORS))
async def chat_completions(request: Request) -> Response:
    w = worker_of(request.app)
    data = await _json_body(request)
    w.check_model(data.get("model"))
    body = _validated(ChatCompletionRequest, data)
    w.check_ready()
    messages = await run_in_threadpool(
        parse_messages, body.messages, max_bytes=w.max_body_bytes, max_pixels=w.max_pixels
    )
    job = await w.start_job(sampling(body, messages))
    return await Completion(w, job, "chat", body).respond(request)


@router.post("/v1/completions", **completion_route_doc("completion", errors=ERRORS))
async def completions(request: Request) -> Response:
    w = worker_of(request.app)
    data = await _json_body(request)
    w.check_model(data.get("model"))
    body = _validated(CompletionRequest, data)
    w.check_ready()
    if isinstance(body.prompt, list):
        if len(body.prompt) != 1:
            raise APIError(400, "prompt: exactly one prompt per request is served", param="prompt")
        prompt = body.prompt[0]
    else:
        prompt = body.prompt
    job = await w.start_job(sampling(body, [Message(role="user", text=prompt)]))
    return await Completion(w, job, "completion", body).respond(request)


@router.post("/sleep", response_class=Response, responses={**EMPTY, **NOT_READY})
async def sleep(
    request: Request, level: int = Query(1, ge=1, le=2, description="vLLM's sleep level: 1 or 2")
) -> Response:
    w = worker_of(request.app)
    if not w.loaded:
        w.check_ready()
    async with w.lock:  # in-flight generations finish first
        if not w.engine.is_sleeping:
            await run_in_threadpool(w.engine.sleep, level)
    return Response(status_code=200)


@router.post("/wake_up", response_class=Response, responses={**EMPTY, **NOT_READY})
async def wake_up(request: Request, tags: str | None = None) -> Response:
    """vLLM's wake: all at once, or (after level 2) `tags=weights`, reload_weights, `tags=kv_cache`."""
    w = worker_of(request.app)
    if tags not in (None, "weights", "kv_cache"):
        raise APIError(400, "tags must be weights or kv_cache", param="tags")
    if not w.loaded:
        w.check_ready()
    if tags == "weights":  # vLLM allocates the weights' memory here; the engines hold theirs already
        return Response(status_code=200)
    async with w.lock:
        if w.engine.is_sleeping:
            await run_in_threadpool(w.engine.wake_up)
    return Response(status_code=200)


@router.post(
    "/collective_rpc",
    responses={**NOT_READY, **openapi.error_responses({400: "a method other than reload_weights"})},
)
async def collective_rpc(request: Request) -> dict[str, Any]:
    w = worker_of(request.app)
    data = await _json_body(request)
    if data.get("method") != "reload_weights":
        raise APIError(400, "only method reload_weights is served", param="method")
    async with w.lock:
        await run_in_threadpool(w.engine.reload_weights)
    return {"results": [None]}


@router.get("/is_sleeping")
async def is_sleeping(request: Request) -> dict[str, bool]:
    return {"is_sleeping": bool(worker_of(request.app).engine.is_sleeping)}
