"""Policy single against policy fit on a mixed workload of three models.

Three fault servers (the vLLM-protocol test server) stand for three models of 6, 7 and 8 GB
on a declared 24 GB card (`gateway.gpu_memory_gb`); each takes `--load-s` to start, as a
model loads, and `--work-s` per request. 20 clients send `--requests` requests in a random
(seeded) model order through the gateway's manager. Under `single` only one model is awake
and the scheduler groups requests to switch rarely; under `fit` all three fit together
(21 <= 22.8 GB), so after each has loaded once there is nothing to switch. Reported: the
switches (model starts) and the makespan, side by side in one run.

Run: .venv/bin/python bench/gateway_placement.py [--requests 300] [--load-s 1.0]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _gateway_common import machine

from vlmswap.registry.config import parse_registry
from vlmswap.swap.manager import Manager

SIZES = {"a": 6, "b": 7, "c": 8}


async def workload(policy: str, order: list[str], load_s: float, work_s: float, state: Path) -> dict[str, Any]:
    fault = [
        "${PYTHON}",
        "-m",
        "tests.servers.fault_server",
        "--port",
        "${PORT}",
        "--served-model-name",
        "${SERVED_NAME}",
        "--startup-delay",
        str(load_s),
        "--response-delay",
        str(work_s),
    ]
    reg = parse_registry(
        {
            "gateway": {"policy": policy, "gpu_memory_gb": 24, "max_wait_s": 5, "stop_grace_s": 5},
            "models": {m: {"served_name": m, "cmd": fault, "vram_gb": g} for m, g in SIZES.items()},
        }
    )
    m = Manager(reg, state_dir=state)
    await m.start()
    todo = list(enumerate(order))
    t0 = time.perf_counter()
    async with httpx.AsyncClient(trust_env=False, timeout=120) as http:

        async def client() -> None:
            while todo:
                i, model = todo.pop(0)
                async with m.lease(model) as lease:
                    r = await http.post(
                        lease.base_url + "/v1/chat/completions",
                        json={"model": model, "messages": [{"role": "user", "content": f"r{i}"}], "max_tokens": 4},
                    )
                    r.raise_for_status()

        try:
            await asyncio.gather(*(client() for _ in range(20)))
        finally:
            makespan = time.perf_counter() - t0
            starts = sum(st.starts for st in m.models.values())
            await m.shutdown()
    return {"makespan": makespan, "starts": starts, "switches": m.switch_count}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=300)
    ap.add_argument("--load-s", type=float, default=1.0)
    ap.add_argument("--work-s", type=float, default=0.02)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    print(
        f"{args.requests} requests, 20 clients, models of {SIZES} GB on a declared 24 GB card, "
        f"load {args.load_s} s, {args.work_s * 1e3:.0f} ms per request; {args.runs} runs (seeds 1..{args.runs})\n"
    )
    print("| run | single: switches | single: makespan | fit: switches | fit: makespan |")
    print("|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(1, args.runs + 1):
            rng = random.Random(seed)
            order = [rng.choice(list(SIZES)) for _ in range(args.requests)]
            row = {}
            for policy in ("single", "fit"):
                row[policy] = asyncio.run(
                    workload(policy, order, args.load_s, args.work_s, Path(tmp) / f"{policy}-{seed}")
                )
            s, f = row["single"], row["fit"]
            print(f"| {seed} | {s['switches']} | {s['makespan']:.2f} s | {f['switches']} | {f['makespan']:.2f} s |")
    return 0


if __name__ == "__main__":
    ROOT = Path(__file__).resolve().parent.parent
    sys.path.insert(0, str(ROOT))
    sys.exit(main())
