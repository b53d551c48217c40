"""GPU readings behind one small interface: NVIDIA through NVML, AMD through AMD SMI, or none.

The probe is chosen once per process by what the machine has: NVML first, then AMD SMI
(`VLMSWAP_GPU=nvidia|amd|none` forces the choice, e.g. on a machine with both). Everything
else reads `probe()` and never learns which library answered, so placement, the VRAM-free
wait and the per-pid residual checks are the same code on either vendor. With no GPU the
probe says so in words ("no GPU found: CPU only") and every reading is empty: the gateway
works on, it only cannot verify that memory was released.
"""

from __future__ import annotations

import os
import threading

from vlmswap.gpu.base import GpuProbe, GpuSnapshot, Vendor

__all__ = ["ENV", "GpuProbe", "GpuSnapshot", "Vendor", "probe", "reset", "vendor"]

ENV = "VLMSWAP_GPU"
CHOICES = ("auto", "nvidia", "amd", "none")

_lock = threading.Lock()
_chosen: GpuProbe | None = None
_none: GpuSnapshot | None = None  # the reading when nothing was found (its reason, once)


def _candidates(choice: str) -> list[GpuProbe]:
    from vlmswap.gpu.amd import AmdSmiProbe
    from vlmswap.gpu.nvml import NvmlProbe

    if choice == "nvidia":
        return [NvmlProbe()]
    if choice == "amd":
        return [AmdSmiProbe()]
    return [NvmlProbe(), AmdSmiProbe()]


def _select() -> tuple[GpuProbe | None, GpuSnapshot | None]:
    global _chosen, _none
    with _lock:
        if _chosen is not None or _none is not None:
            return _chosen, _none
        choice = (os.environ.get(ENV) or "auto").strip().lower()
        if choice == "none":
            _none = GpuSnapshot(False, f"GPU probing is off ({ENV}=none): CPU only", detail="")
            return None, _none
        if choice not in CHOICES:
            choice = "auto"
        tried = []
        for p in _candidates(choice):
            why = p.open()
            if why is None:
                _chosen = p
                return _chosen, None
            tried.append(f"{p.vendor.label}: {why}")
        which = {"nvidia": "no NVIDIA GPU found", "amd": "no AMD GPU found"}.get(choice, "no GPU found")
        _none = GpuSnapshot(False, f"{which}: CPU only", detail="; ".join(tried))
        return None, _none


def probe(index: int = 0) -> GpuSnapshot:
    """One reading of device `index`: name, memory, memory per process, and the vendor."""
    chosen, none = _select()
    if chosen is None:
        assert none is not None
        return none
    return chosen.read(index)


def vendor() -> Vendor | None:
    """The vendor whose library answered at start, None without a GPU."""
    chosen, _ = _select()
    return None if chosen is None else chosen.vendor


def reset() -> None:
    """Forget the choice (tests that swap the library in between)."""
    global _chosen, _none
    with _lock:
        _chosen = _none = None
