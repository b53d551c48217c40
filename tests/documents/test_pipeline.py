"""What the pipeline sends per page (the resized image, the prompt, dots.ocr's sampling) and how it reads errors."""

from __future__ import annotations

import asyncio
import base64
import io
import json

import httpx
import pytest
from PIL import Image

from vlmswap.api.errors import APIError
from vlmswap.documents import dots_prompts
from vlmswap.documents.inputs import PageImage
from vlmswap.documents.pipeline import RemoteSpec, chat_url, ocr_page, ocr_pages, post_chat
from vlmswap.registry.config import ModelSpec


def decode(body: dict) -> tuple[Image.Image, str]:
    parts = body["messages"][0]["content"]
    url = next(p["image_url"]["url"] for p in parts if p["type"] == "image_url")
    text = next(p["text"] for p in parts if p["type"] == "text")
    assert url.startswith("data:image/png;base64,")
    return Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1]))), text


def page(w: int = 1240, h: int = 1754, n: int = 1) -> PageImage:
    return PageImage(n, Image.new("RGB", (w, h), "white"), (w, h))


def test_dots_page_is_sent_resized_with_the_verbatim_prompt_and_boxes_come_back_on_the_page():
    seen = []

    async def chat(body):
        im, prompt = decode(body)
        seen.append((body, im.size, prompt))
        # a dots.ocr-style answer in input pixels: the right half of the input
        return json.dumps([{"bbox": [im.width // 2, 0, im.width, im.height], "category": "Text", "text": "x"}])

    spec = ModelSpec(served_name="dots", cmd=["x"], family="dots_ocr")
    result = asyncio.run(ocr_page(page(), model_name="dots", spec=spec, mode="layout", chat=chat))
    body, size, prompt = seen[0]
    assert size == (1232, 1764) == (result.input_width, result.input_height)
    assert prompt == dots_prompts.IMAGE_PREFIX + dots_prompts.layout_all()  # as dots.ocr's client sends it
    assert body["temperature"] == 0.1 and body["top_p"] == 0.9 and "max_tokens" not in body
    assert body["model"] == "dots"
    assert result.blocks[0].bbox == [620.0, 0.0, 1240.0, 1754.0]
    assert set(result.timings) == {"prepare_s", "model_s", "parse_s", "total_s"}


@pytest.mark.parametrize(
    "family,expected", [("qwen3_vl", (1248, 1760)), ("qwen2_5_vl", (1232, 1764)), ("phi3_v", (1240, 1754))]
)
def test_each_family_gets_its_own_input_size(family, expected):
    sizes = []

    async def chat(body):
        sizes.append(decode(body)[0].size)
        return "plain text"

    pages = asyncio.run(
        ocr_pages([page(), page(n=2)], model_name="m", spec=RemoteSpec(family), mode="text", chat=chat, max_tokens=99)
    )
    assert sizes == [expected, expected] and [p.number for p in pages] == [1, 2]
    assert all(p.blocks[0].text == "plain text" and p.mode == "text" for p in pages)


def test_registry_max_pixels_shrinks_what_is_sent():
    sizes = []

    async def chat(body):
        sizes.append(decode(body)[0].size)
        return "[]"

    spec = ModelSpec(served_name="m", cmd=["x"], family="qwen2_vl", max_pixels=401_408)
    asyncio.run(ocr_page(page(), model_name="m", spec=spec, mode="layout", chat=chat))
    w, h = sizes[0]
    assert w * h <= 401_408 and w % 28 == 0 and h % 28 == 0


def test_chat_url_accepts_both_base_forms():
    assert chat_url("http://h:1") == "http://h:1/v1/chat/completions"
    assert chat_url("http://h:1/v1/") == "http://h:1/v1/chat/completions"


def test_backend_errors_become_api_errors_with_the_backend_message():
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/bad":
            return httpx.Response(400, json={"error": {"message": "image too large for context"}})
        if request.url.path == "/down":
            return httpx.Response(503, text="busy", headers={"Retry-After": "3"})
        return httpx.Response(200, json={"choices": [{"message": {"content": "ok"}}]})

    async def go():
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as http:
            assert await post_chat(http, "http://x/ok", {}) == "ok"
            with pytest.raises(APIError) as bad:
                await post_chat(http, "http://x/bad", {})
            with pytest.raises(APIError) as down:
                await post_chat(http, "http://x/down", {})
            return bad.value, down.value

    bad, down = asyncio.run(go())
    assert bad.status == 400 and "image too large for context" in bad.message
    assert down.status == 502 and down.headers == {"retry-after": "3"}


def test_unreachable_backend_is_a_502():
    async def go():
        async with httpx.AsyncClient(timeout=2) as http:
            await post_chat(http, "http://127.0.0.1:9/v1/chat/completions", {})

    with pytest.raises(APIError) as info:
        asyncio.run(go())
    assert info.value.status == 502 and info.value.code == "backend_unreachable"
