"""NVIDIA GPUs through NVML (nvidia-ml-py): memory, and memory per process."""

from __future__ import annotations

from vlmswap.gpu.base import GpuSnapshot, Vendor

# NVML's exception class names, in words (the class name is what a user would otherwise see).
_WORDS = {
    "NVMLError_LibraryNotFound": "NVML library not found (no NVIDIA driver installed)",
    "NVMLError_DriverNotLoaded": "the NVIDIA driver is not loaded",
    "NVMLError_NoPermission": "no permission to read the NVIDIA GPU",
    "NVMLError_InsufficientPower": "the NVIDIA GPU reports insufficient power",
    "NVMLError_GpuIsLost": "the NVIDIA GPU has fallen off the bus",
}


def words(exc: BaseException) -> str:
    """An NVML (or import) failure as a phrase."""
    if isinstance(exc, ImportError):
        return "nvidia-ml-py is not installed"
    return _WORDS.get(type(exc).__name__) or f"NVML: {exc}"


class NvmlProbe:
    vendor = Vendor.NVIDIA

    def open(self) -> str | None:
        try:
            import pynvml

            pynvml.nvmlInit()
            if pynvml.nvmlDeviceGetCount() == 0:
                return "NVML sees no device"
        except Exception as exc:  # no driver, no library, no device
            return words(exc)
        return None

    def read(self, index: int) -> GpuSnapshot:
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
            return GpuSnapshot(
                True, "", name, index, int(mem.total), int(mem.used), int(mem.free), procs, vendor=self.vendor
            )
        except Exception as exc:
            return GpuSnapshot(
                available=False, reason="reading the NVIDIA GPU failed", vendor=self.vendor, detail=words(exc)
            )
