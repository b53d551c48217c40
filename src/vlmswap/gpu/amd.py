"""AMD GPUs through AMD SMI (`amdsmi`, AMD's Python package over ROCm's libamd_smi.so).

The calls used are those of amdsmi 6.x and 7.x: `amdsmi_init`, `amdsmi_get_processor_handles`,
`amdsmi_get_gpu_asic_info` (the card's `market_name`), `amdsmi_get_gpu_memory_total` and
`amdsmi_get_gpu_memory_usage` with `AmdSmiMemoryType.VRAM` (bytes), and
`amdsmi_get_gpu_process_list`, which in 7.x answers dicts with `pid` and
`memory_usage.vram_mem` (bytes) and in 6.x process handles to pass to
`amdsmi_get_gpu_process_info`, which answers the same dict.

The package installs from PyPI anywhere but needs ROCm's libamd_smi.so at import: without it
the import fails (a KeyError, after printing two lines to stdout). Both are caught here, the
lines swallowed (stdout may be a `--json` answer), and the probe says why in words.
"""

from __future__ import annotations

import contextlib
import io
from typing import Any

from vlmswap.gpu.base import GpuSnapshot, Vendor


def _import() -> tuple[Any, str | None]:
    """The amdsmi module, or None and why it cannot be had."""
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            import amdsmi
    except ImportError:
        return None, "amdsmi is not installed (pip install 'vlmswap[amd]')"
    except Exception:  # amdsmi 7.x: KeyError('libamd_smi.so') when ROCm's library is missing
        return None, "amdsmi is installed but ROCm's libamd_smi.so was not found (install amd-smi-lib or set ROCM_PATH)"
    return amdsmi, None


class AmdSmiProbe:
    vendor = Vendor.AMD

    def __init__(self) -> None:
        self._smi: Any = None
        self._handles: list[Any] = []

    def open(self) -> str | None:
        smi, why = _import()
        if smi is None:
            return why
        try:
            smi.amdsmi_init()
            handles = list(smi.amdsmi_get_processor_handles())
        except Exception as exc:  # AmdSmiLibraryException: driver not loaded, no permission
            return f"amdsmi_init failed: {_first_line(exc)}"
        if not handles:
            return "AMD SMI sees no device"
        self._smi, self._handles = smi, handles
        return None

    def read(self, index: int) -> GpuSnapshot:
        smi = self._smi
        try:
            handle = self._handles[index]
        except IndexError:
            return GpuSnapshot(
                False,
                f"no AMD GPU with index {index}",
                vendor=self.vendor,
                detail=f"AMD SMI sees {len(self._handles)} device(s)",
            )
        try:
            vram = smi.AmdSmiMemoryType.VRAM
            total = int(smi.amdsmi_get_gpu_memory_total(handle, vram))
            used = int(smi.amdsmi_get_gpu_memory_usage(handle, vram))
            name = _name(smi, handle)
            procs = _processes(smi, handle)
        except Exception as exc:
            return GpuSnapshot(
                False, "reading the AMD GPU failed", vendor=self.vendor, detail=f"AMD SMI: {_first_line(exc)}"
            )
        return GpuSnapshot(True, "", name, index, total, used, max(0, total - used), procs, vendor=self.vendor)


def _name(smi: Any, handle: Any) -> str:
    try:
        name = str(smi.amdsmi_get_gpu_asic_info(handle).get("market_name") or "")
    except Exception:
        name = ""
    return name if name and name != "N/A" else "AMD GPU"


def _processes(smi: Any, handle: Any) -> dict[int, int]:
    """pid -> VRAM bytes; a process list the library cannot read (permissions) is empty, not an error."""
    try:
        listed = smi.amdsmi_get_gpu_process_list(handle)
    except Exception:
        return {}
    out: dict[int, int] = {}
    for entry in listed or []:
        info = entry
        if not isinstance(entry, dict):  # amdsmi 6.x: a process handle
            try:
                info = smi.amdsmi_get_gpu_process_info(handle, entry)
            except Exception:
                continue
        pid = int(info.get("pid") or 0)
        if pid <= 0:
            continue
        usage = info.get("memory_usage") or {}
        vram = usage.get("vram_mem") if isinstance(usage, dict) else None
        held = int(vram if isinstance(vram, int) else info.get("mem") or 0)
        out[pid] = out.get(pid, 0) + held
    return out


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
