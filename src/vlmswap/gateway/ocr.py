"""`POST /api/ocr`: upload documents, get each page's layout JSON and the Markdown.

Multipart form: one or more `file` parts, and the fields `model` (default rapidocr), `mode`
(layout | layout-only | text | web-parsing | scene-spotting | svg), `pages` (e.g. 1-3,7), `dpi`
(PDF rendering, default 150).
Every upload is opened and checked before any model runs, so a bad file is a 4xx at once
with the reason. Pages then go one by one through a lease on the model, like any other
request, so OCR queues and switches with the chat traffic instead of around it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from vlmswap.api.errors import APIError
from vlmswap.api.openapi import error_responses
from vlmswap.documents.export import document_markdown
from vlmswap.documents.inputs import DEFAULT_DPI, DocumentError, SourceFile, open_bytes
from vlmswap.documents.pipeline import answer_text, chat_url, ocr_source, post_chat_completion
from vlmswap.documents.prompts import normalize_mode
from vlmswap.gateway import state
from vlmswap.gateway.guard import identity
from vlmswap.gateway.schemas import OCR_FORM, OcrResult
from vlmswap.registry.config import ModelSpec, Registry
from vlmswap.registry.profiles import OPEN, Identity
from vlmswap.swap.admission import Admission
from vlmswap.swap.manager import Lease

router = APIRouter()

MAX_FILES = 20
DEFAULT_MODEL = "rapidocr"
PAGE_TIMEOUT_S = 900.0


def form_field(form: Any, name: str, default: str | None = None) -> str | None:
    """A text field of a multipart form, stripped; `default` when absent, empty or a file."""
    value = form.get(name)
    if value is None or isinstance(value, UploadFile):
        return default
    value = str(value).strip()
    return value or default


def _cap_bytes(request: Request) -> int:
    return int(state.manager(request).settings.max_body_mb * 1024 * 1024)


async def _open_uploads(uploads: list[UploadFile], pages: str | None, dpi: float, cap: int) -> list[SourceFile]:
    opened: list[SourceFile] = []
    try:
        for up in uploads:
            name = up.filename or "upload"
            data = await up.read(cap + 1)
            if len(data) > cap:
                raise APIError(
                    413, f"{name}: file is over the limit of {cap} bytes", param="file", code="file_too_large"
                )
            try:
                opened.append(await asyncio.to_thread(open_bytes, data, name, pages=pages, dpi=dpi))
            except DocumentError as exc:
                raise document_error(exc) from None
    except BaseException:
        for src in opened:
            src.close()
        raise
    return opened


@dataclass(frozen=True)
class OcrForm:
    """The fields `/api/ocr` and `/api/jobs` share, checked (the uploads are still unread)."""

    uploads: list[UploadFile]
    model: str
    spec: ModelSpec
    mode: str
    dpi: float
    pages: str | None


async def read_form(
    request: Request, registry: Registry, *, max_files: int = MAX_FILES, max_fields: int = 20
) -> tuple[Any, OcrForm]:
    """The multipart form and its checked fields (4xx with the reason); the caller closes the form.

    The model is resolved against `registry` before any upload is read, so an unknown model is a
    404 at once.
    """
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise APIError(
            415,
            "send the documents as multipart/form-data with one or more `file` parts",
            code="unsupported_media_type",
        )
    try:
        form = await request.form(max_files=max_files, max_fields=max_fields)
    except Exception as exc:  # malformed multipart, too many parts
        raise APIError(400, f"could not read the multipart form: {exc}", code="invalid_form") from None
    try:
        uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not uploads:
            raise APIError(400, "no `file` part in the form", param="file", code="missing_file")
        model = form_field(form, "model", DEFAULT_MODEL) or DEFAULT_MODEL
        try:
            mode = normalize_mode(form_field(form, "mode", "layout") or "layout")
        except ValueError as exc:
            raise APIError(400, str(exc), param="mode", code="invalid_mode") from None
        dpi_text = form_field(form, "dpi")
        try:
            dpi = float(dpi_text) if dpi_text is not None else DEFAULT_DPI
        except ValueError:
            raise APIError(400, f"dpi must be a number, not {dpi_text!r}", param="dpi", code="invalid_dpi") from None
        name = registry.require(model)  # 404 for an unknown model, before reading uploads
        who = identity(request.scope)
        if who is not None and not who.may_use(name):
            raise APIError(403, f"profile {who.name} may not use {name}", param="model", code="model_not_allowed")
        spec = registry.models[name]
    except BaseException:
        await form.close()
        raise
    return form, OcrForm(uploads, model, spec, mode, dpi, form_field(form, "pages"))


def document_error(exc: DocumentError) -> APIError:
    """A file that cannot be used, as the 4xx that names it."""
    return APIError(exc.status, str(exc), param="pages" if "page range" in exc.reason else "file", code=exc.code)


async def leased_chat(
    admission: Admission,
    who: Identity,
    http: httpx.AsyncClient,
    model: str,
    body: dict[str, Any],
    on_lease: Callable[[Lease], None] | None = None,
) -> str:
    """One page's chat request, admitted like any request (the caller's profile, its limits, the queue,
    usage, metrics): queued, grouped and switched with the chat traffic.

    `on_lease` is called once the scheduler has granted the lease, before the request is sent.
    """
    async with admission.lease(who, model) as (lease, entry):
        if on_lease is not None:
            on_lease(lease)
        answer = await post_chat_completion(http, chat_url(lease.base_url), {**body, "model": lease.spec.served_name})
        entry.count(answer)
        return answer_text(answer)


def page_client() -> httpx.AsyncClient:
    """The HTTP client page requests go out on (a page can take minutes on a busy GPU)."""
    return httpx.AsyncClient(timeout=httpx.Timeout(PAGE_TIMEOUT_S, connect=10.0), trust_env=False)


@router.post(
    "/api/ocr",
    response_model=OcrResult,
    openapi_extra={"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": OCR_FORM}}}},
    responses=error_responses(
        {
            400: "bad form, mode, dpi or page range; a file that is no image or PDF",
            404: "unknown model",
            413: "a file or the body over gateway.max_body_mb",
            415: "not multipart/form-data",
            403: "the profile may not use the model",
            429: "the profile is over its requests_per_minute or max_concurrent",
            502: "the model's backend failed",
            503: "the model is unavailable or the queue is full",
        }
    ),
)
async def api_ocr(request: Request) -> JSONResponse:
    cap = _cap_bytes(request)  # the gateway's Guard caps the whole body at the same size
    form, fields = await read_form(request, state.manager(request).registry)
    try:
        opened = await _open_uploads(fields.uploads, fields.pages, fields.dpi, cap)
    finally:
        await form.close()
    admission, who = state.admission(request), identity(request.scope) or OPEN

    async def chat(body: dict[str, Any]) -> str:
        if await request.is_disconnected():  # nobody will read the rest: stop leasing the model for it
            raise APIError(499, "client closed the request", code="client_gone")
        return await leased_chat(admission, who, http, fields.model, body)

    docs = []
    try:
        async with page_client() as http:
            for src in opened:
                docs.append(
                    await ocr_source(
                        src, model_name=fields.spec.served_name, spec=fields.spec, mode=fields.mode, chat=chat
                    )
                )
    except DocumentError as exc:  # a PDF page that fails to render
        raise APIError(exc.status, str(exc), param="file", code=exc.code) from None
    finally:
        for src in opened:
            src.close()
    markdown = "\n\n".join(document_markdown(d) for d in docs)
    return JSONResponse({"document": docs[0].to_dict(), "documents": [d.to_dict() for d in docs], "markdown": markdown})
