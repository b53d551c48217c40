"""Cold switch against warm switch: the sleeping pool's gain, side by side in one run.

Two pairs of real workers: two tiny random-weight Qwen2-VL checkpoints through the
transformers engine (`vlmswap dev make-tiny-model`, CPU), and two rapidocr engines. For each
pair the gateway's manager alternates between A and B (`--switches` times): once with
`sleep_mode: false` (every switch stops one process and starts the other: cold) and once with
`sleep_mode: true` (after the first load of each, a switch puts one to sleep and wakes the
other: warm). A switch is timed from asking for a lease on the other model until the lease
is granted (drain, sleep or stop, wake or start, readiness: everything a client waits for).

The gateway's own share of a warm switch comes from its event timestamps: the whole switch
(draining -> ready) minus the backend's own work, i.e. the time inside POST /sleep and the
wake (POST /wake_up until /is_sleeping says false and /v1/models lists it), which the
lifecycle reports as `backend_s` on its "asleep" and "ready" events.

Goals (issue 9): warm at most 1/20 of cold; the gateway's share of a warm switch at most 20 ms.

Run: .venv/bin/python bench/gateway_sleep.py [--switches 6]
"""

from __future__ import annotations

import argparse
import asyncio
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _gateway_common import PY, machine, median

from vlmswap.registry.config import parse_registry
from vlmswap.swap.manager import Manager


def worker(engine: str, *args: str) -> dict[str, Any]:
    cmd = [
        "${PYTHON}",
        "-m",
        "vlmswap",
        "worker",
        "--engine",
        engine,
        "--port",
        "${PORT}",
        "--served-model-name",
        "${SERVED_NAME}",
        *args,
    ]
    return {"cmd": cmd, "startup_timeout_s": 300}


async def alternate(
    models: dict[str, Any], sleep_mode: bool, switches: int, state: Path, gateway: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Switch A, B, A, ... through a manager; returns each switch's time (the first loads of A and
    B excluded), the events, and the GPU residual of the model left asleep after each switch."""
    reg = parse_registry(
        {
            "gateway": {"stop_grace_s": 5, **(gateway or {})},
            "models": {name: {**spec, "served_name": name, "sleep_mode": sleep_mode} for name, spec in models.items()},
        }
    )
    m = Manager(reg, state_dir=state)
    events: list[dict[str, Any]] = []
    m.add_listener(events.append)
    await m.start()
    a, b = list(models)
    times: list[float] = []
    residual: list[int] = []
    try:
        for i in range(switches + 2):  # the first two are the first loads of A and B (cold either way)
            name, other = ((a, b), (b, a))[i % 2]
            t0 = time.perf_counter()
            async with m.lease(name):
                took = time.perf_counter() - t0
            if i >= 2:
                times.append(took)
                st = m.status()["models"][other]
                if st["state"] == "sleeping" and "gpu_bytes" in st:
                    residual.append(st["gpu_bytes"])
    finally:
        await m.shutdown()
    return {"times": times, "events": events, "residual": residual}


def gateway_share(events: list[dict[str, Any]]) -> list[float]:
    """Per warm switch: (ready.time - draining.time) minus the backend's sleep and wake seconds."""
    out, start, backend = [], None, 0.0
    for e in events:
        if e["type"] != "phase":
            continue
        if e["phase"] == "draining":
            start, backend = e["time"], 0.0
        elif e["phase"] == "sleeping" and e.get("backend_s") is not None:
            backend += e["backend_s"]
        elif e["phase"] == "ready" and e.get("kind") == "warm" and start is not None:
            out.append(e["time"] - start - backend - e["backend_s"])
            start = None
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=6)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny"
        subprocess.run(
            [PY, "-m", "vlmswap", "dev", "make-tiny-model", str(tiny)], check=True, stdout=subprocess.DEVNULL
        )
        pairs = {
            "tiny Qwen2-VL (transformers, CPU)": {
                "tiny-a": worker("transformers", "--model", str(tiny), "--device", "cpu"),
                "tiny-b": worker("transformers", "--model", str(tiny), "--device", "cpu"),
            },
            "rapidocr": {"ocr-a": worker("rapidocr"), "ocr-b": worker("rapidocr")},
        }
        print(f"machine: {machine()}")
        print(f"{args.switches} alternating switches per row; medians (min-max)\n")
        print("| pair | cold switch | warm switch | warm / cold | gateway's share of a warm switch |")
        print("|---|---|---|---|---|")
        ok = True
        for label, models in pairs.items():
            cold = asyncio.run(alternate(models, False, args.switches, Path(tmp) / "cold"))
            warm = asyncio.run(alternate(models, True, args.switches, Path(tmp) / "warm"))
            c, w = cold["times"], warm["times"]
            share = gateway_share(warm["events"])
            ratio = median(w) / median(c)
            ok &= ratio <= 1 / 20 and median(share) <= 0.020
            print(
                f"| {label} | {median(c):.3f} s ({min(c):.3f}-{max(c):.3f}) | "
                f"{median(w) * 1e3:.1f} ms ({min(w) * 1e3:.1f}-{max(w) * 1e3:.1f}) | 1/{1 / ratio:.0f} | "
                f"{median(share) * 1e3:.1f} ms ({min(share) * 1e3:.1f}-{max(share) * 1e3:.1f}) |"
            )
        print("\ngoals (warm <= cold/20, gateway share <= 20 ms):", "met" if ok else "MISSED")
    return 0


if __name__ == "__main__":
    sys.exit(main())
