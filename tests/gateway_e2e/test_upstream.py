"""The gateway's backend client against a real fault server: keep-alive, streams, failures."""

from __future__ import annotations

import asyncio
import inspect
import json

import pytest

from tests.servers import FAULT_SERVER
from tests.support import PY, free_port, running
from vlmswap.gateway.upstream import Upstream, UpstreamError

pytestmark = pytest.mark.timeout(60)
JSON = [(b"content-type", b"application/json")]


def chat(model: str, text: str = "hi", **kw) -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}], **kw}).encode()


def server(port: int, *flags: str):
    return running(
        [PY, str(FAULT_SERVER), "--port", str(port), "--served-model-name", "m", *flags],
        f"http://127.0.0.1:{port}/health",
        timeout=30,
    )


def run(coro_fn):
    assert inspect.iscoroutinefunction(coro_fn)
    asyncio.run(coro_fn())


def test_answers_and_keeps_the_connection_alive():
    port = free_port()
    with server(port):

        async def go():
            up = Upstream()
            first = await up.request("127.0.0.1", port, b"POST", b"/v1/chat/completions", JSON, chat("m", "one"))
            body = json.loads(await first.aread())
            await first.aclose()
            assert first.status == 200 and body["choices"][0]["message"]["content"] == "[m] echo: one"
            assert (b"content-type", b"application/json") in first.headers
            writer = up._idle[("127.0.0.1", port)][0][1]
            second = await up.request("127.0.0.1", port, b"POST", b"/v1/chat/completions", JSON, chat("m", "two"))
            assert second._writer is writer, "the kept-alive connection was not reused"
            assert json.loads(await second.aread())["choices"][0]["message"]["content"] == "[m] echo: two"
            await second.aclose()
            missing = await up.request("127.0.0.1", port, b"POST", b"/v1/chat/completions", JSON, chat("x"))
            assert missing.status == 404 and b"does not exist" in await missing.aread()
            await missing.aclose()
            await up.aclose()

        run(go)


def test_streams_chunk_by_chunk():
    port = free_port()
    with server(port, "--chunk-delay", "0.05"):

        async def go():
            up = Upstream()
            resp = await up.request(
                "127.0.0.1", port, b"POST", b"/v1/chat/completions", JSON, chat("m", stream=True, max_tokens=4)
            )
            assert resp.status == 200
            pieces, times = [], []
            async for piece in resp.aiter_stream():
                pieces.append(piece)
                times.append(asyncio.get_running_loop().time())
            await resp.aclose()
            assert len(pieces) == 4 + 2  # four tokens, the finish event, [DONE]
            assert pieces[-1] == b"data: [DONE]\n\n"
            assert times[3] - times[0] >= 0.1, "chunks were buffered, not relayed as they came"
            assert len(up._idle[("127.0.0.1", port)]) == 1
            await up.aclose()

        run(go)


def test_a_backend_that_closed_an_idle_connection_is_retried_once_fresh():
    port = free_port()
    up = Upstream()

    async def ask(text: str) -> str:
        resp = await up.request("127.0.0.1", port, b"POST", b"/v1/chat/completions", JSON, chat("m", text))
        data = json.loads(await resp.aread())
        await resp.aclose()
        return data["choices"][0]["message"]["content"]

    loop = asyncio.new_event_loop()
    try:
        with server(port):
            assert loop.run_until_complete(ask("before")) == "[m] echo: before"
        with server(port):  # a new process on the same port: the pooled connection is dead
            assert loop.run_until_complete(ask("after")) == "[m] echo: after"
        loop.run_until_complete(up.aclose())
    finally:
        loop.close()


def test_crash_mid_stream_raises():
    port = free_port()
    with server(port, "--crash-mid-stream", "2"):

        async def go():
            up = Upstream()
            resp = await up.request(
                "127.0.0.1", port, b"POST", b"/v1/chat/completions", JSON, chat("m", stream=True, max_tokens=8)
            )
            got = []
            with pytest.raises(UpstreamError, match="mid-body"):
                async for piece in resp.aiter_stream():
                    got.append(piece)
            await resp.aclose()
            assert len(got) == 2
            assert up._idle.get(("127.0.0.1", port), []) == []

        run(go)


def test_nothing_listening_raises_at_once():
    port = free_port()

    async def go():
        with pytest.raises(OSError):
            await Upstream().request("127.0.0.1", port, b"POST", b"/v1/completions", JSON, b"{}")

    run(go)


def test_idle_connections_to_a_stopped_backend_are_closed():
    first, second = free_port(), free_port()
    up = Upstream()

    async def ask(port: int) -> None:
        resp = await up.request("127.0.0.1", port, b"POST", b"/v1/chat/completions", JSON, chat("m"))
        await resp.aread()
        await resp.aclose()

    loop = asyncio.new_event_loop()
    try:
        with server(first):
            loop.run_until_complete(ask(first))
            writer = up._idle[("127.0.0.1", first)][0][1]
        with server(second):  # the switch: the first backend is gone, its idle connection with it
            loop.run_until_complete(asyncio.sleep(0.1))  # its EOF reaches the loop
            loop.run_until_complete(ask(second))
            assert ("127.0.0.1", first) not in up._idle
            assert writer.is_closing()
        loop.run_until_complete(up.aclose())
    finally:
        loop.close()
