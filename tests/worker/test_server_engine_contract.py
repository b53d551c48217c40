"""The server's side of the engine contract, with an engine written for these tests.

A scripted engine (real code behind the real server on a real port, in a uvicorn thread) lets
the tests hold generation at a chosen point: streaming must deliver pieces while the engine is
still working, one generation runs at a time, a client that leaves mid-stream frees the
engine, and /health says 503 until the engine has loaded.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator

import httpx
import pytest
import uvicorn

from tests.support import free_port, wait_http
from vlmswap.worker.engines.base import Engine, Generation, GenerationRequest
from vlmswap.worker.server import create_app


class ScriptedGeneration(Generation):
    def __init__(self, engine: ScriptedEngine, pieces: list[str]):
        self.engine = engine
        self.pieces = pieces
        self.prompt_tokens = 1

    def __iter__(self) -> Iterator[str]:
        e = self.engine
        with e.count_lock:
            e.active += 1
            e.max_active = max(e.max_active, e.active)
        try:
            for i, piece in enumerate(self.pieces):
                if i == 1 and not e.gate.wait(10):  # hold after the first piece until the test opens the gate
                    raise RuntimeError("gate never opened")
                self.completion_tokens += 1
                yield piece
        finally:
            with e.count_lock:
                e.active -= 1
            e.finished.set()


class ScriptedEngine(Engine):
    name = "scripted"

    def __init__(self) -> None:
        self.loaded = threading.Event()  # set by the test to let load() return
        self.gate = threading.Event()  # set by the test to let generation go past piece 1
        self.finished = threading.Event()
        self.count_lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def load(self) -> None:
        if not self.loaded.wait(10):
            raise RuntimeError("never loaded")

    def generate(self, request: GenerationRequest) -> Generation:
        text = request.last_user_text
        if text == "fail":
            raise ValueError("this prompt is refused")
        self.last = ScriptedGeneration(self, [f"{w} " for w in text.split()])
        return self.last


class Served:
    def __init__(self, engine: ScriptedEngine, url: str, app: object):
        self.engine = engine
        self.url = url
        self.state = app.state.worker


def wait_for(condition, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


@pytest.fixture()
def served() -> Iterator[Served]:
    engine = ScriptedEngine()
    port = free_port()
    app = create_app(engine, "scripted")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not server.started:
            time.sleep(0.02)
        yield Served(engine, url, app)
    finally:
        engine.loaded.set()
        engine.gate.set()
        server.should_exit = True
        thread.join(10)


def body(text: str, **extra: object) -> dict:
    return {"model": "scripted", "messages": [{"role": "user", "content": text}], **extra}


def test_health_is_503_until_the_engine_has_loaded(served: Served) -> None:
    r = httpx.get(served.url + "/health", trust_env=False)
    assert r.status_code == 503 and "loading" in r.json()["error"]["message"]
    r = httpx.post(served.url + "/v1/chat/completions", json=body("hi"), trust_env=False)
    assert r.status_code == 503
    served.engine.loaded.set()
    wait_http(served.url + "/health", timeout=10)


def test_stream_delivers_pieces_while_the_engine_is_still_generating(served: Served) -> None:
    served.engine.loaded.set()
    wait_http(served.url + "/health", timeout=10)
    with httpx.Client(base_url=served.url, timeout=20, trust_env=False) as c:
        with c.stream("POST", "/v1/chat/completions", json=body("first second third", stream=True)) as r:
            lines = r.iter_lines()
            got = []
            for line in lines:
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    if delta.get("content"):
                        got.append(delta["content"])
                        break
            assert got == ["first "]
            assert not served.engine.finished.is_set()  # the engine is still held at the gate
            served.engine.gate.set()
            for line in lines:
                if line.startswith("data: {"):
                    delta = json.loads(line[6:])["choices"][0]["delta"]
                    got.append(delta.get("content") or "")
    assert "".join(got) == "first second third "


def test_one_generation_at_a_time_and_a_departed_client_frees_the_engine(served: Served) -> None:
    served.engine.loaded.set()
    wait_http(served.url + "/health", timeout=10)
    results: list[int] = []

    def plain_request() -> None:
        r = httpx.post(served.url + "/v1/chat/completions", json=body("queued request"), timeout=20, trust_env=False)
        results.append(r.status_code)

    with httpx.Client(base_url=served.url, timeout=20, trust_env=False) as c:
        with c.stream("POST", "/v1/chat/completions", json=body("left behind here", stream=True)) as r:
            for line in r.iter_lines():
                if '"content":"left ' in line:
                    break
            waiter = threading.Thread(target=plain_request)
            waiter.start()
            wait_for(lambda: served.state.waiting == 1)  # the second request is queued for the engine
            assert served.engine.max_active == 1
            assert results == []  # it waits for the engine
        # the streaming client has gone; the engine finishes, then serves the waiting request
    wait_for(lambda: served.state.clients_gone == 1)
    served.engine.gate.set()
    waiter.join(20)
    assert results == [200]
    assert served.engine.max_active == 1


def test_engine_value_error_is_400_and_server_keeps_serving(served: Served) -> None:
    served.engine.loaded.set()
    served.engine.gate.set()
    wait_http(served.url + "/health", timeout=10)
    r = httpx.post(served.url + "/v1/chat/completions", json=body("fail"), trust_env=False)
    assert r.status_code == 400 and r.json()["error"]["message"] == "this prompt is refused"
    r = httpx.post(
        served.url + "/v1/completions", json={"model": "scripted", "prompt": "a b", "stream": False}, trust_env=False
    )
    assert r.status_code == 200
    assert r.json()["object"] == "text_completion" and r.json()["choices"][0]["text"] == "a b "


def test_completions_stream_and_stop_string_split_across_pieces(served: Served) -> None:
    served.engine.loaded.set()
    served.engine.gate.set()
    wait_http(served.url + "/health", timeout=10)
    with httpx.Client(base_url=served.url, timeout=20, trust_env=False) as c:
        with c.stream(
            "POST",
            "/v1/completions",
            json={
                "model": "scripted",
                "prompt": "one two three four",
                "stream": True,
                "stop": ["o thr"],
                "stream_options": {"include_usage": True},
            },
        ) as r:
            events = [json.loads(line[6:]) for line in r.iter_lines() if line.startswith("data: {")]
    text = "".join(e["choices"][0]["text"] for e in events if e["choices"])
    assert text == "one tw"
    assert [e["choices"][0]["finish_reason"] for e in events if e["choices"]][-1] == "stop"
    assert events[-1]["choices"] == [] and events[-1]["usage"]["prompt_tokens"] == 1


def test_non_streaming_client_that_leaves_stops_the_engine_early(served: Served) -> None:
    served.engine.loaded.set()
    wait_http(served.url + "/health", timeout=10)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(served.url + "/v1/chat/completions", json=body("a b c d e f g h"), timeout=0.5, trust_env=False)
    wait_for(lambda: served.state.clients_gone == 1)  # the server noticed the client left
    served.engine.gate.set()
    assert served.engine.finished.wait(10)
    assert served.engine.last.completion_tokens < 8  # it stopped before the end
    r = httpx.post(served.url + "/v1/chat/completions", json=body("next one"), timeout=10, trust_env=False)
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "next one "
