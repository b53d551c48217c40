"""`POST /api/models/{name}/pull` and `GET .../pull`: the gateway fetches a model's files ahead of a switch.

The download runs on a thread of its own (huggingface_hub blocks), one at a time per
repository and cache (two registry entries over the same checkpoint share one pull), and
reports through the event bus: `pull` events on `/api/events` with `downloaded_bytes`,
`total_bytes`, `files_done`, `files_total` and, on the last one, `done: true` and `ok`. The
gateway's shutdown stops a pull between two chunks; the files finished so far stay cached.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse

from vlmswap.api.errors import APIError
from vlmswap.api.openapi import error_responses
from vlmswap.registry.download import Progress, PullCancelled, pull
from vlmswap.registry.hub import PullError, Source, pullable
from vlmswap.swap.events import EventBus

PROGRESS_INTERVAL_S = 0.5


@dataclass
class PullJob:
    """One pull under way or finished: what /api/models/{name}/pull answers."""

    model: str
    source: Source
    started: float = field(default_factory=time.time)
    downloaded_bytes: int = 0
    total_bytes: int | None = None
    files_done: int = 0
    files_total: int | None = None
    done: bool = False
    ok: bool | None = None
    message: str = ""
    stop: threading.Event = field(default_factory=threading.Event)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "repo": self.source.repo,
            "revision": self.source.revision,
            "pulling": not self.done,
            "done": self.done,
            "ok": self.ok,
            "message": self.message,
            "downloaded_bytes": self.downloaded_bytes,
            "total_bytes": self.total_bytes,
            "files_done": self.files_done,
            "files_total": self.files_total,
            "started": self.started,
        }


class Pulls:
    """The gateway's pulls: the latest per model, at most one running per source."""

    def __init__(self, events: EventBus):
        self._events = events
        self._latest: dict[str, PullJob] = {}
        self._threads: set[threading.Thread] = set()

    def get(self, model: str) -> PullJob | None:
        return self._latest.get(model)

    def start(self, model: str, src: Source) -> PullJob:
        for job in self._latest.values():
            if not job.done and job.source == src:
                also = "" if job.model == model else f" (as {job.model})"
                raise APIError(409, f"{src.repo} is already being pulled{also}", code="pull_in_progress")
        job = self._latest[model] = PullJob(model, src)
        loop = asyncio.get_running_loop()
        self._publish(job, f"pulling {src.repo}")
        thread = threading.Thread(target=self._run, args=(job, loop), name=f"vlmswap-pull-{model}", daemon=True)
        self._threads.add(thread)
        thread.start()
        return job

    def _publish(self, job: PullJob, message: str) -> None:
        job.message = message
        self._events.publish(
            "pull",
            job.model,
            message=message,
            downloaded_bytes=job.downloaded_bytes,
            total_bytes=job.total_bytes,
            files_done=job.files_done,
            files_total=job.files_total,
            done=job.done,
            ok=job.ok,
            repo=job.source.repo,
        )

    def _run(self, job: PullJob, loop: asyncio.AbstractEventLoop) -> None:
        """Thread: the download; every event goes back to the loop, the bus's only caller."""

        def on_progress(p: Progress) -> None:
            def apply() -> None:
                job.downloaded_bytes, job.total_bytes = p.downloaded_bytes, p.total_bytes
                job.files_done, job.files_total = p.files_done, p.files_total
                if not p.done:
                    self._publish(job, f"{p.files_done}/{p.files_total} files" + (f": {p.file}" if p.file else ""))

            loop.call_soon_threadsafe(apply)

        try:
            folder = pull(job.source, on_progress, min_interval_s=PROGRESS_INTERVAL_S, should_stop=job.stop.is_set)
            result, message = True, f"{job.source.repo} downloaded to {folder}"
        except PullCancelled as exc:
            result, message = False, str(exc)
        except PullError as exc:
            result, message = False, str(exc)
        except Exception as exc:
            result, message = False, f"{job.source.repo}: pull failed: {type(exc).__name__}: {exc}"

        def finish() -> None:
            job.done, job.ok = True, result
            self._publish(job, message)

        with contextlib.suppress(RuntimeError):  # the loop is closed: the gateway is gone anyway
            loop.call_soon_threadsafe(finish)
        self._threads.discard(threading.current_thread())

    async def stop(self, grace_s: float = 10.0) -> None:
        """Ask every running pull to stop and give them `grace_s` seconds to do so."""
        for job in self._latest.values():
            job.stop.set()
        deadline = time.monotonic() + grace_s
        for thread in list(self._threads):
            await asyncio.to_thread(thread.join, max(0.0, deadline - time.monotonic()))


@contextlib.asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    app.state.pulls = Pulls(app.state.manager.events)
    try:
        yield
    finally:
        await app.state.pulls.stop()


router = APIRouter(lifespan=lifespan)


@router.post(
    "/api/models/{name:path}/pull",
    status_code=202,
    responses=error_responses(
        {400: "the model has no hub files to pull", 404: "unknown model", 409: "its files are being pulled already"}
    ),
)
async def start_pull(name: str, request: Request) -> JSONResponse:
    manager = request.app.state.manager
    real = manager.resolve(name)
    try:
        src = pullable(manager.registry.models[real])
    except PullError as exc:
        raise APIError(400, f"{real}: {exc}", param="name", code="nothing_to_pull") from None
    job = request.app.state.pulls.start(real, src)
    return JSONResponse(job.to_dict(), status_code=202)


@router.get("/api/models/{name:path}/pull", responses=error_responses({404: "unknown model"}))
async def pull_status(name: str, request: Request) -> dict[str, Any]:
    real = request.app.state.manager.resolve(name)
    job = request.app.state.pulls.get(real)
    if job is None:
        return {
            "model": real,
            "pulling": False,
            "done": False,
            "ok": None,
            "message": "no pull since the gateway started",
        }
    state: dict[str, Any] = job.to_dict()
    return state
