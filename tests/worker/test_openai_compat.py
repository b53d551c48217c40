"""The official `openai` client works against the worker, streamed and not; vLLM's routes answer alike."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from tests.worker.conftest import Worker, chat_body, png_data_url, render_page
from vlmswap.documents import dots_prompts
from vlmswap.documents.metrics import cer

LINES = ["Streaming sends text as it comes.", "The final chunk carries the reason."]


@pytest.fixture(scope="module")
def image_url() -> str:
    return png_data_url(render_page(LINES, width=700, min_height=700).image)


@pytest.fixture()
def client(rapidocr_worker: Worker) -> openai.OpenAI:
    return openai.OpenAI(base_url=rapidocr_worker.url + "/v1", api_key="unused", max_retries=0, timeout=60)


def messages(image_url: str, prompt: str) -> list[dict]:
    return chat_body(image_url, prompt)["messages"]


def test_openai_client_non_streaming(client: openai.OpenAI, image_url: str) -> None:
    resp = client.chat.completions.create(
        model="rapidocr", messages=messages(image_url, dots_prompts.ocr()), temperature=0.1, top_p=0.9, max_tokens=512
    )
    assert resp.object == "chat.completion" and resp.model == "rapidocr"
    assert resp.choices[0].message.role == "assistant"
    assert cer("\n".join(LINES), resp.choices[0].message.content or "") < 0.02
    assert resp.choices[0].finish_reason == "stop"
    assert resp.usage is not None and resp.usage.completion_tokens > 0 and resp.usage.prompt_tokens > 0


def test_openai_client_streaming_matches_non_streaming(client: openai.OpenAI, image_url: str) -> None:
    spotting = messages(image_url, dots_prompts.scene_spotting())  # a JSON answer, one element per line
    whole = client.chat.completions.create(model="rapidocr", messages=spotting)
    stream = client.chat.completions.create(
        model="rapidocr", messages=spotting, stream=True, stream_options={"include_usage": True}
    )
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    content_chunks = [c for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(content_chunks) > 1  # sent piece by piece, not as one blob
    text = "".join(c.choices[0].delta.content for c in content_chunks)
    assert text == whole.choices[0].message.content
    assert len(json.loads(text)) == len(LINES)
    finals = [c for c in chunks if c.choices and c.choices[0].finish_reason]
    assert [c.choices[0].finish_reason for c in finals] == ["stop"]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == whole.usage.completion_tokens  # type: ignore[union-attr]
    assert all(c.id == chunks[0].id for c in chunks)


def test_stream_wire_format_is_sse_ending_with_done(rapidocr_worker: Worker, image_url: str) -> None:
    with rapidocr_worker.client() as c:
        with c.stream("POST", "/v1/chat/completions", json=chat_body(image_url, "read it", stream=True)) as r:
            assert r.status_code == 200
            assert r.headers["content-type"].startswith("text/event-stream")
            events = [line for line in r.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events)
    assert events[-1] == "data: [DONE]"
    first = json.loads(events[0][6:])
    assert first["object"] == "chat.completion.chunk"
    assert first["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    last = json.loads(events[-2][6:])
    assert last["choices"][0]["finish_reason"] == "stop" and "usage" not in last  # usage only when asked


def test_models_lists_the_served_name(rapidocr_worker: Worker) -> None:
    with rapidocr_worker.client() as c:
        body = c.get("/v1/models").json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["rapidocr"]
    assert body["data"][0]["object"] == "model" and body["data"][0]["owned_by"] == "vlmswap"
    assert body["data"][0]["max_model_len"] > 0


def test_openai_client_unknown_model_is_404_naming_the_served_one(client: openai.OpenAI, image_url: str) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="gpt-4o", messages=messages(image_url, "hi"))
    assert "rapidocr" in str(info.value)


def test_completions_route_speaks_openai_and_rapidocr_refuses_text_only(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="rapidocr", prompt="no image here")
    assert "image" in str(info.value)


def test_health_is_200_and_ready_line_was_printed(rapidocr_worker: Worker) -> None:
    assert httpx.get(rapidocr_worker.url + "/health", trust_env=False).status_code == 200
    assert "vlmswap worker ready: rapidocr serving 'rapidocr'" in rapidocr_worker.log.read_text()
