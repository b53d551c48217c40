"""Switch overhead: what the gateway adds to a switch beyond the backends' own stop and start.

With A resident, a streamed request for B arrives; the gateway drains A, stops it, starts B,
waits until B is ready and proxies the request. The time from sending that request to B's
first byte, minus B's own start-to-ready time (measured standalone: process spawn until
`/v1/models` lists B, polled every 2 ms), minus A's own stop time (standalone: SIGTERM until
the process is reaped), is the gateway's overhead: its readiness polling, process-table
checks, scheduling and proxying. Goal (issue 3): at most 50 ms.

A and B are fault servers (the vLLM-protocol test server); B can be given a load delay
(`--b-delay`), during which its port refuses connections, as vLLM's does while loading.
All numbers come from one run; medians of --runs runs.

Run: .venv/bin/python bench/gateway_switch.py [--runs 7] [--b-delay 0.3]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
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

GET_MODELS = b"GET /v1/models HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n"


async def _ready_once(port: int, name: str) -> bool:
    try:
        c = await Conn("127.0.0.1", port).open()
    except OSError:
        return False
    try:
        status, body, _, _ = await c.request(GET_MODELS)
        return status == 200 and f'"id": "{name}"'.encode() in body
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        return False
    finally:
        await c.close()


def start_to_ready(name: str, flags: list[str]) -> float:
    """Spawn the server and poll (2 ms) until /v1/models lists `name`; the server is stopped after."""
    port = free_port()
    t0 = time.perf_counter()
    p = subprocess.Popen(
        fault_argv(port, name, *flags), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:

        async def poll() -> float:
            while True:
                if p.poll() is not None:
                    raise RuntimeError(f"{name} exited with {p.returncode}")
                if await _ready_once(port, name):
                    return time.perf_counter() - t0
                await asyncio.sleep(0.002)

        return asyncio.run(poll())
    finally:
        os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


def stop_time(name: str, flags: list[str]) -> float:
    """Start the server, serve one request, then time SIGTERM to the group until the process is reaped."""
    port = free_port()
    p = subprocess.Popen(
        fault_argv(port, name, *flags), stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        wait_http("127.0.0.1", port, "/v1/models", proc=p)
        # As in the gateway, A has served a request over a connection that stays open (kept alive).
        import socket

        conn = socket.create_connection(("127.0.0.1", port))
        conn.sendall(post("/v1/chat/completions", chat_body("A"), port=port))
        conn.recv(65536)

        guard = threading.Timer(30, lambda: os.killpg(p.pid, signal.SIGKILL))
        guard.start()
        t0 = time.perf_counter()
        os.killpg(p.pid, signal.SIGTERM)
        p.wait()  # blocking waitpid: Popen.wait(timeout) would poll in steps of up to 50 ms
        took = time.perf_counter() - t0
        guard.cancel()
        conn.close()
        return took
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(p.pid, signal.SIGKILL)
        p.wait(10)


async def timed_request(port: int, model: str) -> tuple[float, float, float]:
    """(wall time sent, seconds to the first body chunk, seconds to the end) of a streamed chat request."""
    c = await Conn("127.0.0.1", port).open()
    try:
        raw = post("/v1/chat/completions", chat_body(model, stream=True, max_tokens=8), port=port)
        wall = time.time()
        t0 = time.perf_counter()
        status, body, t_head, chunks = await c.request(raw)
        t_end = time.perf_counter()
        first = chunks[0] if chunks else t_head
        if status != 200:
            raise RuntimeError(f"{model}: status {status}: {body[:300]!r}")
        return wall, first - t0, t_end - t0
    finally:
        await c.close()


class Events(threading.Thread):
    """The gateway's /api/events, collected with their gateway-side timestamps."""

    def __init__(self, port: int):
        super().__init__(daemon=True)
        self.port = port
        self.events: list[dict] = []
        self.connected = threading.Event()

    def run(self) -> None:
        import httpx
        from httpx_sse import connect_sse

        with httpx.Client(timeout=httpx.Timeout(5, read=None), trust_env=False) as http:
            with contextlib.suppress(httpx.HTTPError):
                with connect_sse(http, "GET", f"http://127.0.0.1:{self.port}/api/events") as source:
                    for sse in source.iter_sse():
                        self.connected.set()
                        if sse.data:
                            self.events.append(json.loads(sse.data))


def breakdown(events: list[dict], sent: float, first_byte: float) -> dict[str, float]:
    """Where one switch's time went, from the gateway's own event timestamps (seconds)."""

    def at(pred) -> float:
        for e in events:
            if e.get("time", 0) >= sent - 1e-3 and pred(e):
                return e["time"]
        return float("nan")

    draining = at(lambda e: e.get("phase") == "draining")
    stopping = at(lambda e: e.get("phase") == "stopping")
    stopped = at(lambda e: e.get("type") == "state" and e.get("model") == "A" and e.get("state") == "stopped")
    starting = at(lambda e: e.get("phase") == "starting")
    loading = at(lambda e: e.get("phase") == "loading")
    ready = at(lambda e: e.get("phase") == "ready")
    return {
        "request -> draining": draining - sent,
        "draining -> SIGTERM": stopping - draining,
        "A stopping (its exit)": stopped - stopping,
        "stopped -> spawn": starting - stopped,
        "spawn (fork/exec, pid file)": loading - starting,
        "B loading (its start)": ready - loading,
        "ready -> first byte": sent + first_byte - ready,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--b-delay", type=float, default=0.0, help="B's simulated load time (s) before it listens")
    args = ap.parse_args()
    a_flags: list[str] = []
    b_flags = ["--startup-delay", str(args.b_delay)] if args.b_delay else []

    ready_b: list[float] = []
    stop_a: list[float] = []
    switch: list[float] = []
    parts: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="vlmswap-bench-") as tmpname:
        tmp = Path(tmpname)
        from tests.servers import fault_cmd

        cfg = tmp / "registry.yaml"
        cfg.write_text(
            registry_yaml(
                {
                    "A": {"served_name": "A", "cmd": fault_cmd(*a_flags)},
                    "B": {"served_name": "B", "cmd": fault_cmd(*b_flags)},
                },
                stop_grace_s=5,
            )
        )
        gw_port = free_port()
        with spawned(
            [PY, "-m", "vlmswap", "serve", "--config", str(cfg), "--port", str(gw_port)],
            env={"VLMSWAP_STATE_DIR": str(tmp / "state")},
            log=tmp / "gateway.log",
        ) as gw:
            try:
                wait_http("127.0.0.1", gw_port, "/health", proc=gw)
                events = Events(gw_port)
                events.start()
                events.connected.wait(10)
                asyncio.run(timed_request(gw_port, "A"))  # warm: A resident, code paths taken once
                for _ in range(args.runs):
                    # interleaved, so that the machine's load drifts alike over all three measures
                    ready_b.append(start_to_ready("B", b_flags))
                    stop_a.append(stop_time("A", a_flags))
                    asyncio.run(timed_request(gw_port, "A"))  # A resident (a switch back, not measured)
                    time.sleep(0.2)
                    sent, first, _ = asyncio.run(timed_request(gw_port, "B"))
                    switch.append(first)
                    time.sleep(0.2)  # let the events arrive
                    parts.append(breakdown(events.events, sent, first))
            except Exception:
                print((tmp / "gateway.log").read_text()[-4000:], file=sys.stderr)
                raise
    m_switch, m_ready, m_stop = median(switch), median(ready_b), median(stop_a)
    overhead = m_switch - m_ready - m_stop
    per_run = sorted(s - r - t for s, r, t in zip(switch, ready_b, stop_a))
    ms = lambda xs: ", ".join(f"{x * 1e3:.0f}" for x in sorted(xs))  # noqa: E731
    print(f"Machine: {machine()}; load average at the end {os.getloadavg()[0]:.1f}")
    print(
        f"A, B: fault servers; B load delay {args.b_delay:g} s; {args.runs} runs, standalone and gateway "
        f"measurements interleaved.\n"
    )
    print("| measure | median (ms) | runs (ms) |")
    print("|---|---|---|")
    print(f"| request for B -> B's first byte, through the gateway, A resident | {m_switch * 1e3:.1f} | {ms(switch)} |")
    print(f"| B start-to-ready, standalone (2 ms polls) | {m_ready * 1e3:.1f} | {ms(ready_b)} |")
    print(f"| A stop (SIGTERM -> reaped), standalone | {m_stop * 1e3:.1f} | {ms(stop_a)} |")
    print(f"| **switch overhead** (first byte - ready - stop) | **{overhead * 1e3:.1f}** | per run: {ms(per_run)} |")
    print("\nWhere the switch time went, from the gateway's own event timestamps (medians):\n")
    print("| phase | median (ms) | runs (ms) |")
    print("|---|---|---|")
    for key in parts[0]:
        xs = [p[key] for p in parts]
        print(f"| {key} | {median(xs) * 1e3:.1f} | {ms(xs)} |")
    process_bound = ("A stopping (its exit)", "spawn (fork/exec, pid file)", "B loading (its start)")
    own = [sum(v for k, v in p.items() if k not in process_bound) for p in parts]
    print(
        f"| **gateway's own share** (all but A's exit, B's spawn and start) | **{median(own) * 1e3:.1f}** | {ms(own)} |"
    )
    print(
        f"\ngoal <= 50 ms: {'met' if overhead <= 0.050 else 'MISSED'} (definition of issue 3); "
        f"gateway's own share {median(own) * 1e3:.1f} ms"
    )


if __name__ == "__main__":
    main()
