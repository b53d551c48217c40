"""`gateway.stream_loading_status`: a streamed chat request that waits for a switch sees it.

llama-swap's `sendLoadingState` does this: the switch's progress goes to the waiting client as
`reasoning_content` deltas of ordinary chat-completion chunks, before the answer, so a chat UI
shows "loading..." lines in its thinking pane instead of a silent spinner. Once the progress
has started the response (200, text/event-stream), what comes after must fit in it: the
backend's own stream is relayed without a second start, and an error becomes an SSE error
event, the way the proxy already ends a stream whose backend died.
"""

from __future__ import annotations

import json
import time
from typing import Any

from starlette.types import Message, Send

SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class LoadingStream:
    """An ASGI `send` that can open the response early with progress chunks."""

    def __init__(self, send: Send, served_name: str):
        self._send = send
        self.model = served_name
        self.started = False
        self._status = 200
        self._error_body = b""
        self._created = int(time.time())

    async def progress(self, ev: dict[str, Any]) -> None:
        if ev.get("type") != "phase":
            return
        elapsed = ev.get("elapsed_s")
        text = f"[vlmswap] {ev.get('model')}: {ev.get('phase')}"
        if ev.get("message"):
            text += f", {str(ev['message']).splitlines()[0]}"
        if elapsed is not None:
            text += f" ({elapsed:.1f} s"
            if ev.get("eta_s") is not None:
                text += f" of about {ev['eta_s']:.0f} s"
            text += ")"
        chunk = {
            "id": "chatcmpl-vlmswap-loading",
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self.model,
            "choices": [
                {"index": 0, "delta": {"role": "assistant", "reasoning_content": text + "\n"}, "finish_reason": None}
            ],
        }
        if not self.started:
            self.started = True
            await self._send({"type": "http.response.start", "status": 200, "headers": SSE_HEADERS})
        await self._send(
            {"type": "http.response.body", "body": b"data: " + json.dumps(chunk).encode() + b"\n\n", "more_body": True}
        )

    async def send(self, message: Message) -> None:
        if not self.started:
            await self._send(message)
            return
        if message["type"] == "http.response.start":
            self._status = message["status"]  # the response is open already: no second start
            return
        if self._status == 200:
            await self._send(message)
            return
        self._error_body += message.get("body", b"")  # an error answer: one SSE error event, then the end
        if not message.get("more_body"):
            await self._send(
                {"type": "http.response.body", "body": b"data: " + self._error_body + b"\n\n", "more_body": True}
            )
            await self._send({"type": "http.response.body", "body": b"", "more_body": False})
