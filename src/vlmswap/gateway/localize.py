"""Error bodies' `message` in the language a client asks for (Accept-Language), the rest unchanged.

Clients parse `code` and `type`, which stay English whatever is asked; the UI and the CLI show
`message` to a person, so a request with `Accept-Language: ru` gets the gateway's known
messages in Russian (`vlmswap.i18n.translate_text`; an unknown one stays English). English,
or no header, costs one header lookup: the response passes through untouched.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import Message, Scope, Send

from vlmswap.i18n import DEFAULT, negotiate, translate_text


def wanted(scope: Scope) -> str | None:
    """The language to localise errors into, None for English (nothing to do)."""
    for k, v in scope.get("headers") or ():
        if k == b"accept-language":
            lang = negotiate(v.decode("latin-1"))
            return None if lang in (None, DEFAULT) else lang
    return None


def localise(body: bytes, lang: str) -> bytes:
    """An OpenAI error body with its message rendered in `lang`; anything else as it was."""
    try:
        data: Any = json.loads(body)
        err = data["error"]
        message = err["message"]
    except (ValueError, TypeError, KeyError):
        return body
    if not isinstance(message, str):
        return body
    shown = translate_text(message, lang)
    if shown == message:
        return body
    err["message"] = shown
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def localising(send: Send, lang: str) -> Send:
    """`send` that holds a JSON error response (status >= 400) until its body is whole, then
    sends it with the message localised and the length corrected; everything else passes."""
    held: dict[str, Any] = {}

    async def wrapped(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers") or [])
            if message["status"] >= 400 and headers.get(b"content-type", b"").startswith(b"application/json"):
                held["start"], held["body"] = message, b""
                return
            await send(message)
            return
        if message["type"] == "http.response.body" and "start" in held:
            held["body"] += message.get("body", b"")
            if message.get("more_body"):
                return
            body = localise(held["body"], lang)
            start = held.pop("start")
            start["headers"] = [(k, v) for k, v in start["headers"] if k != b"content-length"] + [
                (b"content-length", str(len(body)).encode())
            ]
            await send(start)
            await send({"type": "http.response.body", "body": body})
            return
        await send(message)

    return wrapped
