"""The sleeping pool's order on the shipped traces: lru against predictive (and the oracle's bound).

Each trace kind of `vlmswap trace generate` (bursty-groups, diurnal, documents-chat, sessions)
at six seeds: 1-3 are the seeds the predictor's settings were chosen on (tuning), 101-103 were
never looked at while choosing (held out); they are reported apart. Every run replays the
trace through the real scheduler and pool plans (`vlmswap.swap.simulator`) on the registry
examples/sim-12gb.yaml (the first user's 12 GB card, host RAM for two sleepers, the seed
models' start/wake/sleep priors), with a simulated NVML card of 12 GB (`--gpu-gb 12`: each
sleeper's CUDA context counted before a start). `oracle` is Belady's rule with the trace's
future in hand: no gateway can do it; it bounds what any prediction could win.

Reported per run: cold starts, wakes, wait (mean, p95, p99); per trace and seed group: the
change in cold starts against lru and the worst p99 ratio. `--json FILE` keeps every number.

Run: .venv/bin/python bench/simulate.py [--json bench/results/simulate.json]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from vlmswap.registry.config import load_registry  # noqa: E402
from vlmswap.swap import traces  # noqa: E402
from vlmswap.swap.simulator import Options, Result, simulate  # noqa: E402

GIB = 1024**3
TUNING = (1, 2, 3)
HELD_OUT = (101, 102, 103)
POLICIES = ("lru", "predictive", "oracle")


def run(kind: str, seed: int, card_gb: float | None) -> dict[str, Result]:
    reg = load_registry(ROOT / "examples" / "sim-12gb.yaml")
    trace = traces.generate(kind, seed)
    card = int(card_gb * GIB) if card_gb else None
    return {p: simulate(reg, trace, Options(p, card_bytes=card)) for p in POLICIES}  # type: ignore[arg-type]


def summary(rows: list[dict[str, Result]]) -> dict[str, Any]:
    lru = sum(r["lru"].cold_starts for r in rows)
    pred = sum(r["predictive"].cold_starts for r in rows)
    orc = sum(r["oracle"].cold_starts for r in rows)
    return {
        "cold_lru": lru,
        "cold_predictive": pred,
        "cold_oracle": orc,
        "fewer_cold": 1 - pred / lru if lru else 0.0,
        "fewer_cold_oracle": 1 - orc / lru if lru else 0.0,
        "worst_seed_more_cold": max(
            (r["predictive"].cold_starts - r["lru"].cold_starts) / r["lru"].cold_starts for r in rows
        ),
        "worst_p99_ratio": max(r["predictive"].wait(99) / r["lru"].wait(99) for r in rows),
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    ap.add_argument("--gpu-gb", type=float, default=12.0, help="the simulated card (0: no NVML)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    out: dict[str, Any] = {"gpu_gb": args.gpu_gb, "traces": {}}
    for kind in traces.KINDS:
        print(f"\n### {kind}\n")
        print("| seeds | seed | requests | policy | cold starts | wakes | wait mean s | p95 s | p99 s |")
        print("|---|---|---|---|---|---|---|---|---|")
        per: dict[str, Any] = {}
        for label, seeds in (("tuning", TUNING), ("held out", HELD_OUT)):
            rows = []
            for seed in seeds:
                res = run(kind, seed, args.gpu_gb or None)
                rows.append(res)
                for p, r in res.items():
                    print(
                        f"| {label} | {seed} | {r.requests} | {p} | {r.cold_starts} | {r.wakes} | "
                        f"{r.mean_wait():.1f} | {r.wait(95):.1f} | {r.wait(99):.1f} |"
                    )
            s = summary(rows)
            per[label] = {"summary": s, "runs": [{p: r.to_json() for p, r in res.items()} for res in rows]}
        print()
        for label in ("tuning", "held out"):
            s = per[label]["summary"]
            print(
                f"- {label} seeds: predictive {s['cold_predictive']} cold starts against lru's {s['cold_lru']} "
                f"({s['fewer_cold']:.0%} fewer; the oracle {s['fewer_cold_oracle']:.0%}); worst seed "
                f"{s['worst_seed_more_cold']:+.0%} cold starts; worst p99 ratio {s['worst_p99_ratio']:.2f}"
            )
        out["traces"][kind] = per
    print(f"\n({time.perf_counter() - t0:.1f} s)")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(out, indent=1), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
