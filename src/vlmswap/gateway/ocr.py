"""`POST /api/ocr`: upload documents, get each page's layout JSON and the Markdown.

Multipart form: one or more `file` parts, and the fields `model` (default rapidocr), `mode`
(layout | layout-only | text), `pages` (e.g. 1-3,7), `dpi` (PDF rendering, default 150).
Every upload is opened and checked before any model runs, so a bad file is a 4xx at once
with the reason. Pages then go one by one through a lease on the model, like any other
request, so OCR queues and switches with the chat traffic instead of around it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.datastructures import UploadFile

from vlmswap.documents.export import document_markdown
from vlmswap.documents.inputs import DEFAULT_DPI, DocumentError, SourceFile, open_bytes
from vlmswap.documents.pipeline import chat_url, ocr_source, post_chat
from vlmswap.documents.prompts import normalize_mode
from vlmswap.errors import APIError
from vlmswap.gateway.schemas import OCR_FORM, OcrResult
from vlmswap.openapi import error_responses

router = APIRouter()

MAX_FILES = 20
DEFAULT_MODEL = "rapidocr"


def _field(form: Any, name: str, default: str | None = None) -> str | None:
    value = form.get(name)
    if value is None or isinstance(value, UploadFile):
        return default
    value = str(value).strip()
    return value or default


def _cap_bytes(request: Request) -> int:
    manager = request.app.state.manager
    return int(manager.settings.max_body_mb * 1024 * 1024)


async def _open_uploads(uploads: list[UploadFile], pages: str | None, dpi: float, cap: int) -> list[SourceFile]:
    opened: list[SourceFile] = []
    try:
        for up in uploads:
            name = up.filename or "upload"
            data = await up.read(cap + 1)
            if len(data) > cap:
                raise APIError(413, f"{name}: file is over the limit of {cap} bytes", param="file",
                               code="file_too_large")
            try:
                opened.append(await asyncio.to_thread(open_bytes, data, name, pages=pages, dpi=dpi))
            except DocumentError as exc:
                raise APIError(exc.status, str(exc), param="pages" if "page range" in exc.reason else "file",
                               code=exc.code) from None
    except BaseException:
        for src in opened:
            src.close()
        raise
    return opened


@router.post("/api/ocr", response_model=OcrResult, openapi_extra={"requestBody": {
    "required": True, "content": {"multipart/form-data": {"schema": OCR_FORM}}}}, responses=error_responses({
        400: "bad form, mode, dpi or page range; a file that is no image or PDF", 404: "unknown model",
        413: "a file or the body over gateway.max_body_mb", 415: "not multipart/form-data",
        502: "the model's backend failed", 503: "the model is unavailable or the queue is full"}))
async def api_ocr(request: Request) -> JSONResponse:
    cap = _cap_bytes(request)    # the gateway's Guard caps the whole body at the same size
    ctype = request.headers.get("content-type", "")
    if not ctype.startswith("multipart/form-data"):
        raise APIError(415, "send the documents as multipart/form-data with one or more `file` parts",
                       code="unsupported_media_type")
    try:
        form = await request.form(max_files=MAX_FILES, max_fields=20)
    except Exception as exc:   # malformed multipart, too many parts
        raise APIError(400, f"could not read the multipart form: {exc}", code="invalid_form") from None
    try:
        uploads = [f for f in form.getlist("file") if isinstance(f, UploadFile)]
        if not uploads:
            raise APIError(400, "no `file` part in the form", param="file", code="missing_file")
        model = _field(form, "model", DEFAULT_MODEL) or DEFAULT_MODEL
        try:
            mode = normalize_mode(_field(form, "mode", "layout") or "layout")
        except ValueError as exc:
            raise APIError(400, str(exc), param="mode", code="invalid_mode") from None
        dpi_text = _field(form, "dpi")
        try:
            dpi = float(dpi_text) if dpi_text is not None else DEFAULT_DPI
        except ValueError:
            raise APIError(400, f"dpi must be a number, not {dpi_text!r}", param="dpi", code="invalid_dpi") from None
        manager = request.app.state.manager
        registry_name = manager.resolve(model)          # 404 for an unknown model, before reading uploads
        spec = manager.registry.models[registry_name]
        opened = await _open_uploads(uploads, _field(form, "pages"), dpi, cap)
    finally:
        await form.close()

    async def chat(body: dict[str, Any]) -> str:
        if await request.is_disconnected():   # nobody will read the rest: stop leasing the model for it
            raise APIError(499, "client closed the request", code="client_gone")
        async with manager.lease(model) as lease:
            return await post_chat(http, chat_url(lease.base_url), {**body, "model": lease.spec.served_name})

    docs = []
    try:
        async with httpx.AsyncClient(timeout=httpx.Timeout(900.0, connect=10.0), trust_env=False) as http:
            for src in opened:
                docs.append(await ocr_source(src, model_name=spec.served_name, spec=spec, mode=mode, chat=chat))
    except DocumentError as exc:       # a PDF page that fails to render
        raise APIError(exc.status, str(exc), param="file", code=exc.code) from None
    finally:
        for src in opened:
            src.close()
    markdown = "\n\n".join(document_markdown(d) for d in docs)
    return JSONResponse({"document": docs[0].to_dict(), "documents": [d.to_dict() for d in docs],
                         "markdown": markdown})
