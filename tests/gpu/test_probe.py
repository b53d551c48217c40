"""The GPU probe: which library answers, what a reading holds, and why there is none, in words.

The AMD path runs vlmswap's real AMD SMI code against the stand-in `amdsmi` (tests/standins),
and, where the real package is installed, against the real one without ROCm (it fails soft).
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.gateway.conftest import FAULT
from tests.standins import amdsmi_env, use_amdsmi
from tests.support import PY, ROOT, free_port, wait_http
from vlmswap import gpu
from vlmswap.gpu.nvml import words

GIB = 1024**3


@pytest.fixture(autouse=True)
def fresh_choice():
    gpu.reset()
    yield
    gpu.reset()


def test_without_a_gpu_the_reason_is_words_and_each_library_answer_is_kept(monkeypatch):
    monkeypatch.delenv("VLMSWAP_GPU", raising=False)
    snap = gpu.probe()
    if snap.available:  # a machine with a GPU: the reading must be plausible
        assert snap.total_bytes > 0 and 0 <= snap.used_bytes <= snap.total_bytes and snap.vendor in ("nvidia", "amd")
        return
    assert snap.reason == "no GPU found: CPU only"
    assert "NVMLError" not in snap.reason and "NVIDIA: " in snap.detail and "AMD: " in snap.detail
    assert snap.to_dict()["available"] is False and gpu.vendor() is None


def test_nvml_failures_are_named_in_words():
    import pynvml

    assert words(pynvml.NVMLError(pynvml.NVML_ERROR_LIBRARY_NOT_FOUND)) == (
        "NVML library not found (no NVIDIA driver installed)"
    )
    assert words(pynvml.NVMLError(pynvml.NVML_ERROR_DRIVER_NOT_LOADED)) == "the NVIDIA driver is not loaded"


def test_forcing_a_vendor_names_it_when_it_is_not_there(monkeypatch):
    monkeypatch.setenv("VLMSWAP_GPU", "nvidia")
    snap = gpu.probe()
    if not snap.available:
        assert snap.reason == "no NVIDIA GPU found: CPU only" and snap.detail.startswith("NVIDIA: ")
    gpu.reset()
    monkeypatch.setenv("VLMSWAP_GPU", "none")
    assert gpu.probe().reason == "GPU probing is off (VLMSWAP_GPU=none): CPU only"


def test_amdsmi_without_rocms_library_fails_soft_and_keeps_stdout_clean():
    """AMD's PyPI package imports only with ROCm's libamd_smi.so: without it it prints two lines and
    raises KeyError (the stand-in does exactly that here). The probe says why; stdout stays the answer."""
    code = "import json; from vlmswap import gpu; print(json.dumps(gpu.probe().to_dict()))"
    env = {**_env(), **amdsmi_env(no_library=1)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    snap = json.loads(out.stdout)  # nothing else was printed
    assert snap["available"] is False and snap["reason"] == "no AMD GPU found: CPU only"
    assert snap["detail"] == (
        "AMD: amdsmi is installed but ROCm's libamd_smi.so was not found (install amd-smi-lib or set ROCM_PATH)"
    )


def test_amd_probe_reads_name_memory_and_memory_per_process(monkeypatch, tmp_path):
    smi = use_amdsmi(monkeypatch, total_gib=12, base_gib=0.5)
    port = free_port()
    argv = [PY if a == "${PYTHON}" else a for a in FAULT]
    argv = [str(port) if a == "${PORT}" else "org/x" if a == "${SERVED_NAME}" else a for a in argv]
    proc = subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", 30, proc)
        snap = gpu.probe()
        assert gpu.vendor() == gpu.Vendor.AMD
        assert snap.available and snap.vendor == "amd" and snap.name == "AMD Radeon RX 7700 XT (stand-in)"
        assert snap.total_bytes == 12 * GIB and snap.used_bytes == GIB // 2 + 2 * GIB
        assert snap.free_bytes == snap.total_bytes - snap.used_bytes
        assert snap.processes == {proc.pid: 2 * GIB}
        assert smi.CALLS["amdsmi_init"] == 1 and smi.CALLS["amdsmi_get_gpu_process_list"] >= 1
    finally:
        proc.kill()
        proc.wait(10)
    assert gpu.probe().processes == {}  # gone, and no release lag asked for


def test_amd_init_failure_and_no_device_are_reasons(monkeypatch):
    use_amdsmi(monkeypatch, init_error="AMDSMI_STATUS_DRV_ERR")
    snap = gpu.probe()
    assert not snap.available and snap.reason == "no AMD GPU found: CPU only"
    assert snap.detail.startswith("AMD: amdsmi_init failed: Error code:") and "DRV_ERR" in snap.detail
    gpu.reset()
    monkeypatch.delenv("FAKE_AMDSMI_INIT_ERROR")
    monkeypatch.setenv("FAKE_AMDSMI_DEVICES", "0")
    assert gpu.probe().detail == "AMD: AMD SMI sees no device"


def test_amd_index_past_the_devices_is_a_reading_that_says_so(monkeypatch):
    use_amdsmi(monkeypatch, devices=1)
    snap = gpu.probe(3)
    assert not snap.available and snap.reason == "no AMD GPU with index 3" and snap.vendor == "amd"


def test_a_subprocess_finds_the_standin_through_pythonpath():
    """What `vlmswap serve` sees with the stand-in first on its path: the AMD probe chosen."""
    code = "from vlmswap import gpu; s = gpu.probe(); print(s.vendor, s.available, s.total_bytes)"
    out = subprocess.run(
        [sys.executable, "-c", code], env={**_env(), **amdsmi_env(total_gib=5)}, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["amd", "True", str(5 * GIB)]


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if not k.startswith(("FAKE_AMDSMI_", "VLMSWAP_GPU"))}
