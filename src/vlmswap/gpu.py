"""GPU readings through NVML (nvidia-ml-py), behind one small interface.

With no NVIDIA driver the probe says so and every reading is empty: the gateway works on,
it only cannot verify that memory was released.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class GpuSnapshot:
    available: bool
    reason: str = ""
    name: str = ""
    index: int = 0
    total_bytes: int = 0
    used_bytes: int = 0
    free_bytes: int = 0
    # pid -> bytes of GPU memory that NVML attributes to that process
    processes: dict[int, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["processes"] = {str(k): v for k, v in self.processes.items()}
        return d


_lock = threading.Lock()
_initialised: bool | None = None
_init_error = ""


def _init() -> bool:
    global _initialised, _init_error
    with _lock:
        if _initialised is None:
            try:
                import pynvml

                pynvml.nvmlInit()
                _initialised = pynvml.nvmlDeviceGetCount() > 0
                if not _initialised:
                    _init_error = "no NVIDIA GPU"
            except Exception as exc:  # no driver, no library, no device
                _initialised = False
                _init_error = f"no NVIDIA GPU ({type(exc).__name__})"
        return _initialised


def probe(index: int = 0) -> GpuSnapshot:
    """One reading of device `index`: name, memory, and memory per process."""
    if not _init():
        return GpuSnapshot(available=False, reason=_init_error or "no NVIDIA GPU")
    import pynvml

    try:
        handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        name = pynvml.nvmlDeviceGetName(handle)
        if isinstance(name, bytes):
            name = name.decode()
        mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
        procs: dict[int, int] = {}
        getters = [pynvml.nvmlDeviceGetComputeRunningProcesses]
        if hasattr(pynvml, "nvmlDeviceGetGraphicsRunningProcesses"):
            getters.append(pynvml.nvmlDeviceGetGraphicsRunningProcesses)
        for getter in getters:
            try:
                for p in getter(handle):
                    used = p.usedGpuMemory or 0
                    procs[p.pid] = procs.get(p.pid, 0) + int(used)
            except pynvml.NVMLError:
                pass
        return GpuSnapshot(True, "", name, index, int(mem.total), int(mem.used), int(mem.free), procs)
    except Exception as exc:
        return GpuSnapshot(available=False, reason=f"NVML error: {exc}")
