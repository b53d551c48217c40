"""The gateway's client for its backends: kept-alive HTTP/1.1 connections, nothing more.

Why not httpx/httpcore: on every request and every release httpcore's pool scans all its
connections against all waiting requests, and each connection's expiry check builds anyio's
attribute dict and polls the socket; profiled under load that was ~90 % of the gateway's CPU per
proxied request (bench/README.md, Gateway). A backend here is a model server on loopback that
speaks plain HTTP/1.1 and answers with Content-Length or chunked bodies, so a pool of asyncio
streams per backend, one write per request and a small response parser do the whole job.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

CONNECT_TIMEOUT_S = 10.0
MAX_IDLE_PER_BACKEND = 64
_LIMIT = 1 << 20  # longest line (status, header, chunk size) accepted from a backend


class UpstreamError(Exception):
    """The backend closed the connection or answered something that is not HTTP/1.1."""


class Response:
    """A backend's answer: status and headers read; the body is read by `aiter_stream()`.

    `aclose()` returns the connection to the pool when the body was read to its end, and
    closes it otherwise (a half-read body leaves the connection in an unknown state).
    """

    def __init__(
        self,
        pool: Upstream,
        key: tuple[str, int],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        status: int,
        headers: list[tuple[bytes, bytes]],
        length: int | None,
        chunked: bool,
        keep_alive: bool,
    ):
        self.status = status
        self.headers = headers
        self._pool, self._key, self._reader, self._writer = pool, key, reader, writer
        self._length, self._chunked, self._keep_alive = length, chunked, keep_alive
        self._complete = False
        self._closed = False

    async def aiter_stream(self) -> AsyncIterator[bytes]:
        """The body, each piece as the backend sent it (chunks of a chunked body stay whole)."""
        r = self._reader
        try:
            if self._chunked:
                while True:
                    line = await r.readuntil(b"\r\n")
                    size = int(line.split(b";", 1)[0].strip(), 16)
                    if size == 0:
                        while (await r.readuntil(b"\r\n")) != b"\r\n":
                            pass  # trailers
                        break
                    data = await r.readexactly(size + 2)
                    yield data[:-2]
            elif self._length is not None:
                left = self._length
                while left:
                    data = await r.read(min(left, 65536))
                    if not data:
                        raise asyncio.IncompleteReadError(b"", left)
                    left -= len(data)
                    yield data
            else:  # delimited by the connection's end
                self._keep_alive = False
                while data := await r.read(65536):
                    yield data
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
            raise UpstreamError(f"backend closed the connection mid-body ({type(exc).__name__})") from None
        self._complete = True

    async def aread(self) -> bytes:
        return b"".join([piece async for piece in self.aiter_stream()])

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._complete and self._keep_alive:
            self._pool._put(self._key, self._reader, self._writer)
        else:
            self._writer.close()


class Upstream:
    """Idle kept-alive connections per (host, port); a request takes one or opens a new one."""

    def __init__(self, max_idle: int = MAX_IDLE_PER_BACKEND):
        self.max_idle = max_idle
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]] = {}

    async def request(
        self, host: str, port: int, method: bytes, target: bytes, headers: list[tuple[bytes, bytes]], body: bytes
    ) -> Response:
        """Send one request (head and body in one write); return once the response head is read.

        A kept-alive connection the backend closed while idle is detected (nothing read back) and
        the request is sent once more on a fresh connection; any other failure raises.
        """
        key = (host, port)
        if len(self._idle) > (key in self._idle):  # idle connections to other backends
            self._sweep(key)
        lines = [method + b" " + target + b" HTTP/1.1", b"host: " + f"{host}:{port}".encode()]
        lines += [
            k + b": " + v
            for k, v in headers
            if k.lower() not in (b"host", b"content-length", b"connection", b"transfer-encoding")
        ]
        lines.append(b"content-length: " + str(len(body)).encode())
        raw = b"\r\n".join(lines) + b"\r\n\r\n" + body
        for attempt in range(2):
            conn = self._take(key)
            reused = conn is not None
            if conn is None:
                conn = await asyncio.wait_for(asyncio.open_connection(host, port, limit=_LIMIT), CONNECT_TIMEOUT_S)
            reader, writer = conn
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
            except (asyncio.IncompleteReadError, ConnectionError) as exc:
                writer.close()
                nothing_back = not isinstance(exc, asyncio.IncompleteReadError) or not exc.partial
                if reused and nothing_back and attempt == 0:
                    continue
                raise UpstreamError(f"backend closed the connection ({type(exc).__name__})") from None
            except BaseException:
                writer.close()
                raise
            try:
                return self._response(key, reader, writer, head)
            except (ValueError, IndexError):
                writer.close()
                raise UpstreamError(f"backend answered something that is not HTTP/1.1: {head[:80]!r}") from None
        raise UpstreamError("unreachable")  # pragma: no cover

    def _response(
        self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> Response:
        lines = head[:-4].split(b"\r\n")
        version, status_text = lines[0].split(b" ", 2)[:2]
        if not version.startswith(b"HTTP/1."):
            raise ValueError(version)
        status = int(status_text)
        headers: list[tuple[bytes, bytes]] = []
        length: int | None = None
        chunked = False
        keep_alive = version == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip()
            headers.append((name, value))
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif name == b"connection":
                keep_alive = b"close" not in value.lower() and (keep_alive or b"keep-alive" in value.lower())
        if status in (204, 304) or 100 <= status < 200:
            length, chunked = 0, False
        return Response(self, key, reader, writer, status, headers, length, chunked, keep_alive)

    def _take(self, key: tuple[str, int]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        idle = self._idle.get(key)
        while idle:
            reader, writer = idle.pop()
            if reader.at_eof() or writer.is_closing():
                writer.close()
                continue
            return reader, writer
        return None

    def _put(self, key: tuple[str, int], reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        idle = self._idle.setdefault(key, [])
        if len(idle) >= self.max_idle or writer.is_closing():
            writer.close()
        else:
            idle.append((reader, writer))

    def _sweep(self, keep: tuple[str, int]) -> None:
        """Close idle connections whose backend has gone (one per stopped backend would pile up)."""
        for key in [k for k in self._idle if k != keep]:
            alive = []
            for reader, writer in self._idle[key]:
                if reader.at_eof() or writer.is_closing():
                    writer.close()
                else:
                    alive.append((reader, writer))
            if alive:
                self._idle[key] = alive
            else:
                del self._idle[key]

    def forget(self, host: str, port: int) -> None:
        """Close the idle connections to one backend (it was stopped)."""
        for _, writer in self._idle.pop((host, port), []):
            writer.close()

    async def aclose(self) -> None:
        for conns in self._idle.values():
            for _, writer in conns:
                writer.close()
        self._idle.clear()
