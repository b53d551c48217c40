"""A small real server speaking vLLM's HTTP protocol, with faults on demand.

vLLM cannot run on the test machines (no GPU), so the process backend, the manager and the
gateway are tested against this instead: a real process on a real port that answers the
same routes the same way, starts in a few tens of milliseconds, and misbehaves exactly as
asked. Plain asyncio (no framework) so it starts fast and costs little in benchmarks.

Run: ``python -m tests.servers.fault_server --port P --served-model-name NAME [faults]``
(or ``python tests/servers/fault_server.py ...``).

Routes (as vLLM's OpenAI server):
  GET  /health               200 once ready (503 with --never-healthy)
  GET  /v1/models            {"object": "list", "data": [{"id": NAME, ...}]}
  POST /v1/chat/completions  deterministic answer "[NAME] echo: <last user text>";
                             "stream": true gives SSE chunks, one token each, then [DONE];
                             stream_options.include_usage adds a usage chunk.
  POST /v1/completions       the same for a prompt; "choices[0].text".
  A request for another model than NAME gets vLLM's 404. `max_tokens` sets the number of
  answer tokens exactly (padded with " ok"), so benchmarks choose the chunk count.
  A chat message or prompt containing "__crash__" makes the server exit at once (code 3):
  a crash while ready, with that request (and any other) in flight.

Flags:
  --port P                  port to listen on (127.0.0.1 unless --host)
  --served-model-name NAME  the id /v1/models lists and requests must name
  --startup-delay S         print loading lines, listen only after S seconds (connections
                            are refused meanwhile, like vLLM while it loads)
  --never-healthy           /health answers 503 forever (startup timeout case)
  --exit-during-start CODE  print some log lines, then exit with CODE before listening
  --crash-mid-stream N      os._exit(4) after sending N chunks of a streamed answer
  --ignore-sigterm          ignore SIGTERM (inherited by --child); only SIGKILL stops it
  --response-delay S        wait S seconds before answering each completion request
  --chunk-delay S           wait S seconds between streamed chunks
  --wrong-name              /v1/models lists "NAME-wrong" instead of NAME
  --fail-requests N,M       completion requests number N, M, ... (1-based, counted in arrival
                            order) answer 500 with vLLM's error body
  --child                   also start a long-sleeping child process in the same group

Sleep mode (vLLM's dev endpoints, as with VLLM_SERVER_DEV_MODE=1 --enable-sleep-mode):
  POST /sleep?level=1|2, POST /wake_up[?tags=weights|kv_cache], GET /is_sleeping,
  POST /collective_rpc {"method": "reload_weights"}. Asleep, completions answer 503.
  GET /fake_gpu_bytes: the GPU memory this server would hold (awake 2 GiB, asleep 0.5 GiB),
  for the tests' scripted NVML probe.
  --sleep-fails / --sleep-hangs      /sleep answers 500 / never answers
  --wake-fails / --wake-hangs        /wake_up answers 500 / never answers
  --die-on-wake                      exit (code 5) when /wake_up arrives
  --sleep-leaks                      asleep, /fake_gpu_bytes still reports the awake amount
  --sleep-delay S / --wake-delay S   take S seconds to sleep / wake
  --vllm-log                         while loading, print vLLM's start-up lines (weights, compile,
                                     CUDA graphs, startup complete)
  --oom-once FILE                    the first start (FILE absent: it is created) dies with a CUDA
                                     out-of-memory error; later starts succeed
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

MAX_BODY = 64 * 1024 * 1024
REASONS = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    411: "Length Required",
    413: "Payload Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}


def log(msg: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} fault_server[{os.getpid()}] {msg}", flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="vLLM-like test server with faults on demand")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--served-model-name", required=True)
    p.add_argument("--startup-delay", type=float, default=0.0)
    p.add_argument("--never-healthy", action="store_true")
    p.add_argument("--exit-during-start", type=int, default=None, metavar="CODE")
    p.add_argument("--crash-mid-stream", type=int, default=None, metavar="N")
    p.add_argument("--ignore-sigterm", action="store_true")
    p.add_argument("--response-delay", type=float, default=0.0)
    p.add_argument("--chunk-delay", type=float, default=0.0)
    p.add_argument("--wrong-name", action="store_true")
    p.add_argument(
        "--fail-requests", type=lambda v: {int(x) for x in v.split(",") if x.strip()}, default=set(), metavar="N,M"
    )
    p.add_argument("--child", action="store_true")
    for flag in ("--sleep-fails", "--sleep-hangs", "--wake-fails", "--wake-hangs", "--die-on-wake", "--sleep-leaks"):
        p.add_argument(flag, action="store_true")
    p.add_argument("--sleep-delay", type=float, default=0.0)
    p.add_argument("--wake-delay", type=float, default=0.0)
    p.add_argument("--vllm-log", action="store_true")
    p.add_argument("--oom-once", default=None, metavar="FILE")
    return p.parse_args(argv)


GIB = 1024**3
VLLM_LINES = (  # as vLLM 0.11 prints them while it starts
    "Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:00<00:00,  2.10it/s]",
    "Loading weights took 0.95 seconds",
    "Model loading took 4.1 GiB and 1.2 seconds",
    "torch.compile takes 12.3 s in total",
    "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):  40%|####      | 27/67",
    "Graph capturing finished in 11 secs, took 0.45 GiB",
    "some line vLLM prints that means nothing to the gateway",
)


class Server:
    def __init__(self, args: argparse.Namespace):
        self.args = args
        self.name: str = args.served_model_name
        self.counter = 0
        self.sleeping: set[str] = set()  # what is asleep: "weights", "kv_cache"
        self.weights_stale = False  # level 2 dropped them: reload_weights must come before kv_cache

    # --- HTTP/1.1, just enough: keep-alive, Content-Length or chunked bodies ----------------

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except asyncio.LimitOverrunError:
                    await self.send_json(writer, 400, _error(400, "request head too large"), False)
                    return
                lines = head.decode("latin-1").split("\r\n")
                try:
                    method, target, version = lines[0].split(" ", 2)
                except ValueError:
                    return
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        k, v = line.split(":", 1)
                        headers[k.strip().lower()] = v.strip()
                conn = headers.get("connection", "").lower()
                keep = (version == "HTTP/1.1" and conn != "close") or (version == "HTTP/1.0" and conn == "keep-alive")
                if headers.get("transfer-encoding", "").lower() == "chunked":
                    body = await _read_chunked(reader)
                else:
                    length = int(headers.get("content-length") or 0)
                    if length > MAX_BODY:
                        await self.send_json(writer, 413, _error(413, "body too large"), False)
                        return
                    body = await reader.readexactly(length) if length else b""
                path, _, query = target.partition("?")
                self.query = dict(p.split("=", 1) for p in query.split("&") if "=" in p)
                await self.route(writer, method, path, body, keep)
                if not keep:
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # shutting down with the connection open (kept alive by a proxy): end quietly
        finally:
            writer.close()

    async def send(self, writer: asyncio.StreamWriter, status: int, body: bytes, ctype: str, keep: bool) -> None:
        head = (
            f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n"
            f"content-type: {ctype}\r\ncontent-length: {len(body)}\r\n"
            f"connection: {'keep-alive' if keep else 'close'}\r\nserver: fault_server\r\n\r\n"
        )
        writer.write(head.encode("latin-1") + body)
        await writer.drain()

    async def send_json(self, writer: asyncio.StreamWriter, status: int, obj: Any, keep: bool) -> None:
        await self.send(writer, status, json.dumps(obj).encode(), "application/json", keep)

    # --- routes -----------------------------------------------------------------------------

    async def route(self, writer: asyncio.StreamWriter, method: str, path: str, body: bytes, keep: bool) -> None:
        if path == "/health":
            if self.args.never_healthy:
                await self.send(writer, 503, b"", "text/plain", keep)
            else:
                await self.send(writer, 200, b"", "text/plain", keep)
            return
        if path == "/v1/models" and method == "GET":
            ident = self.name + "-wrong" if self.args.wrong_name else self.name
            await self.send_json(
                writer,
                200,
                {
                    "object": "list",
                    "data": [
                        {
                            "id": ident,
                            "object": "model",
                            "created": 0,
                            "owned_by": "fault_server",
                            "root": ident,
                            "max_model_len": 4096,
                        }
                    ],
                },
                keep,
            )
            return
        if path in ("/sleep", "/wake_up", "/is_sleeping", "/collective_rpc", "/fake_gpu_bytes"):
            await self.sleep_mode(writer, method, path, body, keep)
            return
        if path in ("/v1/chat/completions", "/v1/completions"):
            if self.sleeping and method == "POST":
                await self.send_json(writer, 503, _error(503, f"model {self.name} is sleeping"), keep)
                return
            if method != "POST":
                await self.send_json(writer, 405, _error(405, "method not allowed"), keep)
                return
            try:
                req = json.loads(body or b"{}")
                if not isinstance(req, dict):
                    raise ValueError("body must be a JSON object")
            except ValueError as exc:
                await self.send_json(writer, 400, _error(400, f"invalid JSON: {exc}"), keep)
                return
            if req.get("model") != self.name:
                await self.send_json(
                    writer,
                    404,
                    _error(404, f"The model `{req.get('model')}` does not exist.", code="NotFoundError"),
                    keep,
                )
                return
            await self.complete(writer, req, chat=path.endswith("chat/completions"), keep=keep)
            return
        await self.send_json(writer, 404, _error(404, f"no route {method} {path}"), keep)

    async def sleep_mode(self, writer: asyncio.StreamWriter, method: str, path: str, body: bytes, keep: bool) -> None:
        a, q = self.args, dict(self.query)  # this request's query, before any await
        if path == "/is_sleeping":
            await self.send_json(writer, 200, {"is_sleeping": bool(self.sleeping)}, keep)
        elif path == "/fake_gpu_bytes":
            held = 2 * GIB if not self.sleeping or a.sleep_leaks else GIB // 2
            await self.send_json(writer, 200, {"bytes": held}, keep)
        elif path == "/sleep":
            log(f"POST /sleep level={q.get('level', '1')}")
            if await self.misbehave(writer, keep, "sleep", a.sleep_hangs, a.sleep_fails, a.sleep_delay):
                return
            self.sleeping = {"weights", "kv_cache"}
            self.weights_stale = q.get("level", "1") == "2"
            await self.send(writer, 200, b"", "text/plain", keep)
        elif path == "/wake_up":
            tags = q.get("tags")
            log(f"POST /wake_up tags={tags}")
            if a.die_on_wake:
                log("dying on wake (--die-on-wake)")
                os._exit(5)
            if await self.misbehave(writer, keep, "wake", a.wake_hangs, a.wake_fails, a.wake_delay):
                return
            if tags == "kv_cache" and self.weights_stale:
                await self.send_json(writer, 400, _error(400, "reload_weights must come before the KV cache"), keep)
                return
            self.sleeping -= {tags} if tags else {"weights", "kv_cache"}
            await self.send(writer, 200, b"", "text/plain", keep)
        elif path == "/collective_rpc":
            req = json.loads(body or b"{}")
            log(f"POST /collective_rpc {req.get('method')}")
            if req.get("method") == "reload_weights":
                self.weights_stale = False
            await self.send_json(writer, 200, {"results": [None]}, keep)

    async def misbehave(
        self, writer: asyncio.StreamWriter, keep: bool, what: str, hangs: bool, fails: bool, delay: float
    ) -> bool:
        """The --X-hangs / --X-fails / --X-delay faults of a sleep-mode call; True when it answered."""
        if hangs:
            await asyncio.sleep(3600)
        if fails:
            await self.send_json(writer, 500, _error(500, f"simulated {what} failure"), keep)
            return True
        await asyncio.sleep(delay)
        return False

    def answer_tokens(self, req: dict[str, Any], chat: bool) -> tuple[list[str], int, str]:
        if chat:
            text = ""
            for m in req.get("messages") or []:
                if isinstance(m, dict) and m.get("role") == "user":
                    c = m.get("content")
                    if isinstance(c, str):
                        text = c
                    elif isinstance(c, list):
                        text = " ".join(p.get("text", "") for p in c if isinstance(p, dict) and p.get("type") == "text")
        else:
            p = req.get("prompt", "")
            text = p if isinstance(p, str) else " ".join(map(str, p))
        if "__crash__" in text:
            log("crash requested by a request (__crash__): exiting with code 3")
            os._exit(3)
        words = text.split()[:64]
        tokens = [f"[{self.name}]", " echo:"] + [" " + w for w in words]
        finish = "stop"
        mt = req.get("max_tokens") or req.get("max_completion_tokens")
        if isinstance(mt, int) and mt > 0:
            if mt < len(tokens):
                finish = "length"
            tokens = (tokens + [" ok"] * mt)[:mt]
        return tokens, max(1, len(text.split())), finish

    async def complete(self, writer: asyncio.StreamWriter, req: dict[str, Any], chat: bool, keep: bool) -> None:
        self.counter += 1
        if self.counter in self.args.fail_requests:
            log(f"failing request {self.counter} with 500 (--fail-requests)")
            await self.send_json(
                writer,
                500,
                _error(500, f"simulated failure of request {self.counter}", code="InternalServerError"),
                keep,
            )
            return
        rid = f"{'chatcmpl' if chat else 'cmpl'}-{os.getpid()}-{self.counter}"
        tokens, prompt_tokens, finish = self.answer_tokens(req, chat)
        usage = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": len(tokens),
            "total_tokens": prompt_tokens + len(tokens),
        }
        created = int(time.time())
        if self.args.response_delay:
            await asyncio.sleep(self.args.response_delay)
        if not req.get("stream"):
            text = "".join(tokens)
            if chat:
                choice = {
                    "index": 0,
                    "message": {"role": "assistant", "content": text},
                    "logprobs": None,
                    "finish_reason": finish,
                }
            else:
                choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
            await self.send_json(
                writer,
                200,
                {
                    "id": rid,
                    "object": "chat.completion" if chat else "text_completion",
                    "created": created,
                    "model": self.name,
                    "choices": [choice],
                    "usage": usage,
                },
                keep,
            )
            return
        obj = "chat.completion.chunk" if chat else "text_completion"
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream; charset=utf-8\r\n"
            b"cache-control: no-cache\r\ntransfer-encoding: chunked\r\n"
            + (b"connection: keep-alive\r\n" if keep else b"connection: close\r\n")
            + b"server: fault_server\r\n\r\n"
        )

        async def event(data: str) -> None:
            payload = f"data: {data}\n\n".encode()
            writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
            await writer.drain()

        crash_after = self.args.crash_mid_stream
        for i, tok in enumerate(tokens):
            if chat:
                delta: dict[str, Any] = {"content": tok}
                if i == 0:
                    delta = {"role": "assistant", "content": tok}
                choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": None}
            else:
                choice = {"index": 0, "text": tok, "logprobs": None, "finish_reason": None}
            await event(
                json.dumps({"id": rid, "object": obj, "created": created, "model": self.name, "choices": [choice]})
            )
            if crash_after is not None and i + 1 >= crash_after:
                log(f"crashing mid-stream after {i + 1} chunks (--crash-mid-stream)")
                os._exit(4)
            if self.args.chunk_delay:
                await asyncio.sleep(self.args.chunk_delay)
        last = (
            {"index": 0, "delta": {}, "logprobs": None, "finish_reason": finish}
            if chat
            else {"index": 0, "text": "", "logprobs": None, "finish_reason": finish}
        )
        await event(json.dumps({"id": rid, "object": obj, "created": created, "model": self.name, "choices": [last]}))
        if (req.get("stream_options") or {}).get("include_usage"):
            await event(
                json.dumps(
                    {"id": rid, "object": obj, "created": created, "model": self.name, "choices": [], "usage": usage}
                )
            )
        await event("[DONE]")
        writer.write(b"0\r\n\r\n")
        await writer.drain()


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    out = bytearray()
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";")[0].strip(), 16)
        if size == 0:
            await reader.readuntil(b"\r\n")
            return bytes(out)
        out += await reader.readexactly(size)
        await reader.readexactly(2)
        if len(out) > MAX_BODY:
            raise ConnectionError("body too large")


def _error(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    return {
        "object": "error",
        "message": message,
        "type": "BadRequestError" if status < 500 else "ServerError",
        "param": None,
        "code": code or status,
    }


async def main_async(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    if args.ignore_sigterm:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        log("ignoring SIGTERM (--ignore-sigterm)")
    else:
        loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    child = None
    if args.child:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(100000)"])
        log(f"started child process {child.pid}")
    log(f"loading model {args.served_model_name} (startup delay {args.startup_delay:g} s)")
    if args.oom_once and not os.path.exists(args.oom_once):
        open(args.oom_once, "w").close()
        log("torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (--oom-once)")
        sys.stdout.flush()
        os._exit(1)
    if args.vllm_log:
        for line in VLLM_LINES:
            log(line)
            await asyncio.sleep(args.startup_delay / len(VLLM_LINES))
        args.startup_delay = 0.0
    if args.exit_during_start is not None:
        log("loading weights ...")
        log(f"RuntimeError: simulated failure while loading {args.served_model_name}")
        log(f"exiting with code {args.exit_during_start} (--exit-during-start)")
        sys.stdout.flush()
        os._exit(args.exit_during_start)
    if args.startup_delay:
        try:
            await asyncio.wait_for(stop.wait(), args.startup_delay)
            log("stopped during startup")
            return
        except TimeoutError:
            pass
    server = Server(args)
    srv = await asyncio.start_server(server.handle, args.host, args.port, limit=1 << 16, backlog=1024)
    log(
        f"Uvicorn-like: listening on http://{args.host}:{args.port} as {args.served_model_name}"
        + (" (never healthy)" if args.never_healthy else "")
    )
    async with srv:
        await stop.wait()
    log("received SIGTERM/SIGINT: shutting down")
    if child is not None:
        child.terminate()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
