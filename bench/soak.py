"""Soak with faults: many clients over three models while backends and the gateway are killed.

    python bench/soak.py --requests 10000 --clients 30 --seed 1 [--json out.json]

A real `vlmswap serve` runs three fault-server models (tests/servers/fault_server.py, vLLM's
HTTP protocol). `--clients` tasks send `--requests` requests in all, each kind drawn from a
seeded RNG: plain chats, streams, streams the client leaves after the first chunk, impatient
requests that give up after IMPATIENT_S, and malformed bodies (BAD_INPUTS). Meanwhile a chaos
task injects one fault every FAULT_EVERY requests, kind drawn from the same seed (FAULTS):
SIGKILL of the backend while it serves, while it streams, while it starts; SIGSTOP for longer
than the impatient clients wait. Halfway the gateway itself is SIGKILLed and restarted on the
same state dir (it must stop the backends its predecessor left). A sampler process counts the
fault servers every 10 ms (never two).

What counts: every request the gateway accepted is answered (a 2xx with a complete body or
stream, or a JSON error body), except those cut by the gateway's own SIGKILL; none lost, none
hung. A fault kind is one async function in FAULTS: add one there (the sleeping pool's
"killed while asleep" comes with it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from tests.gateway_e2e.conftest import Gateway  # noqa: E402
from tests.servers import fault_cmd  # noqa: E402

PY = sys.executable
MODELS = ("alpha", "beta", "gamma")
KINDS = {"chat": 50, "stream": 20, "leave_mid_stream": 10, "impatient": 5, "malformed": 15}  # weights
IMPATIENT_S = 1.5
STALL_S = 3.0
FAULT_EVERY = 40
PATIENCE_S = 90.0  # a request with no answer after this long is hung

# (name, body bytes, content type): what a careless or hostile client sends.
BAD_INPUTS: list[tuple[str, bytes, str]] = [
    ("not JSON", b'{"model": "alpha", "messages": [', "application/json"),
    ("JSON array", b'["alpha"]', "application/json"),
    ("no model", json.dumps({"messages": [{"role": "user", "content": "hi"}]}).encode(), "application/json"),
    ("unknown model", json.dumps({"model": "nope", "messages": []}).encode(), "application/json"),
    ("model not a string", json.dumps({"model": 7, "messages": []}).encode(), "application/json"),
    ("empty body", b"", "application/json"),
    ("invalid UTF-8", b'{"model": "alpha\xff\xfe"}', "application/json"),
    ("deeply nested", b'{"model": "alpha", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}", "application/json"),
    ("form body", b"model=alpha&messages=hi", "application/x-www-form-urlencoded"),
    ("over the body cap", b'{"model": "alpha", "pad": "' + b"x" * (2 * 1024 * 1024) + b'"}', "application/json"),
]


@dataclass
class Outcome:
    kind: str
    model: str
    status: int | None  # HTTP status, None: no response
    result: str  # answered | error_body | left | gave_up | cut_by_gateway_kill | refused | lost | hung
    seconds: float
    detail: str = ""
    code: str = ""  # the error body's `code`, if any
    bad_input: str = ""  # the BAD_INPUTS name, for malformed requests


@dataclass
class Soak:
    """One run: the gateway (tests.gateway_e2e's `Gateway`), and what every request and fault came to."""

    tmp: Path
    seed: int
    token: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    gw: Gateway = field(init=False)
    outcomes: list[Outcome] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    fault_notes: list[str] = field(default_factory=list)
    gateway_down: bool = False
    refusals: int = 0
    restarted_footprint: dict[str, float] = field(default_factory=dict)
    kill_t: float | None = None
    up_t: float | None = None
    done: int = 0

    def __post_init__(self) -> None:
        models = {
            m: {"served_name": self.served(m), "cmd": fault_cmd(*flags), "startup_timeout_s": 30}
            for m, flags in zip(
                MODELS, (["--response-delay", "0.05"], ["--chunk-delay", "0.02"], ["--startup-delay", "0.3"])
            )
        }
        self.gw = Gateway(
            self.tmp,
            models,
            max_wait_s=0.5,
            drain_timeout_s=2,
            stop_grace_s=1,
            backoff_initial_s=0.5,
            backoff_max_s=2,
            max_body_mb=1,
            max_queue=512,
        )

    @property
    def url(self) -> str:
        return self.gw.url

    def served(self, model: str) -> str:
        return f"soak-{self.token}-{model}"

    def backends(self) -> list[psutil.Process]:
        """Live fault-server processes of this run (their cmdline holds the token)."""
        out = []
        for p in psutil.process_iter(["cmdline", "status"]):
            with contextlib.suppress(psutil.Error):
                cmd = p.info["cmdline"] or []
                if (
                    p.info["status"] != psutil.STATUS_ZOMBIE
                    and any(self.token in c for c in cmd)
                    and any(c.endswith("fault_server.py") for c in cmd[:3])
                ):
                    out.append(p)
        return out


# --- clients ---------------------------------------------------------------------------------


def _body(soak: Soak, model: str, text: str, **extra: Any) -> dict[str, Any]:
    return {"model": soak.served(model), "messages": [{"role": "user", "content": text}], **extra}


def _is_error_body(data: bytes) -> bool:
    with contextlib.suppress(ValueError):
        err = json.loads(data).get("error")
        return isinstance(err, dict) and isinstance(err.get("message"), str)
    return False


async def one_request(soak: Soak, http: httpx.AsyncClient, rng: random.Random, i: int) -> Outcome:
    kind = rng.choices(list(KINDS), weights=list(KINDS.values()))[0]
    model = rng.choice(MODELS)
    bad_name, raw, ctype = BAD_INPUTS[i % len(BAD_INPUTS)]
    t0 = time.monotonic()
    started_down = soak.gateway_down

    def done(status: int | None, result: str, detail: str = "", code: str = "") -> Outcome:
        return Outcome(
            kind, model, status, result, time.monotonic() - t0, detail, code, bad_name if kind == "malformed" else ""
        )

    try:
        async with asyncio.timeout(PATIENCE_S):
            if kind == "malformed":
                r = await http.post(soak.url + "/v1/chat/completions", content=raw, headers={"content-type": ctype})
                ok = 400 <= r.status_code < 500 and _is_error_body(r.content)
                code = str(r.json()["error"].get("code") or "") if ok else ""
                return done(r.status_code, "error_body" if ok else "lost", r.text[:100], code)
            if kind == "impatient":
                try:
                    r = await http.post(
                        soak.url + "/v1/chat/completions", json=_body(soak, model, f"r{i}"), timeout=IMPATIENT_S
                    )
                except httpx.TimeoutException:
                    return done(None, "gave_up")
                return done(r.status_code, _classify(r.status_code, r.content))
            if kind == "chat":
                r = await http.post(soak.url + "/v1/chat/completions", json=_body(soak, model, f"request {i}"))
                return done(r.status_code, _classify(r.status_code, r.content))
            body = _body(soak, model, f"stream {i} " + "w " * 8, stream=True)
            async with http.stream("POST", soak.url + "/v1/chat/completions", json=body) as r:
                if r.status_code != 200:
                    return done(r.status_code, _classify(r.status_code, await r.aread()))
                events = []
                async for line in r.aiter_lines():
                    if line.startswith("data: "):
                        events.append(line[6:])
                        if kind == "leave_mid_stream":
                            return done(200, "left")
                if events and events[-1] == "[DONE]":
                    return done(200, "answered")
                if events and _is_error_body(events[-1].encode()):
                    return done(200, "error_body", events[-1][:120])
                return done(200, "lost", f"stream ended without [DONE] or an error: {events[-2:]}")
    except TimeoutError:
        return done(None, "hung")
    except httpx.TransportError as exc:
        if started_down or (soak.gateway_down and isinstance(exc, httpx.ConnectError)):
            await asyncio.sleep(0.1)  # as a client would before retrying: not a spin on a closed port
            return done(None, "refused", type(exc).__name__)
        if soak.kill_t is not None and t0 <= soak.kill_t <= time.monotonic():
            return done(None, "cut_by_gateway_kill", type(exc).__name__)
        return done(None, "lost", f"{type(exc).__name__}: {exc}")


def _classify(status: int, data: bytes) -> str:
    if status == 200:
        with contextlib.suppress(ValueError):
            if json.loads(data).get("choices"):
                return "answered"
        return "lost"
    return "error_body" if _is_error_body(data) else "lost"


async def client(soak: Soak, http: httpx.AsyncClient, rng: random.Random, todo: list[int]) -> None:
    """Requests until none are left; one refused while the gateway is down is sent again (counted apart)."""
    while todo:
        i = todo.pop()
        state = rng.getstate()
        while (outcome := await one_request(soak, http, rng, i)).result == "refused":
            soak.refusals += 1
            rng.setstate(state)  # the same request again
        soak.outcomes.append(outcome)
        soak.done += 1


# --- faults ----------------------------------------------------------------------------------


async def _status(http: httpx.AsyncClient, soak: Soak) -> dict[str, Any]:
    r = await http.get(soak.url + "/api/status", timeout=10)
    r.raise_for_status()
    return r.json()  # type: ignore[no-any-return]


async def _resident_pid(http: httpx.AsyncClient, soak: Soak, model: str) -> int | None:
    """Make `model` resident (a request brings it) and return its backend's pid."""
    await http.post(soak.url + f"/api/models/{model}/load", params={"wait": "true"}, timeout=60)
    pids = (await _status(http, soak))["models"][model].get("pids") or []
    return pids[0] if pids else None


async def kill_while_serving(soak: Soak, http: httpx.AsyncClient, rng: random.Random) -> str:
    model = "alpha"  # answers after 50 ms: requests are in flight when the kill comes
    pid = await _resident_pid(http, soak, model)
    if pid is None:
        return "no backend to kill"
    burst = [
        asyncio.ensure_future(http.post(soak.url + "/v1/chat/completions", json=_body(soak, model, "x")))
        for _ in range(5)
    ]
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not (await _status(http, soak))["models"][model]["in_flight"]:  # noqa: ASYNC110
        await asyncio.sleep(0.002)
    os.kill(pid, signal.SIGKILL)
    statuses = [
        r.status_code if isinstance(r, httpx.Response) else type(r).__name__
        for r in await asyncio.gather(*burst, return_exceptions=True)
    ]
    return f"{model} pid {pid} killed while serving; a burst of 5 got {sorted(map(str, statuses))}"


async def kill_while_streaming(soak: Soak, http: httpx.AsyncClient, rng: random.Random) -> str:
    model = "beta"  # its chunks are 20 ms apart: a stream is long enough to be cut
    pid = await _resident_pid(http, soak, model)
    if pid is None:
        return "no backend to kill"
    body = _body(soak, model, "cut " * 40, stream=True)
    last, killed = "", None
    async with http.stream("POST", soak.url + "/v1/chat/completions", json=body) as r:
        async for line in r.aiter_lines():
            if line.startswith("data: "):
                last = line[6:]
                if killed is None:  # the backend serving this stream, now
                    killed = ((await _status(http, soak))["models"][model].get("pids") or [None])[0]
                    if killed is not None:
                        os.kill(killed, signal.SIGKILL)
    return f"{model} pid {killed} killed mid-stream; the stream ended with {last[:90]!r}"


async def kill_while_starting(soak: Soak, http: httpx.AsyncClient, rng: random.Random) -> str:
    model = "gamma"  # starts in 0.3 s: long enough to be caught starting
    st = await _status(http, soak)
    if st["resident"] == model:
        await http.post(soak.url + "/api/unload")
        await asyncio.sleep(0.5)
    load = asyncio.ensure_future(http.post(soak.url + f"/api/models/{model}/load", params={"wait": "true"}, timeout=60))
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        m = (await _status(http, soak))["models"][model]
        if m["state"] in ("starting", "loading") and m.get("pids"):
            os.kill(m["pids"][0], signal.SIGKILL)
            r = await load
            return f"{model} killed while {m['state']}: load answered {r.status_code} {r.text[:90]}"
        await asyncio.sleep(0.005)
    load.cancel()
    return f"{model} never seen starting"


async def stall(soak: Soak, http: httpx.AsyncClient, rng: random.Random) -> str:
    model = rng.choice(MODELS)
    pid = await _resident_pid(http, soak, model)
    if pid is None:
        return "no backend to stall"
    os.kill(pid, signal.SIGSTOP)
    try:
        await asyncio.sleep(STALL_S)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGCONT)
    return f"{model} pid {pid} stopped for {STALL_S} s (impatient clients wait {IMPATIENT_S} s)"


FaultFn = Callable[[Soak, httpx.AsyncClient, random.Random], Awaitable[str]]
FAULTS: dict[str, FaultFn] = {
    "kill_while_serving": kill_while_serving,
    "kill_while_streaming": kill_while_streaming,
    "kill_while_starting": kill_while_starting,
    "stall_past_timeouts": stall,
}


async def chaos(soak: Soak, total: int, rng: random.Random, fault_every: int) -> None:
    """A fault every `fault_every` requests, the kinds in seeded rounds (each kind once per round;
    the first round is completed even if the clients finish first); the gateway SIGKILLed and
    restarted once, halfway."""
    restarted = False
    next_fault = fault_every
    round_: list[str] = []
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        while soak.done < total or sum(soak.faults[k] for k in FAULTS) < len(FAULTS):
            if not restarted and soak.done >= total // 2:
                restarted = True
                await asyncio.to_thread(restart_gateway, soak)
                continue
            if soak.done >= next_fault:
                next_fault += fault_every
                if not round_:
                    round_ = rng.sample(sorted(FAULTS), len(FAULTS))
                kind = round_.pop()
                try:
                    note = await FAULTS[kind](soak, http, rng)
                except (httpx.HTTPError, OSError) as exc:  # e.g. the backend died of an earlier fault
                    note = f"could not inject: {type(exc).__name__}: {exc}"
                soak.faults[kind] += 1
                soak.fault_notes.append(f"{kind}: {note}")
            await asyncio.sleep(0.02)


def restart_gateway(soak: Soak) -> None:
    assert soak.gw.proc is not None
    soak.gateway_down = True
    soak.kill_t = time.monotonic()
    soak.gw.signal(signal.SIGKILL)
    soak.gw.proc.wait(10)
    soak.faults["gateway_sigkill_restart"] += 1
    left = len(soak.backends())
    soak.gw.start()
    soak.up_t = time.monotonic()
    soak.gateway_down = False
    soak.restarted_footprint = gateway_footprint(soak)
    soak.fault_notes.append(
        f"gateway_sigkill_restart: SIGKILLed with {left} backend(s) alive; restarted in {soak.up_t - soak.kill_t:.2f} s"
    )


# --- measurements ----------------------------------------------------------------------------


def gateway_footprint(soak: Soak) -> dict[str, float]:
    assert soak.gw.proc is not None
    p = psutil.Process(soak.gw.proc.pid)
    return {"rss_mib": round(p.memory_info().rss / 2**20, 1), "fds": p.num_fds()}


async def added_latency(soak: Soak, n: int) -> dict[str, float]:
    """What the gateway adds: the same chat straight to the backend and through the gateway,
    alternating (so load on the machine hits both alike), one at a time, `n` of each."""
    async with httpx.AsyncClient(timeout=30, trust_env=False) as http:
        await http.post(soak.url + "/api/models/gamma/load", params={"wait": "true"})
        base = (await _status(http, soak))["models"]["gamma"]["base_url"]
        body = _body(soak, "gamma", "latency probe")
        direct: list[float] = []
        proxied: list[float] = []
        for _ in range(n):
            for url, out in ((base, direct), (soak.url, proxied)):
                t = time.perf_counter()
                (await http.post(url + "/v1/chat/completions", json=body)).raise_for_status()
                out.append(time.perf_counter() - t)

    def q(xs: list[float], p: float) -> float:
        xs = sorted(xs)
        return xs[min(len(xs) - 1, int(p * len(xs)))] * 1000

    return {
        "direct_p50_ms": round(q(direct, 0.5), 2),
        "direct_p99_ms": round(q(direct, 0.99), 2),
        "gateway_p50_ms": round(q(proxied, 0.5), 2),
        "gateway_p99_ms": round(q(proxied, 0.99), 2),
        "p50_ms": round(q(proxied, 0.5) - q(direct, 0.5), 2),
        "p99_ms": round(q(proxied, 0.99) - q(direct, 0.99), 2),
    }


def run(
    requests: int, clients: int, seed: int, tmp: Path, latency_probes: int = 500, fault_every: int = FAULT_EVERY
) -> dict[str, Any]:
    """The whole soak; returns its figures (see docs/reliability.md)."""
    soak = Soak(tmp, seed)
    sample_out = tmp / "sampler.json"
    sampler = subprocess.Popen(
        [PY, str(ROOT / "tests" / "gateway_e2e" / "sampler.py"), soak.token, str(sample_out)],
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    assert sampler.stdout is not None
    sampler.stdout.readline()  # "sampling"
    t0 = time.monotonic()
    try:
        soak.gw.start()
        latency = asyncio.run(added_latency(soak, latency_probes))
        before = gateway_footprint(soak)

        async def main() -> None:
            rng = random.Random(seed)
            todo = list(range(requests))[::-1]
            limits = httpx.Limits(max_connections=clients + 5, max_keepalive_connections=clients)
            async with httpx.AsyncClient(
                timeout=httpx.Timeout(PATIENCE_S, connect=5), limits=limits, trust_env=False
            ) as http:
                rngs = [random.Random(rng.getrandbits(64)) for _ in range(clients)]
                await asyncio.gather(
                    chaos(soak, requests, random.Random(rng.getrandbits(64)), fault_every),
                    *(client(soak, http, r, todo) for r in rngs),
                )

        asyncio.run(main())
        time.sleep(1.0)  # the clients' closed connections reach the gateway
        after = gateway_footprint(soak)
    finally:
        soak.gw.stop()
        sampler.send_signal(signal.SIGTERM)
        sampler.wait(30)
    time.sleep(0.5)
    left = soak.backends()
    for p in left:
        with contextlib.suppress(psutil.Error):
            p.kill()
    samples = json.loads(sample_out.read_text())
    results = Counter(o.result for o in soak.outcomes)
    accepted = sum(results[k] for k in ("answered", "error_body", "left", "gave_up", "lost", "hung"))
    bad: dict[str, Counter[str]] = {name: Counter() for name, _, _ in BAD_INPUTS}
    for o in soak.outcomes:
        if o.kind == "malformed":
            bad[o.bad_input][f"{o.status} {o.code}".strip() if o.status is not None else o.result] += 1
    answered_s = sorted(o.seconds for o in soak.outcomes if o.result == "answered")
    return {
        "requests": requests,
        "clients": clients,
        "seed": seed,
        "seconds": round(time.monotonic() - t0, 1),
        "results": dict(results),
        "accepted": accepted,
        "refused_while_down_and_resent": soak.refusals,
        "answered_or_error": results["answered"] + results["error_body"],
        "lost": results["lost"],
        "hung": results["hung"],
        "kinds": dict(Counter(o.kind for o in soak.outcomes)),
        "statuses": dict(Counter(str(o.status) for o in soak.outcomes)),
        "faults": dict(soak.faults),
        "fault_notes": soak.fault_notes,
        "invariant": {"samples": samples["samples"], "max_backends": samples["max"]},
        "processes_left": len(left),
        "gateway_before": before,
        "gateway_after_restart": soak.restarted_footprint,
        "gateway_after": after,
        "added_latency": latency,
        "answer_s": {
            "p50": round(statistics.median(answered_s), 3) if answered_s else None,
            "p99": round(answered_s[int(0.99 * (len(answered_s) - 1))], 3) if answered_s else None,
        },
        "bad_inputs": {name: dict(c) for name, c in bad.items()},
        "lost_details": [
            f"{o.kind} {o.bad_input or o.model}: {o.status} {o.detail}"
            for o in soak.outcomes
            if o.result in ("lost", "hung")
        ][:20],
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=10_000)
    ap.add_argument("--clients", type=int, default=30)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fault-every", type=int, default=FAULT_EVERY, help="requests between two faults")
    ap.add_argument("--json", type=Path, default=None, help="write the figures here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="vlmswap-soak-") as tmp:
        report = run(args.requests, args.clients, args.seed, Path(tmp), fault_every=args.fault_every)
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
