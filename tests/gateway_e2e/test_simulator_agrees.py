"""The simulator and a real gateway agree: the same trace gives the same cold starts and wakes.

A real `vlmswap serve` in front of four fault-server models with set start times (0 to 2.4 s
apart by 0.8 s, so their learned order is never in doubt) and sleep and wake times; room in
the pool for two sleepers; the default pool policy (predictive). A short trace is replayed
in real time, the gateway records it (`gateway.trace_path`) and learns the models' costs in
its state dir; then `vlmswap.swap.simulator` replays the *recorded* trace with those learned
costs. Requests are 4 s apart, longer than any switch here, so no request meets another's
switch and the comparison does not hang on timing. The same recorded trace under `lru` gives
other numbers: the check tells the policies apart.
"""

from __future__ import annotations

import time

import pytest

from tests.gateway_e2e.conftest import fault_model
from vlmswap.registry.config import load_registry
from vlmswap.swap import traces
from vlmswap.swap.simulator import Options, simulate
from vlmswap.swap.stats import Stats

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

START_DELAY = {"a": 0.0, "d": 0.8, "c": 1.6, "b": 2.4}
SEQUENCE = "bcacbdbacdbd"  # under these costs lru and predictive part after a few requests (7 against 5)
GAP_S = 4.0


def test_the_live_gateway_and_the_simulation_count_the_same_cold_starts_and_wakes(gateways):
    models = {
        name: fault_model(
            "--startup-delay",
            str(delay),
            "--sleep-delay",
            "0.05",
            "--wake-delay",
            "0.05",
            sleep_mode=True,
            vram_gb=1,
            expected_start_s=delay + 0.5,  # about what the process's own start adds
            expected_wake_s=0.1,
        )
        for name, delay in START_DELAY.items()
    }
    gw = gateways(models, max_sleeping=2, trace_path="trace.jsonl", stage_idle_s=None, stop_grace_s=2)
    t0 = time.monotonic()
    for i, name in enumerate(SEQUENCE):
        time.sleep(max(0.0, t0 + i * GAP_S - time.monotonic()))
        r = gw.chat(name)
        assert r.status_code == 200, r.text
    st = gw.status()
    assert st["pool"]["order"] == "predictive"
    live = (sum(m["starts"] for m in st["models"].values()), sum(m["wakes"] for m in st["models"].values()))
    gw.stop()  # writes the rest of the trace and closes the learned stats

    registry = load_registry(gw.config)
    recorded = traces.read(gw.state_dir / "trace.jsonl", registry)
    assert "".join(r.model for r in recorded) == SEQUENCE
    stats = Stats(gw.state_dir / "stats.sqlite3")
    try:
        sim = simulate(registry, recorded, Options("predictive"), stats)
        lru = simulate(registry, recorded, Options("lru"), stats)
    finally:
        stats.close()
    assert (sim.cold_starts, sim.wakes) == live, (sim.to_json(), live, gw.log()[-2000:])
    assert (lru.cold_starts, lru.wakes) != live
