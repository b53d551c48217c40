"""The whole switch, sleeping pool, placement and status path on an AMD GPU, read through vlmswap's
real AMD SMI probe over the stand-in `amdsmi` (tests/standins): in-process with real backend
processes, then through a real `vlmswap serve` subprocess and `vlmswap status`.

Nothing here injects a `gpu_probe`: the manager reads `vlmswap.gpu.probe()`, which chose AMD SMI.
"""

from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from tests.gateway.conftest import fault_model, start_gateway
from tests.gateway.test_sleeping_pool import Run, model, registry
from tests.standins import amdsmi_env, use_amdsmi
from tests.support import PY, ROOT
from vlmswap.swap.manager import Manager

GIB = 1024**3


def run(tmp_path: Path, reg, steps) -> Run:
    async def main() -> Run:
        m = Manager(reg, state_dir=tmp_path)
        await m.start()
        r = Run(m)
        sampler = asyncio.create_task(r.sample())
        try:
            await steps(r)
        finally:
            sampler.cancel()
            await m.shutdown()
        return r

    return asyncio.run(asyncio.wait_for(main(), 120))


def test_warm_and_cold_switches_verify_memory_per_pid_through_amd_smi(tmp_path: Path, monkeypatch):
    smi = use_amdsmi(monkeypatch, total_gib=12, release_lag_s=0.3)
    models = {"alpha": model("org/alpha"), "beta": model("org/beta"), "cold": model("org/cold", sleep_mode=False)}

    async def steps(r: Run) -> None:
        for name in ("alpha", "beta", "alpha"):
            await r.chat(name)
        st = r.m.status()
        assert st["gpu"]["vendor"] == "amd" and st["gpu"]["name"] == "AMD Radeon RX 7700 XT (stand-in)"
        assert st["gpu"]["total_bytes"] == 12 * GIB
        assert st["models"]["beta"]["state"] == "sleeping"
        assert st["models"]["beta"]["gpu_bytes"] == GIB // 2  # its residual, attributed by pid via AMD SMI
        assert st["gpu"]["per_backend"] == {"alpha": 2 * GIB, "beta": GIB // 2}
        await r.chat("cold")
        await r.chat("alpha")  # cold is stopped: its memory lingers 0.3 s and is waited for

    r = run(tmp_path, registry(models), steps)
    assert r.m.models["alpha"].wakes == 2 and r.max_awake == 1
    sleeping = r.messages("sleeping")
    assert not any("no GPU reading" in m for m in r.messages()), r.messages()
    assert any(m.startswith("alpha asleep in") for m in sleeping), sleeping
    released = [m for m in r.messages("waiting_vram") if m.startswith("released in")]
    assert released and max(float(m.split()[2]) for m in released) >= 0.25, r.messages("waiting_vram")
    assert smi.CALLS["amdsmi_get_gpu_process_list"] > 5  # the readings came from the AMD library


def test_fit_places_by_the_amd_cards_memory_and_makes_room(tmp_path: Path, monkeypatch):
    """No `gpu_memory_gb` declared: the budget is the AMD card's total (5 GiB) less the reserve, 4.75 GiB."""
    use_amdsmi(monkeypatch, total_gib=5)
    models = {n: model(f"org/{n}", sleep_mode=False) for n in ("a", "b", "c")}
    reg = registry(models, policy="fit")

    async def steps(r: Run) -> None:
        await r.chat("a")
        await r.chat("b")
        assert sorted(r.m.awake()) == ["a", "b"]  # 2 + 2 GiB fit together
        await r.chat("c")
        awake = r.m.awake()
        assert "c" in awake and len(awake) == 2  # a third would not fit: one made room
        st = r.m.status()
        assert sum(st["gpu"]["per_backend"].values()) == 4 * GIB and st["gpu"]["vendor"] == "amd"

    r = run(tmp_path, reg, steps)
    assert r.max_awake == 2


def test_serve_and_status_on_amd_through_a_real_gateway(tmp_path: Path):
    """`vlmswap serve` with the stand-in first on PYTHONPATH: a switch, then /api/status and `vlmswap status`."""
    env = amdsmi_env(total_gib=12)
    models = {
        "alpha": fault_model("org/alpha", sleep_mode=True, vram_gb=2),
        "beta": fault_model("org/beta", sleep_mode=True, vram_gb=2),
    }
    with start_gateway(tmp_path, models, env=env, vram_release_timeout_s=2) as gw:
        assert gw.chat("org/alpha").status_code == 200
        assert gw.chat("org/beta").status_code == 200
        st = gw.status()
        g = st["gpu"]
        assert g["available"] and g["vendor"] == "amd" and g["total_bytes"] == 12 * GIB
        assert g["per_backend"] == {"alpha": GIB // 2, "beta": 2 * GIB}  # alpha asleep, beta awake
        assert st["models"]["alpha"]["state"] == "sleeping"
        out = subprocess.run(
            [PY, "-m", "vlmswap", "status", "--gateway", gw.url], capture_output=True, text=True, cwd=ROOT, timeout=60
        )
        assert out.returncode == 0, out.stderr
        assert "GPU (AMD): AMD Radeon RX 7700 XT (stand-in): 3.0 / 12.0 GiB used" in out.stdout


def test_fit_placement_on_amd_through_a_real_gateway(tmp_path: Path):
    """`vlmswap serve` with policy fit and no declared card: placement by the AMD card's 5 GiB."""
    models = {n: fault_model(f"org/{n}", vram_gb=2) for n in ("a", "b", "c")}
    with start_gateway(tmp_path, models, env=amdsmi_env(total_gib=5), policy="fit", max_wait_s=1) as gw:
        for n in ("a", "b"):
            assert gw.chat(f"org/{n}").status_code == 200
        assert sorted(gw.status()["awake"]) == ["a", "b"]
        assert gw.chat("org/c").status_code == 200
        st = gw.status()
        assert "c" in st["awake"] and len(st["awake"]) == 2, st["awake"]
        assert st["gpu"]["vendor"] == "amd" and sum(st["gpu"]["per_backend"].values()) == 4 * GIB
