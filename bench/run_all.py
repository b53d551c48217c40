"""Run every benchmark of bench/ one after another (`make bench`); each prints its own table.

Run them on a quiet machine: the numbers in bench/README.md say under what load they were taken.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "worker_rapidocr.py",
    "ocr_pipeline.py",
    "layout_eval.py",
    "gateway_switch.py",
    "gateway_proxy.py",
    "gateway_sleep.py",
    "gateway_placement.py",
    "cluster.py",
    "simulate.py",
    "predictor_speed.py",
    "page_cache.py",
]


def main() -> int:
    failed = []
    for name in SCRIPTS:
        print(f"\n=== bench/{name} ===", flush=True)
        if subprocess.run([sys.executable, str(HERE / name)]).returncode != 0:
            failed.append(name)
    if failed:
        print("failed: " + ", ".join(failed), file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
