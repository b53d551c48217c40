"""Page-cache staging on a real file of a model's size: a cold load with the weights evicted, against staged.

One safetensors checkpoint of Qwen2-VL-2B's size (4.42 GB of bf16 weights, random values, in a
few hundred tensors the way a real checkpoint is split) is written to disk once. Then, runs
interleaved so that other load on the machine falls on both alike:

- **cold**: the file's pages are dropped from the OS page cache (`posix_fadvise(DONTNEED)`,
  checked with mincore: 0 % resident), then the weights are loaded as a server's loader does
  (`safetensors.torch.load_file` on the CPU, which maps the file, then every tensor copied once,
  as a loader copies them onto the GPU: every byte is read);
- **staged**: dropped the same way, then read once by `vlmswap.swap.staging.read_into_cache`
  (what the gateway does while the GPU is idle; its own time is reported apart: it is spent
  before the request comes), then loaded the same way.

The load's time is the part of a cold start that staging shortens; the rest of a vLLM start
(imports, torch.compile, CUDA graphs: REFERENCE.md) is untouched by it.

Run: .venv/bin/python bench/page_cache.py [--runs 5] [--dir /var/tmp] (needs ~5 GB of disk)
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))

from _gateway_common import machine  # noqa: E402

from vlmswap.swap import staging  # noqa: E402

SIZE_BYTES = 4_420_000_000  # Qwen2-VL-2B's bf16 weights (REFERENCE.md)
TENSORS = 340  # about what its checkpoint holds


def make_checkpoint(path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    per = SIZE_BYTES // 2 // TENSORS  # bf16: 2 bytes an element
    g = torch.Generator().manual_seed(0)
    tensors = {
        f"model.layers.{i}.weight": torch.randint(-32768, 32767, (per,), dtype=torch.int16, generator=g).view(
            torch.bfloat16
        )
        for i in range(TENSORS)
    }
    save_file(tensors, str(path))
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def load(path: Path) -> float:
    from safetensors.torch import load_file

    t0 = time.perf_counter()
    weights = load_file(str(path), device="cpu")  # views of a memory map: nothing read yet
    copies = [w.clone() for w in weights.values()]  # every byte read and copied, as onto a GPU
    took = time.perf_counter() - t0
    del weights, copies
    return took


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    print(machine())
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="vlmswap-pagecache-") as tmp:
        path = Path(tmp) / "model.safetensors"
        t0 = time.perf_counter()
        make_checkpoint(path)
        print(
            f"checkpoint: {path.stat().st_size / 1e9:.2f} GB in {TENSORS} tensors, written in "
            f"{time.perf_counter() - t0:.1f} s, on {args.dir}"
        )
        cold, staged, stage = [], [], []
        for run in range(args.runs):
            for kind in ("cold", "staged") if run % 2 == 0 else ("staged", "cold"):
                staging.evict_from_cache([path])
                before = staging.cached_fraction(path)
                if kind == "staged":
                    t1 = time.perf_counter()
                    done, finished = staging.read_into_cache([path])
                    stage.append(time.perf_counter() - t1)
                    assert finished and done == path.stat().st_size
                resident = staging.cached_fraction(path)
                took = load(path)
                (staged if kind == "staged" else cold).append(took)
                print(
                    f"run {run + 1} {kind:6}: resident before {before:.0%} / at load {resident:.0%}, "
                    f"load {took:.2f} s" + (f" (staging read {stage[-1]:.2f} s)" if kind == "staged" else "")
                )
    c, s, r = statistics.median(cold), statistics.median(staged), statistics.median(stage)
    print()
    print("| load of 4.42 GB of weights | median s | runs (s) |")
    print("|---|---|---|")
    print(f"| cold (evicted from the page cache) | {c:.2f} | {', '.join(f'{x:.2f}' for x in cold)} |")
    print(f"| staged (read into the page cache before) | {s:.2f} | {', '.join(f'{x:.2f}' for x in staged)} |")
    print(f"| the staging read itself (idle time) | {r:.2f} | {', '.join(f'{x:.2f}' for x in stage)} |")
    print(
        f"\nstaging saves {c - s:.2f} s of the load ({1 - s / c:.0%}); load average at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if args.json:
        args.json.write_text(json.dumps({"cold_s": cold, "staged_s": staged, "stage_read_s": stage}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
