"""A lean HTTP/1.1 client on one kept-alive asyncio connection, for load tests and benchmarks.

httpx is the right client for everything else; under load from many concurrent tasks its
per-request cost (and its connection pool's) delays when a request really leaves, which blurs
the timestamps a stress test compares with the gateway's own, and eats CPU the gateway under
measurement needs on a 2-core machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from typing import Any


def post(
    path: str, body: bytes, host: str = "127.0.0.1", port: int = 0, headers: dict[str, str] | None = None
) -> bytes:
    """The bytes of a POST request with a JSON body."""
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    return (
        f"POST {path} HTTP/1.1\r\nhost: {host}:{port}\r\ncontent-type: application/json\r\n"
        f"content-length: {len(body)}\r\n{extra}\r\n"
    ).encode() + body


def chat_body(model: str, text: str = "hello", stream: bool = False, max_tokens: int | None = None) -> bytes:
    req: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": text}], "stream": stream}
    if max_tokens:
        req["max_tokens"] = max_tokens
    return json.dumps(req).encode()


class Conn:
    """One kept-alive HTTP/1.1 connection; request() returns (status, body, t_first_byte, t_chunks)."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.r: asyncio.StreamReader | None = None
        self.w: asyncio.StreamWriter | None = None
        self.headers: dict[str, str] = {}  # of the last response

    async def open(self) -> Conn:
        self.r, self.w = await asyncio.open_connection(self.host, self.port, limit=1 << 20)
        return self

    async def close(self) -> None:
        if self.w is not None:
            self.w.close()
            with contextlib.suppress(Exception):
                await self.w.wait_closed()

    async def request(self, raw: bytes) -> tuple[int, bytes, float, list[float]]:
        """Send `raw`; (status, body, perf_counter at the response head, perf_counter per chunk)."""
        if self.w is None:
            await self.open()
        assert self.r is not None and self.w is not None
        self.w.write(raw)
        await self.w.drain()
        head = await self.r.readuntil(b"\r\n\r\n")
        t_first = time.perf_counter()
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        self.headers = headers
        chunks: list[float] = []
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = bytearray()
            while True:
                size = int((await self.r.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
                if size == 0:
                    await self.r.readuntil(b"\r\n")
                    break
                body += await self.r.readexactly(size)
                await self.r.readexactly(2)
                chunks.append(time.perf_counter())
            data = bytes(body)
        elif "content-length" in headers:
            data = await self.r.readexactly(int(headers["content-length"]))
        else:
            data = await self.r.read()
        if headers.get("connection", "").lower() == "close":
            await self.close()
            self.w = None
        return status, data, t_first, chunks
