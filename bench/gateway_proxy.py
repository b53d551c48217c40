"""Proxy overhead: the backend directly vs through nginx vs through the vlmswap gateway.

One backend (the fault server, a vLLM-protocol test server; no GPU work, so what is measured
is the proxies), started by the gateway on a fixed port; nginx (Debian's nginx-light, one
worker, upstream keepalive, `proxy_buffering off`) in front of that same process; and the same
lean client for all three, in one run, targets interleaved round by round.

Measured per target:
- latency of a non-streamed chat completion, one request at a time on a kept-alive
  connection (median, p90);
- a streamed completion of N chunks: time to the last chunk; the per-chunk cost is
  (stream time via proxy - direct - the proxy's per-request cost) / N;
- throughput: requests/s with C concurrent kept-alive connections for D seconds.

Goals (issue 3): the gateway adds at most 1 ms at the median and reaches >= 0.8x nginx's
throughput.

Run: .venv/bin/python bench/gateway_proxy.py [--rounds 3] [--requests 1000] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from _gateway_common import (
    PY,
    Conn,
    chat_body,
    fault_argv,
    free_port,
    machine,
    median,
    post,
    registry_yaml,
    spawned,
    wait_http,
)

MODEL = "echo"

NGINX_CONF = """\
worker_processes 1;
daemon off;
pid {tmp}/nginx.pid;
error_log {tmp}/nginx-error.log warn;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body;
  proxy_temp_path {tmp}/proxy;
  fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi;
  scgi_temp_path {tmp}/scgi;
  client_max_body_size 32m;
  upstream backend {{
    server 127.0.0.1:{backend};
    keepalive 64;
  }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://backend;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_read_timeout 600s;
    }}
  }}
}}
"""


async def latency(port: int, raw: bytes, n: int) -> tuple[list[float], list[float], int]:
    """n sequential requests on one connection: (latencies s, last-chunk-after-first s, chunks)."""
    c = await Conn("127.0.0.1", port).open()
    lat, tail = [], []
    chunks = 0
    try:
        for _ in range(max(5, n // 20)):  # warm-up
            await c.request(raw)
        for _ in range(n):
            t0 = time.perf_counter()
            status, body, t_first, ch = await c.request(raw)
            t1 = time.perf_counter()
            if status != 200:
                raise RuntimeError(f"port {port}: status {status}: {body[:200]!r}")
            lat.append(t1 - t0)
            if ch:
                tail.append(ch[-1] - t_first)
                chunks = body.count(b"data: ")
    finally:
        await c.close()
    return lat, tail, chunks


async def throughput(port: int, raw: bytes, concurrency: int, seconds: float) -> tuple[float, int]:
    conns = [await Conn("127.0.0.1", port).open() for _ in range(concurrency)]
    errors = 0
    count = 0
    stop_at = time.perf_counter() + seconds

    async def loop(c: Conn) -> None:
        nonlocal count, errors
        while time.perf_counter() < stop_at:
            status, _, _, _ = await c.request(raw)
            if status == 200:
                count += 1
            else:
                errors += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(loop(c) for c in conns))
    elapsed = time.perf_counter() - t0
    for c in conns:
        await c.close()
    return count / elapsed, errors


async def measure(targets: dict[str, int], args: argparse.Namespace) -> dict:
    plain = {t: post("/v1/chat/completions", chat_body(MODEL), port=p) for t, p in targets.items()}
    streamed = {
        t: post("/v1/chat/completions", chat_body(MODEL, stream=True, max_tokens=args.chunks), port=p)
        for t, p in targets.items()
    }
    res: dict = {
        t: {"lat": [], "stream": [], "rps": [], "errors": 0, "lat_round": [], "stream_round": []} for t in targets
    }
    names = list(targets)
    for rnd in range(args.rounds):
        order = names[rnd % len(names) :] + names[: rnd % len(names)]
        for t in order:
            lat, _, _ = await latency(targets[t], plain[t], args.requests)
            res[t]["lat"] += lat
            res[t]["lat_round"].append(median(lat))
            slat, _, chunks = await latency(targets[t], streamed[t], max(50, args.requests // 5))
            res[t]["stream"] += slat
            res[t]["stream_round"].append(median(slat))
            res[t]["chunks"] = chunks
            rps, errors = await throughput(targets[t], plain[t], args.concurrency, args.seconds)
            res[t]["rps"].append(rps)
            res[t]["errors"] += errors
        print(f"round {rnd + 1}/{args.rounds} done", file=sys.stderr)
    return res


def report(res: dict, args: argparse.Namespace) -> str:
    d = res["direct"]
    d_lat = median(d["lat"]) * 1e3
    d_stream = median(d["stream"]) * 1e3
    lines = [
        f"Machine: {machine()}",
        f"Backend: fault server (vLLM protocol, asyncio), {args.response_delay * 1e3:g} ms of its own per request; client: raw asyncio HTTP/1.1, kept-alive; "
        f"{args.rounds} rounds interleaved; latency over {args.requests} sequential requests per round; "
        f"streams of {res['direct'].get('chunks', args.chunks)} SSE events; throughput {args.concurrency} "
        f"connections x {args.seconds:g} s.",
        "",
        "| path | median latency (ms) | added (ms) | p90 (ms) | streamed, to last chunk (ms) | added per chunk (µs) | req/s | vs nginx |",
        "|---|---|---|---|---|---|---|---|",
    ]
    nginx_rps = median(res["nginx"]["rps"]) if "nginx" in res else float("nan")
    for t, r in res.items():
        lat = sorted(r["lat"])
        m = median(lat) * 1e3
        p90 = lat[int(len(lat) * 0.9)] * 1e3
        s = median(r["stream"]) * 1e3
        added = m - d_lat
        n = max(1, r.get("chunks", args.chunks))
        per_chunk = ((s - d_stream) - added) / n * 1e3 if t != "direct" else 0.0
        rps = median(r["rps"])
        lines.append(
            f"| {t} | {m:.3f} | {added:+.3f} | {p90:.3f} | {s:.3f} | {per_chunk:+.1f} | {rps:,.0f} | "
            f"{rps / nginx_rps:.2f}x |"
        )
        if r["errors"]:
            lines.append(f"|   ({t}: {r['errors']} non-200 answers) |||||||")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--requests", type=int, default=1000, help="sequential requests per target and round")
    ap.add_argument("--chunks", type=int, default=64, help="answer tokens (SSE events) of the streamed request")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=3.0, help="throughput window per target and round")
    ap.add_argument(
        "--response-delay",
        type=float,
        default=0.0,
        help="the backend's own time per request (s); 0: a zero-work backend, the proxy-bound worst case",
    )
    ap.add_argument("--no-gateway", action="store_true", help="only direct vs nginx (the gateway is missing)")
    ap.add_argument("--json", type=Path, help="also write raw numbers here")
    args = ap.parse_args()
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        sys.exit("nginx not found (Debian: apt-get install nginx-light)")
    nginx_bin = shutil.which("nginx") or "/usr/sbin/nginx"

    with tempfile.TemporaryDirectory(prefix="vlmswap-bench-") as tmpname:
        tmp = Path(tmpname)
        backend_port, nginx_port, gw_port = free_port(), free_port(), free_port()
        targets = {"direct": backend_port, "nginx": nginx_port}
        flags = ["--response-delay", str(args.response_delay)] if args.response_delay else []
        from contextlib import ExitStack

        with ExitStack() as stack:
            if args.no_gateway:
                p = stack.enter_context(spawned(fault_argv(backend_port, MODEL, *flags), log=tmp / "backend.log"))
                wait_http("127.0.0.1", backend_port, "/v1/models", proc=p)
            else:
                from tests.servers import fault_cmd

                cfg = tmp / "registry.yaml"
                cfg.write_text(
                    registry_yaml(
                        {MODEL: {"served_name": MODEL, "cmd": fault_cmd(*flags), "port": backend_port}}, stop_grace_s=5
                    )
                )
                serve = os.environ.get("VLMSWAP_BENCH_SERVE", "-m vlmswap serve").split()  # A/B a prototype
                gw = stack.enter_context(
                    spawned(
                        [PY, *serve, "--config", str(cfg), "--port", str(gw_port)],
                        env={"VLMSWAP_STATE_DIR": str(tmp / "state")},
                        log=tmp / "gateway.log",
                    )
                )
                try:
                    wait_http("127.0.0.1", gw_port, "/health", proc=gw)
                except Exception:
                    print((tmp / "gateway.log").read_text()[-3000:], file=sys.stderr)
                    raise
                import httpx

                r = httpx.post(
                    f"http://127.0.0.1:{gw_port}/v1/chat/completions",
                    content=chat_body(MODEL),
                    headers={"content-type": "application/json"},
                    timeout=60,
                    trust_env=False,
                )
                r.raise_for_status()  # the gateway has started the backend on backend_port
                targets["gateway"] = gw_port
            conf = tmp / "nginx.conf"
            conf.write_text(NGINX_CONF.format(tmp=tmp, backend=backend_port, port=nginx_port))
            ng = stack.enter_context(spawned([nginx_bin, "-c", str(conf), "-p", str(tmp)], log=tmp / "nginx.log"))
            wait_http("127.0.0.1", nginx_port, "/health", proc=ng)
            res = asyncio.run(measure(targets, args))
        print(report(res, args))
        if args.json:
            args.json.write_text(json.dumps({t: {k: v for k, v in r.items()} for t, r in res.items()}))


if __name__ == "__main__":
    main()
