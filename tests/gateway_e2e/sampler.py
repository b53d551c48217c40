"""Process-table sampler for the stress test, run as its own process (no GIL shared with the clients).

Run: python sampler.py TOKEN OUT_JSON [PERIOD_S]. Every PERIOD_S (10 ms) it counts live processes
whose cmdline names the fault server and contains TOKEN; on SIGTERM it writes
{"samples", "median_gap_s", "max", "worst_pids"} to OUT_JSON and exits.
"""

from __future__ import annotations

import itertools
import json
import os
import signal
import sys
import time


def count(token: bytes) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/cmdline", "rb") as f:
                cmd = f.read()
        except OSError:
            continue
        # A zombie's cmdline is empty: it has exited and holds nothing but its exit status.
        if b"fault_server.py" in cmd and token in cmd:
            found.append(int(name))
    return found


def main() -> None:
    token, out = sys.argv[1].encode(), sys.argv[2]
    period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.010
    stop = False

    def on_term(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, on_term)
    times: list[float] = []
    worst: list[int] = []
    seen_max = 0
    next_t = time.monotonic()
    print("sampling", flush=True)
    while not stop:
        pids = count(token)
        times.append(time.monotonic())
        if len(pids) > seen_max:
            seen_max, worst = len(pids), pids
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.monotonic()
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    with open(out, "w") as f:
        json.dump({"samples": len(times), "median_gap_s": gaps[len(gaps) // 2] if gaps else None,
                   "max": seen_max, "worst_pids": worst}, f)


if __name__ == "__main__":
    main()
