"""Process-table sampler for the stress test, run as its own process (no GIL shared with the clients).

Run: python sampler.py TOKEN OUT_JSON [PERIOD_S] [awake]. Every PERIOD_S (10 ms) it counts live
processes whose cmdline names the fault server and contains TOKEN; on SIGTERM it writes
{"samples", "median_gap_s", "max", "worst_pids"} to OUT_JSON and exits.

With `awake` (the sleeping pool is on, so several backends exist) it counts the backends that
are awake: `GET /is_sleeping` false, or not answering yet (loading). One round asks every
backend twice and counts a backend only when both answers say awake, so a switch that happens
while the round runs (sleep A, wake B: milliseconds with fault servers) is not mistaken for
two awake at once; two backends awake through a whole round are.

With `sizes=a:4,b:4,c:6` (policy fit) "max" is the largest sum of the declared sizes of the
backends alive at once (a backend is model `m` when its cmdline names TOKEN-m), and
"worst_pids" the backends alive at that moment.
"""

from __future__ import annotations

import http.client
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


def port_of(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        return int(args[args.index(b"--port") + 1])
    except (OSError, ValueError, IndexError):
        return None


def awake(pid: int) -> bool:
    port = port_of(pid)
    if port is None:
        return False  # gone
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
    try:
        conn.request("GET", "/is_sleeping")
        return json.loads(conn.getresponse().read()).get("is_sleeping") is False
    except (OSError, ValueError, http.client.HTTPException):
        return os.path.exists(f"/proc/{pid}")  # alive and not answering: loading, it counts
    finally:
        conn.close()


def declared(pid: int, token: bytes, sizes: dict[str, float]) -> float:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            args = f.read().split(b"\0")
        name = args[args.index(b"--served-model-name") + 1].decode()
    except (OSError, ValueError, IndexError):
        return 0.0
    return sizes.get(name.rsplit("-", 1)[-1], 0.0) if token.decode() in name else 0.0


def count_awake(token: bytes) -> list[int]:
    pids = count(token)
    first = {p for p in pids if awake(p)}
    return [p for p in pids if p in first and awake(p)]


def main() -> None:
    token, out = sys.argv[1].encode(), sys.argv[2]
    period = float(sys.argv[3]) if len(sys.argv) > 3 else 0.010
    mode = sys.argv[4] if len(sys.argv) > 4 else "all"
    counter = count_awake if mode == "awake" else count
    sizes = (
        {k: float(v) for k, v in (kv.split(":") for kv in mode[6:].split(","))} if mode.startswith("sizes=") else None
    )
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
        pids = counter(token)
        times.append(time.monotonic())
        weight = len(pids) if sizes is None else sum(declared(p, token, sizes) for p in pids)
        if weight > seen_max:
            seen_max, worst = weight, pids
        next_t += period
        delay = next_t - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_t = time.monotonic()
    gaps = sorted(b - a for a, b in itertools.pairwise(times))
    with open(out, "w") as f:
        json.dump(
            {
                "samples": len(times),
                "median_gap_s": gaps[len(gaps) // 2] if gaps else None,
                "max": seen_max,
                "worst_pids": worst,
            },
            f,
        )


if __name__ == "__main__":
    main()
