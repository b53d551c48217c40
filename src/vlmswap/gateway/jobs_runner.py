"""Document jobs run: each page an ordinary request of the job's owner, nothing lost.

A job belongs to the profile that submitted it: only that profile (and admins) may see,
follow, fetch or cancel it, and every page enters through the one `Admission` as that
profile's request: its priority, its rate limits, its usage, the request metrics.

The service needs little of where it runs: the registry (settings, models), an event bus, the
profiles, a directory for its store, and a `PageChat`, the one function that sends a page's
chat request as its owner. On one gateway that is `LeasedPages` (`leased_chat` through the
gateway's `Admission`); in the cluster, the ingress's own forwarding to a replica holding the
model, where the replica's `Admission` applies the owner's profile (`vlmswap.cluster.jobs`).

One task per unfinished job; inside it at most `gateway.jobs_concurrency` pages are in flight,
each through the `PageChat` (on one gateway a lease on the model, so grouping keeps the model
loaded across the job and the starvation bound still holds for chat) and the same page
pipeline as `/api/ocr`. Every finished page is on disk before it is reported. A try cut short (a cancel,
the gateway stopping) does not count: the page is read again by the next start. A page that
was not served (429 over the owner's limits, or 503 before any lease: the gateway is
stopping, a model in its backoff, the queue full) waits and asks again without spending a
try; a 5xx or timeout from the model spends one (`PAGE_TRIES`), another 4xx fails the page at
once. The job goes on past failed pages. Progress goes out on the event bus as `job` events.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

import httpx

from vlmswap.api.errors import APIError
from vlmswap.documents.inputs import DocumentError, SourceFile, open_bytes
from vlmswap.documents.jobs import PAGE_TRIES, Job, JobSpec, JobState, PageState, final_state, retryable
from vlmswap.documents.pipeline import ocr_page
from vlmswap.gateway.jobs_store import JobStore
from vlmswap.gateway.ocr import leased_chat, page_client
from vlmswap.registry.config import Registry
from vlmswap.registry.profiles import Identity, Profiles
from vlmswap.swap.admission import Admission
from vlmswap.swap.events import EventBus
from vlmswap.swap.manager import Lease

log = logging.getLogger("vlmswap.jobs")

RETRY_DELAY_S = 1.0  # between two tries of a page
SWEEP_PERIOD_S = 300.0  # how often finished jobs past their retention are removed
EVENT_TYPE = "job"


class NotServed(Exception):
    """Admission answered 429 or 503 before granting a lease: the page never reached the model."""

    def __init__(self, error: APIError):
        super().__init__(error.message)
        self.error = error
        try:
            self.retry_after = max(1.0, float(error.headers.get("Retry-After", 1)))
        except ValueError:
            self.retry_after = 1.0


class PageChat(Protocol):
    """How a page reaches its model, as the job's owner: the one thing that differs between one
    gateway and the cluster."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def __call__(self, who: Identity, model: str, body: dict[str, Any], started: Callable[[], None]) -> str:
        """The answer's text for one chat request of `who` on `model` (a registry name).

        Calls `started()` once the request has been handed to the model (a lease granted, or
        sent to a replica). Raises `NotServed` when it never reached one (over the owner's
        limits, the queue full, a model in its backoff, the gateway stopping): the page then
        waits and asks again without spending a try; any other APIError spends one.
        """
        ...


class LeasedPages:
    """One gateway's pages: `leased_chat` through its `Admission`, on the gateway's own lease."""

    def __init__(self, admission: Admission):
        self.admission = admission
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        self._http = page_client()

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def __call__(self, who: Identity, model: str, body: dict[str, Any], started: Callable[[], None]) -> str:
        assert self._http is not None
        granted: list[bool] = []

        def on_lease(_lease: Lease) -> None:
            granted.append(True)
            started()

        try:
            return await leased_chat(self.admission, who, self._http, model, body, on_lease=on_lease)
        except APIError as exc:
            if exc.status in (429, 503) and not granted:
                raise NotServed(exc) from None
            raise


class JobService:
    """Owns the job store and the runner tasks (`start` at app start, `stop` before the models go)."""

    def __init__(self, *, registry: Registry, events: EventBus, profiles: Profiles, pages: PageChat, store_dir: Path):
        self.registry = registry
        self.settings = registry.gateway
        self.events = events
        self.profiles = profiles
        self.pages = pages
        self.store_dir = store_dir
        self.store: JobStore | None = None
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._sweeper: asyncio.Task[None] | None = None

    # --- lifecycle --------------------------------------------------------------------------

    async def start(self) -> None:
        """Open the store and pick up every job a stopped or killed gateway left unfinished."""
        self.store = await asyncio.to_thread(JobStore, self.store_dir)
        await self.pages.start()
        self._sweep()
        for job_id in self.store.unfinished():
            log.warning("resuming document job %s", job_id)
            self._launch(job_id)
        self._sweeper = asyncio.create_task(self._sweep_loop(), name="vlmswap-jobs-sweeper")

    async def stop(self) -> None:
        """Cut every runner (pages in flight are read again at the next start); no task is left."""
        tasks = [t for t in (*self._tasks.values(), self._sweeper) if t is not None]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        self._tasks.clear()
        await self.pages.stop()
        if self.store is not None:
            self.store.close()

    @property
    def db(self) -> JobStore:
        if self.store is None:
            raise APIError(503, "document jobs are not running", code="jobs_unavailable")
        return self.store

    # --- what the routes ask ----------------------------------------------------------------

    async def submit(self, spec: JobSpec, data: bytes) -> Job:
        store = self.db
        if store.active_count() >= self.settings.jobs_max_queued:
            raise APIError(
                429,
                f"{self.settings.jobs_max_queued} document jobs are already queued or running "
                f"(gateway.jobs_max_queued); try again when one has finished",
                code="too_many_jobs",
                headers={"Retry-After": "30"},
            )
        job = await asyncio.to_thread(store.create, spec, data)  # the input is on disk (fsync) before the 202
        self._publish(job, "submitted", f"{spec.source}: {len(job.pages)} pages queued")
        self._launch(job.id)
        return job

    def get(self, job_id: str, who: Identity | None = None) -> Job:
        """The job; with `who`, only when that profile may see it (its owner, or an admin): another
        profile's job is as unknown as one that never was."""
        job = self.db.get(job_id)
        if job is None or (who is not None and not who.admin and job.spec.owner != who.name):
            raise APIError(
                404,
                f"no document job {job_id!r} (finished jobs are kept {self.settings.jobs_retention_h:g} h)",
                param="id",
                code="job_not_found",
            )
        return job

    def recent(self, who: Identity, limit: int = 50) -> list[Job]:
        """The newest jobs `who` may see: its own, or (an admin) everyone's."""
        return self.db.recent(limit, owner=None if who.admin else who.name)

    async def cancel(self, job_id: str, who: Identity, purge: bool = False) -> Job:
        """Stop a job (the pages done are kept); `purge` also removes it and its files."""
        job = self.get(job_id, who)
        if self.db.finish_if_active(job_id, JobState.CANCELLED):
            task = self._tasks.get(job_id)
            if task is not None:
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
            job = self.get(job_id)
            self._publish(job, "ended", f"{job.spec.source}: cancelled")
        if purge:
            self.db.delete(job_id)
        return job

    def concurrency(self) -> int:
        return int(self.settings.jobs_concurrency)

    # --- running ----------------------------------------------------------------------------

    def _launch(self, job_id: str) -> None:
        task = asyncio.create_task(self._run(job_id), name=f"vlmswap-job-{job_id}")
        self._tasks[job_id] = task
        task.add_done_callback(lambda t: self._tasks.pop(job_id, None) if self._tasks.get(job_id) is t else None)

    def _publish(self, job: Job, step: str, message: str = "", **extra: Any) -> None:
        """One `job` event (model None: the job's model is in `/api/jobs/{id}`, switch followers ignore it)."""
        s = job.summary(self.concurrency())
        self.events.publish(
            EVENT_TYPE,
            None,
            state=s["state"],
            message=message,
            job_id=job.id,
            step=step,
            source=s["source"],
            pages_total=s["pages_total"],
            pages_done=s["pages_done"],
            pages_failed=s["pages_failed"],
            eta_s=s["eta_s"],
            error=s["error"],
            **extra,
        )

    def _fail(self, job: Job, error: str) -> None:
        if self.db.finish_if_active(job.id, JobState.FAILED, error):
            self._publish(self.get(job.id), "ended", f"{job.spec.source}: {error}")

    async def _run(self, job_id: str) -> None:
        try:
            await self._run_job(job_id)
        except Exception as exc:  # a bug or a broken state dir: say so on the job, never hang
            log.error("document job %s failed", job_id, exc_info=exc)
            job = self.db.get(job_id)
            if job is not None:
                self._fail(job, f"internal error: {exc!r}")

    async def _run_job(self, job_id: str) -> None:
        self.db.reset_running(job_id)
        job = self.db.get(job_id)
        if job is None or job.state.finished:
            return
        try:
            model = self.registry.require(job.spec.model)
        except APIError as exc:  # the registry changed since the job was accepted
            self._fail(job, exc.message)
            return
        owner = self.profiles.named(job.spec.owner)
        if owner is None:
            self._fail(job, f"its profile {job.spec.owner!r} is no longer in the registry")
            return
        try:
            src = await asyncio.to_thread(self._open, job)
        except (OSError, DocumentError) as exc:
            self._fail(job, f"the input can no longer be read: {exc}")
            return
        try:
            await self._pages(job, owner, model, src)
        finally:
            await asyncio.to_thread(src.close)
        end = final_state(self.get(job_id))
        if self.db.finish_if_active(job_id, end, None if end == JobState.DONE else "no page could be read"):
            job = self.get(job_id)
            self._publish(
                job,
                "ended",
                f"{job.spec.source}: {end} ({job.count(PageState.DONE)} pages read, "
                f"{job.count(PageState.FAILED)} failed)",
            )

    async def _pages(self, job: Job, owner: Identity, model: str, src: SourceFile) -> None:
        """Every page still to read, `jobs_concurrency` at a time."""
        todo = job.pending()
        tries = {p.number: p.tries for p in job.pages}
        async with asyncio.TaskGroup() as tg:
            for _ in range(min(self.concurrency(), len(todo))):
                tg.create_task(self._worker(job, owner, model, src, todo, tries))

    def _open(self, job: Job) -> SourceFile:
        data = self.db.input_path(job.id).read_bytes()
        return open_bytes(data, job.spec.source, pages=",".join(map(str, job.spec.pages)), dpi=job.spec.dpi)

    async def _worker(
        self, job: Job, owner: Identity, model: str, src: SourceFile, todo: list[int], tries: dict[int, int]
    ) -> None:
        while todo:
            await self._page(job, owner, model, src, todo.pop(0), tries)

    async def _page(
        self, job: Job, owner: Identity, model: str, src: SourceFile, number: int, tries: dict[int, int]
    ) -> None:
        spec = self.registry.models[model]

        def started() -> None:
            if self.db.mark_running(job.id):
                self._publish(self.get(job.id), "started", f"{job.spec.source}: running on {model}")

        async def chat(body: dict[str, Any]) -> str:
            return await self.pages(owner, model, body, started)

        while True:
            self.db.page_started(job.id, number)
            tries[number] += 1
            t0 = time.monotonic()
            try:
                image = await asyncio.to_thread(src.page, number)
                page = await ocr_page(
                    image,
                    model_name=spec.served_name,
                    spec=spec,
                    mode=job.spec.mode,
                    chat=chat,
                    max_tokens=job.spec.max_tokens,
                    prompt=job.spec.prompt,
                )
            except asyncio.CancelledError:
                self.db.page_dropped(job.id, number)
                raise
            except NotServed as exc:
                self.db.page_dropped(job.id, number)
                tries[number] -= 1
                await asyncio.sleep(exc.retry_after)
                continue
            except DocumentError as exc:  # the page does not render: no try will help
                error, final = str(exc), True
            except APIError as exc:
                error, final = exc.message, not retryable(exc.status) or tries[number] >= PAGE_TRIES
            else:
                await asyncio.to_thread(self.db.page_done, job.id, page, time.monotonic() - t0)
                self._publish(self.get(job.id), "page", f"page {number} read", page=number, page_state="done")
                return
            self.db.page_error(job.id, number, f"try {tries[number]}: {error}", final)
            if final:
                self._publish(
                    self.get(job.id),
                    "page",
                    f"page {number} failed: {error}",
                    page=number,
                    page_state="failed",
                    page_error=error,
                )
                return
            log.warning("job %s page %d: try %d failed (%s); trying again", job.id, number, tries[number], error)
            await asyncio.sleep(RETRY_DELAY_S)

    # --- retention --------------------------------------------------------------------------

    def _sweep(self) -> None:
        for job_id in self.db.expired(time.time() - self.settings.jobs_retention_h * 3600):
            self.db.delete(job_id)

    async def _sweep_loop(self) -> None:
        while True:
            await asyncio.sleep(SWEEP_PERIOD_S)
            with contextlib.suppress(Exception):
                await asyncio.to_thread(self._sweep)


__all__ = ["RETRY_DELAY_S", "JobService", "LeasedPages", "NotServed", "PageChat"]
