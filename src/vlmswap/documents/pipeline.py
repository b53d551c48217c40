"""Pages -> model -> Pages with blocks: one chat request per page.

The pipeline itself only builds requests and reads answers; *how* a request reaches a model
is a `chat` callable, so the same code runs in the CLI without a gateway (`LocalRunner`: an
in-process manager on a registry) and inside the gateway, for `/api/ocr` and document jobs
(which lease models from its manager). `vlmswap ocr --gateway` submits jobs instead.
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
from PIL import Image

from vlmswap.api.errors import APIError
from vlmswap.documents.coords import input_to_page
from vlmswap.documents.inputs import PageImage, SourceFile
from vlmswap.documents.layout import Block, Document, Page
from vlmswap.documents.parsers import parse_output
from vlmswap.documents.prompts import PromptPlan, plan
from vlmswap.documents.resize import SizingSpec, input_size, rule_for, to_model_input
from vlmswap.registry.config import ModelSpec, Registry, load_registry

#: dots.ocr's own client settings (dots_ocr/model/inference.py).
TEMPERATURE = 0.1
TOP_P = 0.9

ChatFn = Callable[[dict[str, Any]], Awaitable[str]]


@dataclass
class RemoteSpec:
    """A model known only by what a gateway tells about it."""

    family: str = "generic"
    min_pixels: int | None = None
    max_pixels: int | None = None


def png_data_url(image: Image.Image) -> str:
    # Fast zlib level: a page PNG is encoded once per request and decoded once; size matters less.
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_request(model_name: str, image: Image.Image, prompt: str, max_tokens: int | None = None) -> dict[str, Any]:
    """The OpenAI chat body for one page: the image first, then the prompt (dots.ocr's order)."""
    body: dict[str, Any] = {
        "model": model_name,
        "messages": [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": png_data_url(image)}},
                    {"type": "text", "text": prompt},
                ],
            }
        ],
        "temperature": TEMPERATURE,
        "top_p": TOP_P,
        "stream": False,
    }
    if max_tokens is not None:  # omitted: the backend allows the rest of its context
        body["max_tokens"] = max_tokens
    return body


def make_page(
    page: PageImage,
    in_size: tuple[int, int],
    prompt_plan: PromptPlan,
    raw: str,
    model_name: str,
    timings: dict[str, float] | None = None,
) -> Page:
    """Parse one answer and map its boxes onto the page. Pure: no I/O."""
    result = parse_output(prompt_plan.format, raw, in_size)
    flags = list(prompt_plan.flags) + result.flags
    blocks: list[Block] = []
    dropped = 0
    for rb in result.blocks:
        bbox = None
        if rb.bbox is not None:
            if rb.point:
                x, y = rb.bbox[0] * page.size[0] / in_size[0], rb.bbox[1] * page.size[1] / in_size[1]
                inside = 0 <= x <= page.size[0] and 0 <= y <= page.size[1]
                bbox = [round(x, 1), round(y, 1), round(x, 1), round(y, 1)] if inside else None
            else:
                bbox = input_to_page(rb.bbox, in_size, page.size)
            if bbox is None:
                dropped += 1
                if not rb.text:
                    continue  # a box off the page with no text carries nothing
        blocks.append(Block(len(blocks), rb.category, bbox, rb.text))
    if dropped:
        flags.append(f"boxes_dropped_outside_page:{dropped}")
    return Page(
        number=page.number,
        width=page.size[0],
        height=page.size[1],
        input_width=in_size[0],
        input_height=in_size[1],
        blocks=blocks,
        model=model_name,
        mode=prompt_plan.mode,
        timings=dict(timings or {}),
        flags=flags,
        raw_output=raw,
    )


async def ocr_page(
    page: PageImage,
    *,
    model_name: str,
    spec: SizingSpec,
    mode: str,
    chat: ChatFn,
    max_tokens: int | None = None,
    prompt: str | None = None,
) -> Page:
    """One page through the model. `prompt` replaces the mode's prompt; the answer is still read
    in the mode's format (so a custom layout prompt must ask for the family's own format)."""
    t0 = time.perf_counter()
    rule = rule_for(spec)
    in_size = input_size(page.size[0], page.size[1], rule)
    prompt_plan = plan(spec.family, mode, in_size)
    if prompt:
        prompt_plan = replace(prompt_plan, prompt=prompt)
    body = await asyncio.to_thread(
        lambda: chat_request(model_name, to_model_input(page.image, rule), prompt_plan.prompt, max_tokens)
    )
    t1 = time.perf_counter()
    raw = await chat(body)
    t2 = time.perf_counter()
    out = make_page(page, in_size, prompt_plan, raw, model_name)
    t3 = time.perf_counter()
    out.timings = {"prepare_s": t1 - t0, "model_s": t2 - t1, "parse_s": t3 - t2, "total_s": t3 - t0}
    return out


async def ocr_pages(
    pages: Iterable[PageImage],
    *,
    model_name: str,
    spec: SizingSpec,
    mode: str,
    chat: ChatFn,
    max_tokens: int | None = None,
    on_page: Callable[[Page], None] | None = None,
) -> list[Page]:
    """Every page in order, one request at a time (the backend serves one model; pages queue anyway)."""
    out = []
    for page in pages:
        result = await ocr_page(page, model_name=model_name, spec=spec, mode=mode, chat=chat, max_tokens=max_tokens)
        out.append(result)
        if on_page is not None:
            on_page(result)
    return out


async def ocr_source(
    src: SourceFile,
    *,
    model_name: str,
    spec: SizingSpec,
    mode: str,
    chat: ChatFn,
    max_tokens: int | None = None,
    on_page: Callable[[Page, PageImage], Awaitable[None] | None] | None = None,
) -> Document:
    """One opened file's selected pages as a Document; pages are rendered one at a time, off the loop.

    `on_page(result, page_image)` sees each page as it is done, while its image is still at hand.
    """
    doc = Document(source=src.path, model=model_name, mode=plan(spec.family, mode).mode)
    for number in src.selected:
        page = await asyncio.to_thread(src.page, number)
        result = await ocr_page(page, model_name=model_name, spec=spec, mode=mode, chat=chat, max_tokens=max_tokens)
        doc.pages.append(result)
        if on_page is not None:
            maybe = on_page(result, page)
            if maybe is not None:
                await maybe
    return doc


# --- sending requests ---------------------------------------------------------------------------


def chat_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    return base + ("/chat/completions" if base.endswith("/v1") else "/v1/chat/completions")


def _error_message(resp: httpx.Response) -> str:
    try:
        err = resp.json().get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])
        if isinstance(err, str):
            return err
    except ValueError:
        pass
    return resp.text[:300] or resp.reason_phrase


async def post_chat_completion(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> dict[str, Any]:
    """POST one chat request; the answer (a chat completion, `usage` included), or APIError with the
    backend's message."""
    try:
        resp = await http.post(url, json=body)
    except httpx.TransportError as exc:
        raise APIError(
            502, f"model backend unreachable: {type(exc).__name__}: {exc}", code="backend_unreachable"
        ) from None
    if resp.status_code != 200:
        status = resp.status_code if 400 <= resp.status_code < 500 else 502
        raise APIError(
            status,
            f"model answered {resp.status_code}: {_error_message(resp)}",
            code="backend_error",
            headers={k: v for k, v in resp.headers.items() if k.lower() == "retry-after"},
        )
    try:
        answer = resp.json()
        answer_text(answer)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        raise APIError(502, "model answered with no chat completion", code="backend_error") from None
    if not isinstance(answer, dict):
        raise APIError(502, "model answered with no chat completion", code="backend_error")
    return answer


def answer_text(answer: dict[str, Any]) -> str:
    """The text of a chat completion's first choice."""
    return str(answer["choices"][0]["message"].get("content") or "")


async def post_chat(http: httpx.AsyncClient, url: str, body: dict[str, Any]) -> str:
    """POST one chat request; the answer's text, or APIError with the backend's message."""
    return answer_text(await post_chat_completion(http, url, body))


def unknown_model(model: str, known: Iterable[str]) -> APIError:
    return APIError(
        404, f"unknown model {model!r}; known: {', '.join(sorted(known))}", param="model", code="model_not_found"
    )


class LocalRunner:
    """An in-process manager on a registry (default: the shipped one): `vlmswap ocr` without a gateway."""

    def __init__(self, registry: Registry | None = None, state_dir: str | None = None, timeout_s: float = 600.0):
        self.registry = registry if registry is not None else load_registry()
        self._state_dir = state_dir
        self._timeout = timeout_s
        self._manager: Any = None
        self._http: httpx.AsyncClient | None = None

    async def resolve(self, model: str) -> tuple[str, ModelSpec]:
        name = self.registry.resolve(model)
        if name is None:
            raise unknown_model(model, self.registry.known_ids())
        return self.registry.models[name].served_name, self.registry.models[name]

    async def __aenter__(self) -> LocalRunner:
        from vlmswap.swap.manager import Manager

        self._manager = Manager(self.registry, state_dir=None if self._state_dir is None else Path(self._state_dir))
        await self._manager.start()
        self._http = httpx.AsyncClient(timeout=self._timeout, trust_env=False)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
        if self._manager is not None:
            await self._manager.shutdown()

    async def chat(self, body: dict[str, Any]) -> str:
        assert self._manager is not None and self._http is not None, "use `async with LocalRunner(...)`"
        async with self._manager.lease(body["model"]) as lease:
            return await post_chat(self._http, chat_url(lease.base_url), {**body, "model": lease.spec.served_name})


class GatewayRunner:
    """Chat requests through a running gateway's OpenAI API: `vlmswap ocr --gateway` against a gateway
    that serves no document jobs (an older gateway, any OpenAI-compatible server), page by page with local
    rendering."""

    def __init__(self, url: str, timeout_s: float = 600.0, api_key: str | None = None):
        self.url = url.rstrip("/")
        self._timeout = timeout_s
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http: httpx.AsyncClient | None = None

    async def __aenter__(self) -> GatewayRunner:
        self._http = httpx.AsyncClient(timeout=self._timeout, trust_env=False, headers=self._headers)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def resolve(self, model: str) -> tuple[str, SizingSpec]:
        """The model's family from the gateway's /v1/models, else from the default registry's entry."""
        try:
            async with httpx.AsyncClient(timeout=30.0, trust_env=False, headers=self._headers) as http:
                resp = await http.get(self.url + "/v1/models")
            resp.raise_for_status()
            listed = [m for m in resp.json().get("data", []) if isinstance(m, dict)]
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            raise APIError(
                502, f"gateway {self.url} did not list its models: {exc}", code="gateway_unreachable"
            ) from None
        entry = next(
            (m for m in listed if m.get("id") == model or model in (m.get("aliases") or []) or model == m.get("name")),
            None,
        )
        local = load_registry()
        name = local.resolve(model)
        if entry is None and name is not None:
            entry = next((m for m in listed if m.get("id") == local.models[name].served_name), None)
        if entry is None:
            raise unknown_model(model, [str(m.get("id")) for m in listed])
        meta: dict[str, Any] = entry["vlmswap"] if isinstance(entry.get("vlmswap"), dict) else entry
        family = meta.get("family")
        if family is None and name is not None and local.models[name].served_name == entry.get("id"):
            return local.models[name].served_name, local.models[name]
        return str(entry["id"]), RemoteSpec(str(family or "generic"), meta.get("min_pixels"), meta.get("max_pixels"))

    async def chat(self, body: dict[str, Any]) -> str:
        assert self._http is not None, "use `async with GatewayRunner(...)`"
        return await post_chat(self._http, self.url + "/v1/chat/completions", body)
