"""A real worker process serving the tiny Qwen2-VL, driven by the official `openai` client:
answers with an image attached as a data URL, streaming that matches non-streaming, usage
and finish reasons, and vLLM's sleep/wake round trip over HTTP."""

from __future__ import annotations

import base64
import io
import os
import subprocess
from pathlib import Path

import httpx
import openai
import pytest

from tests.support import PY, free_port
from tests.transformers_engine.conftest import SERVED_NAME, picture
from vlmswap.worker.engines.base import GenerationRequest, Message

PROMPT = "What is written on this picture?"


def data_url(im) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def messages(word: str) -> list[dict]:
    return [
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": data_url(picture(word))}},
                {"type": "text", "text": PROMPT},
            ],
        }
    ]


@pytest.fixture(scope="module")
def client(tiny_worker: str) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=tiny_worker + "/v1",
        api_key="unused",
        max_retries=0,
        timeout=60,
        http_client=httpx.Client(trust_env=False),
    )


def test_models_lists_the_served_name_and_its_context(client: openai.OpenAI) -> None:
    models = client.models.list().data
    assert [m.id for m in models] == [SERVED_NAME]
    assert models[0].model_extra["max_model_len"] == 4096


def test_chat_with_an_image_answers_as_the_engine_does_in_process(client: openai.OpenAI, engine) -> None:
    """Same checkpoint, same greedy request: the worker's answer is the engine's, token for token,
    so the image crossed HTTP intact and reached the model."""
    reply = client.chat.completions.create(model=SERVED_NAME, messages=messages("hello"), max_tokens=10, temperature=0)
    gen = engine.generate(
        GenerationRequest([Message("user", PROMPT, [picture("hello")])], max_tokens=10, temperature=0)
    )
    expected = "".join(gen)
    choice = reply.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == expected and expected
    assert choice.finish_reason == "length"
    assert reply.usage.completion_tokens == 10
    assert reply.usage.prompt_tokens == gen.prompt_tokens
    assert reply.usage.total_tokens == gen.prompt_tokens + 10

    other = client.chat.completions.create(model=SERVED_NAME, messages=messages("world"), max_tokens=10, temperature=0)
    assert other.choices[0].message.content != expected


def test_streamed_deltas_join_to_the_non_streamed_answer(client: openai.OpenAI) -> None:
    whole = client.chat.completions.create(model=SERVED_NAME, messages=messages("stream"), max_tokens=16, temperature=0)
    stream = client.chat.completions.create(
        model=SERVED_NAME,
        messages=messages("stream"),
        max_tokens=16,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    deltas = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert len(deltas) > 1  # really streamed, not one block
    assert "".join(deltas) == whole.choices[0].message.content
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 16


def test_sleep_then_wake_over_http_leaves_it_answering(client: openai.OpenAI, tiny_worker: str) -> None:
    before = (
        client.chat.completions.create(model=SERVED_NAME, messages=messages("sleep"), max_tokens=8, temperature=0)
        .choices[0]
        .message.content
    )
    with httpx.Client(base_url=tiny_worker, timeout=30, trust_env=False) as http:
        assert http.post("/sleep", params={"level": 1}).status_code == 200
        assert http.get("/is_sleeping").json() == {"is_sleeping": True}
        assert http.get("/health").status_code == 200  # as vLLM: asleep is still healthy
        with pytest.raises(openai.APIStatusError) as refused:
            client.chat.completions.create(model=SERVED_NAME, messages=messages("sleep"), max_tokens=8)
        assert refused.value.status_code == 503
        assert http.post("/wake_up").status_code == 200
        assert http.get("/is_sleeping").json() == {"is_sleeping": False}
    after = (
        client.chat.completions.create(model=SERVED_NAME, messages=messages("sleep"), max_tokens=8, temperature=0)
        .choices[0]
        .message.content
    )
    assert after == before and after


def test_level_2_sleep_drops_the_weights_and_vllms_three_call_wake_reloads_them(
    client: openai.OpenAI, tiny_worker: str
) -> None:
    before = (
        client.chat.completions.create(model=SERVED_NAME, messages=messages("level"), max_tokens=8, temperature=0)
        .choices[0]
        .message.content
    )
    with httpx.Client(base_url=tiny_worker, timeout=60, trust_env=False) as http:
        assert http.post("/sleep", params={"level": 2}).status_code == 200
        assert http.post("/wake_up", params={"tags": "weights"}).status_code == 200
        assert http.get("/is_sleeping").json() == {"is_sleeping": True}  # the KV cache is not back yet
        r = http.post("/collective_rpc", json={"method": "reload_weights"})
        assert r.status_code == 200 and r.json() == {"results": [None]}
        assert http.post("/wake_up", params={"tags": "kv_cache"}).status_code == 200
        assert http.get("/is_sleeping").json() == {"is_sleeping": False}
        bad = http.post("/collective_rpc", json={"method": "execute_model"})
        assert bad.status_code == 400 and "reload_weights" in bad.json()["error"]["message"]
        assert http.post("/wake_up", params={"tags": "everything"}).status_code == 400
    after = (
        client.chat.completions.create(model=SERVED_NAME, messages=messages("level"), max_tokens=8, temperature=0)
        .choices[0]
        .message.content
    )
    assert after == before and after  # the same weights, read again from the checkpoint


def test_worker_refuses_a_hub_id_that_is_not_cached(tmp_path: Path) -> None:
    """The worker never downloads: an uncached id ends the process with one clear line."""
    env = {**os.environ, "HF_HUB_CACHE": str(tmp_path / "empty-cache")}
    done = subprocess.run(
        [
            PY,
            "-m",
            "vlmswap",
            "worker",
            "--engine",
            "transformers",
            "--model",
            "vlmswap/not-downloaded",
            "--port",
            str(free_port()),
            "--device",
            "cpu",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert done.returncode != 0
    assert "vlmswap/not-downloaded: not a local folder and not in the Hugging Face cache" in done.stderr
    assert "never downloads" in done.stderr
