"""The predictive pool, staging and trace recording with real backend processes (fault servers).

The GPU is absent here (no NVML: the memory checks are skipped and say so); what is tested is what
the manager decides and what it leaves on disk: which model is staged and how, that a request
always wins over a staging, what /api/status says, the recorded trace and the saved predictor.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import pytest

from tests.gateway.test_sleeping_pool import Run, model, registry
from vlmswap.gpu import GpuSnapshot
from vlmswap.swap import staging, traces
from vlmswap.swap.manager import PREDICTOR_FILE, Manager


def no_gpu() -> GpuSnapshot:
    return GpuSnapshot(False, "no NVIDIA GPU in this test")


def run(tmp_path: Path, reg, steps, **kw: Any) -> Run:
    async def main() -> Run:
        m = Manager(reg, state_dir=tmp_path / "state", gpu_probe=no_gpu, **kw)
        await m.start()
        r = Run(m)
        try:
            await steps(r)
        finally:
            await m.shutdown()
        return r

    return asyncio.run(asyncio.wait_for(main(), 120))


async def until(cond, within_s: float = 20.0, what: str = "condition") -> None:
    deadline = time.monotonic() + within_s
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met in {within_s} s")
        await asyncio.sleep(0.02)


def hub_cache(tmp_path: Path, repo: str, size: int = 8 << 20) -> tuple[Path, Path]:
    """A Hugging Face cache holding a complete snapshot of `repo`: (cache dir, its weight file)."""
    cache = tmp_path / "hf"
    folder = cache / f"models--{repo.replace('/', '--')}"
    commit = "0" * 40
    snap = folder / "snapshots" / commit
    snap.mkdir(parents=True)
    (folder / "refs").mkdir()
    (folder / "refs" / "main").write_text(commit)
    (snap / "config.json").write_text("{}")
    weights = snap / "model.safetensors"
    with open(weights, "wb") as f:
        f.write(os.urandom(size))
        f.flush()
        os.fsync(f.fileno())
    return cache, weights


def test_an_idle_gpu_reads_the_next_models_weights_into_the_page_cache(tmp_path: Path):
    cache, weights = hub_cache(tmp_path, "org/beta")
    reg = registry(
        {
            "alpha": model("org/alpha", sleep_mode=False),
            "beta": model("org/beta", sleep_mode=False, hf_repo="org/beta", env={"HF_HUB_CACHE": str(cache)}),
        },
        stage_idle_s=0.3,
        stage_min_chance=0.4,  # without history every chance is 1/2: beta qualifies
    )

    async def steps(r: Run) -> None:
        await r.chat("beta")
        await r.chat("alpha")  # beta is stopped, not asleep: its next start is cold
        staging.evict_from_cache([weights])
        assert staging.cached_fraction(weights) == 0.0
        await until(lambda: r.m.stager.staged.get("beta") == "page_cache", what="beta staged")
        assert staging.cached_fraction(weights) == 1.0
        st = r.m.status()["staging"]
        assert st["loads"]["page_cache"] == 1 and st["staged"] == {"beta": "page_cache"}
        await r.chat("beta")  # its cold start reads the weights from memory: the staging was used

    r = run(tmp_path, reg, steps)
    assert r.m.stager.counts["used"]["page_cache"] == 1 and "beta" not in r.m.stager.staged
    assert any("staged beta: 0.01 GB of weights in the page cache" in e["message"] for e in r.events)


def test_a_request_stops_a_page_cache_read_at_the_next_chunk(tmp_path: Path):
    _cache, weights = hub_cache(tmp_path, "org/beta", size=4 * staging.CHUNK)
    stop = __import__("threading").Event()
    stop.set()
    assert staging.read_into_cache([weights], stop) == (0, False)
    assert staging.read_into_cache([weights]) == (4 * staging.CHUNK, True)


def test_fit_with_room_starts_the_next_model_and_puts_it_to_sleep_and_its_request_wakes_it(tmp_path: Path):
    reg = registry(
        {"alpha": model("org/alpha"), "beta": model("org/beta")},
        policy="fit",
        gpu_memory_gb=24,
        stage_idle_s=0.3,
        stage_min_chance=0.4,
    )

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await until(lambda: r.m.models["beta"].state == "sleeping", what="beta staged asleep")
        assert r.m.stager.staged == {"beta": "sleep"} and r.m.models["alpha"].state == "ready"
        await r.chat("beta")

    r = run(tmp_path, reg, steps)
    assert r.m.models["beta"].starts == 1 and r.m.models["beta"].wakes == 1
    assert r.m.stager.counts["loads"]["sleep"] == 1 and r.m.stager.counts["used"]["sleep"] == 1


def test_a_request_for_another_model_calls_a_staging_start_off_at_once(tmp_path: Path):
    reg = registry(
        {
            "alpha": model("org/alpha"),
            "beta": model("org/beta", "--startup-delay", "5"),
            "gamma": model("org/gamma"),
        },
        policy="fit",
        gpu_memory_gb=24,
        stage_idle_s=0.3,
        stage_min_chance=0.4,
    )

    async def steps(r: Run) -> None:
        await r.chat("alpha")
        await until(lambda: r.m.models["beta"].state == "starting", what="beta's staging start")
        t0 = time.monotonic()
        await r.chat("gamma")  # would wait for beta's 5 s start behind the one switch at a time
        assert time.monotonic() - t0 < 3.0
        await until(lambda: r.m.models["beta"].state == "stopped", what="beta stopped")
        assert r.m.scheduler.backoff_left("beta", r.m.clock()) == 0  # no failure: no backoff

    r = run(tmp_path, reg, steps)
    assert r.m.stager.counts["abandoned"]["sleep"] == 1 and not r.m.stager.staged
    assert any("staging beta abandoned" in e["message"] for e in r.events)


def test_status_lists_the_predicted_models_and_why_each_sleeper_is_kept(tmp_path: Path):
    reg = registry({"a": model("org/a"), "b": model("org/b"), "c": model("org/c")}, max_sleeping=2)

    async def steps(r: Run) -> None:
        for name in ("a", "b", "c"):
            await r.chat(name)
        st = r.m.status()
        assert st["pool"]["order"] == "predictive"
        assert set(st["pool"]["kept"]) == {"a", "b"}
        assert all(
            "keeping it saves" in k["why"] and "wake instead of a cold start" in k["why"]
            for k in st["pool"]["kept"].values()
        )
        assert [p["model"] for p in st["predicted"]][:1] == ["c"]  # no history yet: the most recent first
        assert all(0 <= p["chance"] <= 1 and p["why"] for p in st["predicted"])
        assert st["prediction_horizon_s"] == 30
        assert st["staging"]["enabled"] and st["staging"]["loads"] == {"page_cache": 0, "sleep": 0}

    run(tmp_path, reg, steps)


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_requests_are_recorded_to_the_trace_file_and_replay(tmp_path: Path, where: str):
    target = "traces/day.jsonl" if where == "relative" else str(tmp_path / "elsewhere.jsonl")
    reg = registry({"alpha": model("org/alpha"), "beta": model("org/beta")}, trace_path=target)

    async def steps(r: Run) -> None:
        for name in ("alpha", "beta", "alpha"):
            await r.chat(name)

    t0 = time.time()
    r = run(tmp_path, reg, steps)
    path = tmp_path / "state" / target if where == "relative" else Path(target)
    reqs = traces.read(path, reg)
    assert [q.model for q in reqs] == ["alpha", "beta", "alpha"]
    assert all(t0 <= q.t <= time.time() and 0 <= q.duration_s < 5 for q in reqs)
    assert r.m.recorder is not None and r.m.recorder.written == 3


def test_what_the_predictor_learned_is_kept_in_the_state_dir_across_restarts(tmp_path: Path):
    reg = registry({"alpha": model("org/alpha"), "beta": model("org/beta")})

    async def steps(r: Run) -> None:
        for name in ("alpha", "beta", "alpha", "beta"):
            await r.chat(name)

    run(tmp_path, reg, steps)
    assert (tmp_path / "state" / PREDICTOR_FILE).exists()
    again = Manager(reg, state_dir=tmp_path / "state", gpu_probe=no_gpu)
    assert again.predictor.observed == 4 and again.predictor.current == "beta"
    again.lifecycle.stats.close()
