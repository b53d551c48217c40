"""Two cluster replicas against one gateway, on the same alternating workload of two models.

One gateway (`vlmswap serve`) keeps one model awake, so requests that alternate between A
and B switch on every request. `vlmswap cluster serve --replicas 2` (a local Ray, one model
per replica) sends each model's requests to the replica that holds it: after the first
load of each, no switch. Both run the same registry: A and B are fault servers (the
vLLM-protocol test server) with a load delay standing in for a model's load time
(`--load-s`, during which the port refuses connections, as vLLM's does) and a fixed answer
time (`--answer-s`). The workload is `--requests` sequential chat requests A, B, A, B, ...;
pass 1 is cold (no model loaded yet), passes 2.. are warm. Switches come from each target's
`/api/status`; makespan is the wall time of a pass.

Run: .venv/bin/python bench/cluster.py [--passes 3] [--requests 10] [--load-s 2] [--answer-s 0.2]
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
from _gateway_common import PY, ROOT, free_port, machine, median, registry_yaml, spawned

from tests.servers import fault_cmd

UP_TIMEOUT_S = 240


def _registry(load_s: float, answer_s: float) -> str:
    def model(name: str) -> dict[str, Any]:
        cmd = fault_cmd("--startup-delay", str(load_s), "--response-delay", str(answer_s))
        return {"served_name": name, "cmd": cmd, "vram_gb": 0, "startup_timeout_s": 60}

    return registry_yaml({"A": model("A"), "B": model("B")}, policy="single", max_wait_s=300)


def _wait_up(url: str, ready: Callable[[dict[str, Any]], bool], proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + UP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args} exited with {proc.returncode}")
        with contextlib.suppress(httpx.TransportError, ValueError):
            r = httpx.get(f"{url}/api/status", timeout=5, trust_env=False)
            if r.status_code == 200 and ready(r.json()):
                return
        time.sleep(0.2)
    raise TimeoutError(f"{url} not up after {UP_TIMEOUT_S} s")


@contextlib.contextmanager
def _target(kind: str, config: Path, state: Path, log: Path) -> Iterator[str]:
    port = free_port()
    argv = [PY, "-m", "vlmswap", "serve", "--config", str(config), "--port", str(port)]
    if kind == "cluster":
        argv = [
            PY,
            "-m",
            "vlmswap",
            "cluster",
            "serve",
            "--config",
            str(config),
            "--replicas",
            "2",
            "--port",
            str(port),
            "--gpus-per-replica",
            "0",
            "--no-dashboard",
        ]
    env = {"VLMSWAP_STATE_DIR": str(state), "PYTHONUNBUFFERED": "1"}
    with spawned(argv, env=env, log=log) as proc:
        url = f"http://127.0.0.1:{port}"
        _wait_up(url, (lambda st: len(st.get("replicas", [])) == 2) if kind == "cluster" else (lambda st: True), proc)
        try:
            yield url
        finally:
            # SIGTERM to the command alone, as docs/cluster.md says: a signal to the whole
            # group would reach Ray's raylet too, which kills replicas before they stop backends.
            proc.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(60)


def _pass(url: str, requests: int) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=300, trust_env=False) as c:
        before = c.get("/api/status").json()
        lat = []
        t0 = time.perf_counter()
        for i in range(requests):
            model = "AB"[i % 2]
            s = time.perf_counter()
            r = c.post(
                "/v1/chat/completions",
                json={"model": model, "max_tokens": 4, "messages": [{"role": "user", "content": f"req {i}"}]},
            )
            r.raise_for_status()
            lat.append(time.perf_counter() - s)
        makespan = time.perf_counter() - t0
        after = c.get("/api/status").json()
    starts = sum(m["starts"] for m in after["models"].values()) - sum(m["starts"] for m in before["models"].values())
    return {
        "makespan": makespan,
        "median_latency": median(lat),
        "switches": after["switches"] - before["switches"],
        "starts": starts,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument("--requests", type=int, default=10)
    ap.add_argument("--load-s", type=float, default=2.0, help="each model's load time (fault server start delay)")
    ap.add_argument("--answer-s", type=float, default=0.2, help="each request's answer time")
    args = ap.parse_args()
    print(f"Machine: {machine()}; load average at start {os.getloadavg()[0]:.2f}")
    print(
        f"Workload: {args.requests} sequential requests alternating A, B; model load {args.load_s} s, answer "
        f"{args.answer_s} s; {args.passes} passes (pass 1 cold)"
    )
    results: dict[str, list[dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="vlmswap-bench-cluster-") as tmp_s:
        tmp = Path(tmp_s)
        config = tmp / "registry.yaml"
        config.write_text(_registry(args.load_s, args.answer_s))
        for kind in ("gateway", "cluster"):
            t = time.perf_counter()
            with _target(kind, config, tmp / f"state-{kind}", tmp / f"{kind}.log") as url:
                up = time.perf_counter() - t
                results[kind] = [_pass(url, args.requests) for _ in range(args.passes)]
            print(f"{kind}: up in {up:.1f} s")
    print()
    print(
        "| target | switches (cold pass) | switches per warm pass | worker starts (all passes) "
        "| makespan s (cold) | makespan s (warm, median) | request latency s (warm, median) |"
    )
    print("|---|---|---|---|---|---|---|")
    labels = {"gateway": "one gateway (`vlmswap serve`)", "cluster": "cluster, 2 replicas (`vlmswap cluster serve`)"}
    for kind, runs in results.items():
        warm = runs[1:] or runs
        print(
            f"| {labels[kind]} | {runs[0]['switches']:.0f} | {median([r['switches'] for r in warm]):.0f} "
            f"| {sum(r['starts'] for r in runs):.0f} | {runs[0]['makespan']:.2f} "
            f"| {median([r['makespan'] for r in warm]):.2f} | {median([r['median_latency'] for r in warm]):.3f} |"
        )


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
