"""`/api/jobs`: a document submitted once, read page by page, followed live, cancellable.

The routes only translate HTTP; the store (`jobs_store`) keeps jobs and the service
(`jobs_runner`) runs them. An upload is opened and checked before it is accepted (the same
4xx as `/api/ocr`), so a bad file queues nothing.
"""

from __future__ import annotations

import asyncio
import io
import json
from collections.abc import AsyncIterator
from typing import Any, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse
from starlette.datastructures import UploadFile

from vlmswap.api.errors import APIError
from vlmswap.api.openapi import error_responses
from vlmswap.documents import export
from vlmswap.documents.inputs import DocumentError, open_bytes
from vlmswap.documents.jobs import Job, JobSpec, PageState
from vlmswap.documents.layout import Document
from vlmswap.gateway.guard import identity
from vlmswap.gateway.jobs_runner import EVENT_TYPE, JobService
from vlmswap.gateway.ocr import document_error, form_field, read_form
from vlmswap.registry.profiles import OPEN, Identity

router = APIRouter()

SSE_PING_S = 15
MB = 1024 * 1024


def _service(request: Request) -> JobService:
    service: JobService = request.app.state.jobs
    return service


def _who(request: Request) -> Identity:
    """The caller: a job is its owner's (and admins'); another profile gets 404 for it."""
    return identity(request.scope) or OPEN


def _int_field(form: Any, name: str) -> int | None:
    text = form_field(form, name)
    if text is None:
        return None
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise APIError(
            400, f"{name} must be a whole number of at least 1, not {text!r}", param=name, code=f"invalid_{name}"
        )
    return value


NO_JOB = "no such job (or past jobs_retention_h)"
JOB_ERRORS = error_responses({404: NO_JOB})
SUBMIT_ERRORS = error_responses(
    {
        400: "bad form, mode, dpi, pages or file",
        403: "the profile may not use the model",
        404: "unknown model",
        413: "the file or its pages over the limits",
        415: "not multipart/form-data",
        429: "too many jobs queued",
        503: "document jobs are not running",
    }
)
RESULT_ERRORS = error_responses({400: "unknown format", 404: NO_JOB})
PAGE_ERRORS = error_responses(
    {
        404: NO_JOB + ", or no such page",
        409: "the page is not done (queued, running, failed)",
        500: "the page's result file is missing",
    }
)
IMAGE_ERRORS = error_responses({400: "the page cannot be rendered", 404: NO_JOB + ", or no such page"})


@router.post("/api/jobs", status_code=202, responses=SUBMIT_ERRORS)
async def submit(request: Request) -> JSONResponse:
    """Multipart: one `file`, and `model`, `mode`, `pages`, `dpi`, `prompt`, `max_tokens` -> 202 with the job's id."""
    service = _service(request)
    settings = service.settings
    cap = int(min(settings.jobs_max_upload_mb, settings.max_body_mb) * MB)
    form, fields = await read_form(request, service.registry, max_files=2)
    try:
        if len(fields.uploads) > 1:
            raise APIError(
                400, "one `file` per job: submit each document as its own job", param="file", code="too_many_files"
            )
        upload: UploadFile = fields.uploads[0]
        name = upload.filename or "upload"
        prompt = form_field(form, "prompt")
        max_tokens = _int_field(form, "max_tokens")
        data = await upload.read(cap + 1)
    finally:
        await form.close()
    if len(data) > cap:
        raise APIError(
            413,
            f"{name}: file is over the limit of {cap} bytes (gateway.jobs_max_upload_mb)",
            param="file",
            code="file_too_large",
        )
    try:
        src = await asyncio.to_thread(open_bytes, data, name, pages=fields.pages, dpi=fields.dpi)
    except DocumentError as exc:
        raise document_error(exc) from None
    pages = tuple(src.selected)
    await asyncio.to_thread(src.close)
    if len(pages) > settings.jobs_max_pages:
        raise APIError(
            413,
            f"{name}: {len(pages)} pages asked for, over the limit of {settings.jobs_max_pages} "
            f"per job (gateway.jobs_max_pages); split it with `pages`",
            param="pages",
            code="too_many_pages",
        )
    spec = JobSpec(
        owner=_who(request).name,
        source=name,
        model=fields.model,
        mode=fields.mode,
        pages=pages,
        dpi=fields.dpi,
        prompt=prompt,
        max_tokens=max_tokens,
    )
    job = await service.submit(spec, data)
    return JSONResponse(
        {"id": job.id, "state": str(job.state), "pages_total": len(job.pages), "url": f"/api/jobs/{job.id}"},
        status_code=202,
    )


@router.get("/api/jobs")
async def list_jobs(request: Request, limit: int = Query(50, ge=1, le=1000)) -> dict[str, Any]:
    """The newest jobs first, the caller's own (an admin: everyone's); finished ones are kept `jobs_retention_h`."""
    service = _service(request)
    return {"object": "list", "data": [j.summary(service.concurrency()) for j in service.recent(_who(request), limit)]}


@router.get("/api/jobs/{job_id}", responses=JOB_ERRORS)
async def get_job(request: Request, job_id: str) -> dict[str, Any]:
    service = _service(request)
    return service.get(job_id, _who(request)).to_dict(service.concurrency())


@router.get("/api/jobs/{job_id}/events", responses=JOB_ERRORS)
async def job_events(request: Request, job_id: str) -> EventSourceResponse:
    """One SSE event per page read or failed and one when the job ends; first a `snapshot` of the job so far."""
    service = _service(request)
    sub = service.events.subscribe()  # before the snapshot is read: nothing falls between the two
    try:
        job = service.get(job_id, _who(request))
    except APIError:
        await sub.aclose()
        raise

    async def stream() -> AsyncIterator[dict[str, Any]]:
        try:
            yield {
                "event": "snapshot",
                "data": json.dumps({"type": "snapshot", "job_id": job_id, **job.to_dict(service.concurrency())}),
            }
            if job.state.finished:
                yield {
                    "event": "ended",
                    "data": json.dumps(
                        {"type": EVENT_TYPE, "job_id": job_id, "step": "ended", **job.summary(service.concurrency())}
                    ),
                }
                return
            async for ev in sub:
                if ev["type"] != EVENT_TYPE or ev.get("job_id") != job_id:
                    continue
                yield {"id": str(ev["seq"]), "event": ev["step"], "data": json.dumps(ev)}
                if ev["step"] == "ended":
                    return
        finally:
            await sub.aclose()

    return EventSourceResponse(stream(), ping=SSE_PING_S)


def _document(service: JobService, job: Job) -> Document:
    doc = Document(source=job.spec.source, model=job.spec.model, mode=job.spec.mode)
    for rec in job.pages:
        if rec.state == PageState.DONE:
            page = service.db.read_page(job.id, rec.number)
            if page is not None:
                doc.pages.append(page)
    if doc.pages:
        doc.model = doc.pages[0].model
        doc.mode = doc.pages[0].mode
    return doc


def _zip(service: JobService, job: Job, doc: Document) -> bytes:
    """Everything `vlmswap ocr --format zip` writes; the pages are rendered again for the annotated PNGs."""
    stem = export.source_stem(job.spec.source)
    numbers = ",".join(str(p.number) for p in doc.pages)
    images = {}
    if numbers:
        with open_bytes(
            service.db.input_path(job.id).read_bytes(), job.spec.source, pages=numbers, dpi=job.spec.dpi
        ) as src:
            images = {n: src.page(n).image for n in src.selected}
    return export.zip_bytes(export.bundle(doc, images, stem))


@router.get("/api/jobs/{job_id}/result", responses=RESULT_ERRORS)
async def result(request: Request, job_id: str, format: Literal["json", "md", "zip"] = Query("json")) -> Response:
    """The pages read so far as a Document (json), Markdown (md) or everything zipped (zip).

    200 once the job has ended; 206 while it runs (the pages done so far). `X-Job-State` says which.
    """
    service = _service(request)
    job = service.get(job_id, _who(request))
    doc = _document(service, job)
    status = 200 if job.state.finished else 206
    headers = {"X-Job-State": str(job.state), "X-Pages-Done": str(len(doc.pages)), "X-Pages-Total": str(len(job.pages))}
    stem = export.source_stem(job.spec.source)
    if format == "md":
        return Response(
            export.document_markdown(doc, stem=stem),
            status_code=status,
            headers=headers,
            media_type="text/markdown; charset=utf-8",
        )
    if format == "zip":
        data = await asyncio.to_thread(_zip, service, job, doc)
        headers["Content-Disposition"] = f'attachment; filename="{stem}.zip"'
        return Response(data, status_code=status, headers=headers, media_type="application/zip")
    return JSONResponse(doc.to_dict(), status_code=status, headers=headers)


@router.get("/api/jobs/{job_id}/pages/{number}", responses=PAGE_ERRORS)
async def page(request: Request, job_id: str, number: int) -> dict[str, Any]:
    """One page's JSON once it is read (409 while it is still to come or failed)."""
    service = _service(request)
    job = service.get(job_id, _who(request))
    rec = next((p for p in job.pages if p.number == number), None)
    if rec is None:
        raise APIError(
            404,
            f"page {number} is not part of job {job_id} (pages {job.spec.pages[0]}...{job.spec.pages[-1]})",
            param="number",
            code="page_not_in_job",
        )
    if rec.state != PageState.DONE:
        why = f": {rec.error}" if rec.error else ""
        raise APIError(409, f"page {number} is {rec.state}{why}", param="number", code=f"page_{rec.state}")
    got = service.db.read_page(job_id, number)
    if got is None:
        raise APIError(500, f"page {number} is done but its result file is missing", code="page_missing")
    return {"source": job.spec.source, **got.to_dict()}


@router.get("/api/jobs/{job_id}/pages/{number}/image", responses=IMAGE_ERRORS)
async def page_image(request: Request, job_id: str, number: int) -> Response:
    """The page as the job read it (PNG, rendered again at the job's dpi): the image its boxes refer to."""
    service = _service(request)
    job = service.get(job_id, _who(request))
    if number not in job.spec.pages:
        raise APIError(404, f"page {number} is not part of job {job_id}", param="number", code="page_not_in_job")

    def render() -> bytes:
        buf = io.BytesIO()
        with open_bytes(
            service.db.input_path(job_id).read_bytes(), job.spec.source, pages=str(number), dpi=job.spec.dpi
        ) as src:
            src.page(number).image.save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    return Response(await asyncio.to_thread(render), media_type="image/png")


@router.delete("/api/jobs/{job_id}", responses=JOB_ERRORS)
async def cancel(request: Request, job_id: str, purge: bool = False) -> dict[str, Any]:
    """Cancel (pages done are kept); `?purge=true` also removes the job and its files."""
    service = _service(request)
    job = await service.cancel(job_id, _who(request), purge=purge)
    return {**job.summary(service.concurrency()), "purged": purge}


__all__ = ["JobService", "router"]
