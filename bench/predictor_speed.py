"""What the predictor costs on the request path: `observe` per request, and a query per sleeper.

The gateway calls `Predictor.observe` once per request, on the event loop, before the scheduler
sees the request; the pool asks `keep` (a chance and a cost) for each sleeper when a switch
plans. Both are timed here, call by call with `time.perf_counter_ns`, on the shipped traces
replayed in order (their own clock), with the default registry's 13 models known to the
predictor. Goal (issue 19): well under a millisecond per request.

Run: .venv/bin/python bench/predictor_speed.py
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _gateway_common import machine  # noqa: E402

from vlmswap.registry.config import load_registry  # noqa: E402
from vlmswap.swap import traces  # noqa: E402
from vlmswap.swap.predictor import Predictor, trace_hour  # noqa: E402


def pct(values: list[int], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, int(q / 100 * len(s)))] / 1000


def main() -> int:
    reg = load_registry(None)
    names = list(reg.models)
    print(machine())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}")
    print()
    print(
        "| trace | requests | observe median µs | observe p99 µs | observe max µs | chance median µs | chance p99 µs |"
    )
    print("|---|---|---|---|---|---|---|")
    for kind in traces.KINDS:
        reqs = traces.generate(kind, 1)
        p = Predictor(names, hour_of=trace_hour)
        obs: list[int] = []
        ask: list[int] = []
        for i, r in enumerate(reqs):
            t0 = time.perf_counter_ns()
            p.observe(r.model, r.t)
            obs.append(time.perf_counter_ns() - t0)
            if i % 5 == 0:
                for m in ("qwen3-vl-2b", "dots-ocr"):
                    t1 = time.perf_counter_ns()
                    p.chance(m, r.t + 1)
                    ask.append(time.perf_counter_ns() - t1)
        print(
            f"| {kind} | {len(reqs)} | {statistics.median(obs) / 1000:.1f} | {pct(obs, 99):.1f} | {max(obs) / 1000:.1f} "
            f"| {statistics.median(ask) / 1000:.1f} | {pct(ask, 99):.1f} |"
        )
    from vlmswap.swap.traces import Recorder

    rec = Recorder(Path("/dev/null"))
    add: list[int] = []
    for i in range(20000):
        t0 = time.perf_counter_ns()
        rec.add(1.7e9 + i, "qwen3-vl-2b", 1.25)
        add.append(time.perf_counter_ns() - t0)
    print(
        f"\ntrace recording (gateway.trace_path), Recorder.add on the request path: median "
        f"{statistics.median(add) / 1000:.2f} µs, p99 {pct(add, 99):.2f} µs (the file is written by a task, in a thread)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
