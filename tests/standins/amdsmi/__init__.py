"""A stand-in for AMD's `amdsmi` package: the same function names, arguments and return shapes
(amdsmi 7.0.2's `amdsmi_interface.py`), answered from the processes of this machine instead of
a GPU, so vlmswap's real AMD probe (`vlmswap.gpu.amd`) runs unchanged.

Put `tests/standins` first on PYTHONPATH (a `vlmswap serve` subprocess) or in `sys.modules`
as `amdsmi` (in-process). What it reports, like NVML's doubles in tests/gateway:
- the device: `FAKE_AMDSMI_NAME`, `FAKE_AMDSMI_TOTAL_GIB` (default 12), `FAKE_AMDSMI_DEVICES`
  (default 1; 0: the library answers but sees no GPU), `FAKE_AMDSMI_INIT_ERROR` (init fails with
  that AMD SMI status, e.g. `AMDSMI_STATUS_DRV_ERR`);
- per process: every live fault server (tests/servers/fault_server.py) among this process's
  descendants holds what it says at `/fake_gpu_bytes` (2 GiB awake, 0.5 GiB asleep), 2 GiB
  while it is still loading; a process that is gone keeps its memory for
  `FAKE_AMDSMI_RELEASE_LAG_S` (default 0), as a driver does for a moment after a kill;
- used = `FAKE_AMDSMI_BASE_GIB` (default 0.5, the desktop) + the processes' memory.
Every call is counted in `CALLS`, so a test can tell this library answered.

`FAKE_AMDSMI_NO_LIBRARY=1` makes the import fail as the real amdsmi 7.0.2 from PyPI does on a
machine without ROCm (seen here with the real package): two lines on stdout, then
`KeyError('libamd_smi.so')`.
"""

from __future__ import annotations

import collections
import os
import threading
import time
from enum import IntEnum
from typing import Any

import httpx
import psutil

if os.environ.get("FAKE_AMDSMI_NO_LIBRARY"):
    print("/opt/rocm/lib/libamd_smi.so: cannot open shared object file: No such file or directory")
    print("Unable to find libamd_smi.so library try installing amd-smi-lib from your package manager")
    raise KeyError("libamd_smi.so")

__version__ = "7.0.2+standin"
GIB = 1024**3
CALLS: collections.Counter[str] = collections.Counter()
_lock = threading.Lock()
_gone: dict[int, tuple[float, int]] = {}  # pid -> (when it was seen gone, bytes it held)
_held: dict[int, int] = {}
_initialised = False


class AmdSmiException(Exception):
    """Base smi exception class"""


class AmdSmiLibraryException(AmdSmiException):
    def __init__(self, err_code: int, err_info: str = ""):
        super().__init__(err_code)
        self.err_code = abs(err_code)
        self.err_info = err_info

    def __str__(self) -> str:
        return f"Error code:\n\t{self.err_code} | {self.err_info}"


class AmdSmiParameterException(AmdSmiException):
    def __init__(self, receivedValue: Any, expectedType: Any):
        super().__init__(f"Invalid parameter: {receivedValue!r}, expected {expectedType}")


class AmdSmiInitFlags(IntEnum):
    INIT_ALL_PROCESSORS = 0xFFFFFFFF
    INIT_AMD_CPUS = 1 << 0
    INIT_AMD_GPUS = 1 << 1
    INIT_NON_AMD_CPUS = 1 << 2
    INIT_NON_AMD_GPUS = 1 << 3
    INIT_AMD_APUS = (1 << 0) | (1 << 1)


class AmdSmiMemoryType(IntEnum):
    VRAM = 0
    VIS_VRAM = 1
    GTT = 2


_STATUS = {"AMDSMI_STATUS_DRV_ERR": 8, "AMDSMI_STATUS_NO_PERM": 10, "AMDSMI_STATUS_INIT_ERROR": 34}


class _ProcessorHandle:
    """What `amdsmi_wrapper.amdsmi_processor_handle` is to the real library: an opaque pointer."""

    def __init__(self, index: int):
        self.value = 0x1000 + index

    def __repr__(self) -> str:
        return f"c_void_p({self.value})"


_handles: list[_ProcessorHandle] = []


def _count(name: str) -> None:
    CALLS[name] += 1


def _check(handle: Any) -> None:
    if not isinstance(handle, _ProcessorHandle):
        raise AmdSmiParameterException(handle, _ProcessorHandle)
    if not _initialised:
        raise AmdSmiLibraryException(_STATUS["AMDSMI_STATUS_INIT_ERROR"], "AMDSMI_STATUS_INIT_ERROR - not initialised")


def amdsmi_init(flag: AmdSmiInitFlags = AmdSmiInitFlags.INIT_AMD_GPUS) -> None:
    global _initialised
    _count("amdsmi_init")
    if not isinstance(flag, AmdSmiInitFlags):
        raise AmdSmiParameterException(flag, AmdSmiInitFlags)
    err = os.environ.get("FAKE_AMDSMI_INIT_ERROR")
    if err:
        raise AmdSmiLibraryException(_STATUS.get(err, 1), f"{err} - Driver error")
    _initialised = True
    _handles[:] = [_ProcessorHandle(i) for i in range(int(os.environ.get("FAKE_AMDSMI_DEVICES", "1")))]


def amdsmi_shut_down() -> None:
    global _initialised
    _count("amdsmi_shut_down")
    _initialised = False


def amdsmi_get_processor_handles() -> list[_ProcessorHandle]:
    _count("amdsmi_get_processor_handles")
    if not _initialised:
        raise AmdSmiLibraryException(_STATUS["AMDSMI_STATUS_INIT_ERROR"], "AMDSMI_STATUS_INIT_ERROR - not initialised")
    return list(_handles)


def amdsmi_get_gpu_asic_info(processor_handle: _ProcessorHandle) -> dict[str, Any]:
    _count("amdsmi_get_gpu_asic_info")
    _check(processor_handle)
    return {
        "market_name": os.environ.get("FAKE_AMDSMI_NAME", "AMD Radeon RX 7700 XT (stand-in)"),
        "vendor_id": "0x1002",
        "vendor_name": "Advanced Micro Devices Inc. [AMD/ATI]",
        "subvendor_id": "0x1002",
        "device_id": "0x747e",
        "rev_id": "0xc8",
        "asic_serial": "0x0000000000000000",
        "oam_id": "N/A",
        "num_compute_units": 54,
        "target_graphics_version": "gfx1101",
        "subsystem_id": "0x0e0d",
    }


def _total() -> int:
    return int(float(os.environ.get("FAKE_AMDSMI_TOTAL_GIB", "12")) * GIB)


def amdsmi_get_gpu_memory_total(processor_handle: _ProcessorHandle, mem_type: AmdSmiMemoryType) -> int:
    _count("amdsmi_get_gpu_memory_total")
    _check(processor_handle)
    if not isinstance(mem_type, AmdSmiMemoryType):
        raise AmdSmiParameterException(mem_type, AmdSmiMemoryType)
    return _total() if mem_type == AmdSmiMemoryType.VRAM else 0


def amdsmi_get_gpu_memory_usage(processor_handle: _ProcessorHandle, mem_type: AmdSmiMemoryType) -> int:
    _count("amdsmi_get_gpu_memory_usage")
    _check(processor_handle)
    if not isinstance(mem_type, AmdSmiMemoryType):
        raise AmdSmiParameterException(mem_type, AmdSmiMemoryType)
    if mem_type != AmdSmiMemoryType.VRAM:
        return 0
    base = int(float(os.environ.get("FAKE_AMDSMI_BASE_GIB", "0.5")) * GIB)
    return min(_total(), base + sum(_processes(processor_handle).values()))


def amdsmi_get_gpu_vram_usage(processor_handle: _ProcessorHandle) -> dict[str, int]:
    """In MB, as the real one answers (vlmswap uses the byte-exact calls above)."""
    _count("amdsmi_get_gpu_vram_usage")
    used = amdsmi_get_gpu_memory_usage(processor_handle, AmdSmiMemoryType.VRAM)
    return {"vram_total": _total() // (1024 * 1024), "vram_used": used // (1024 * 1024)}


def amdsmi_get_gpu_process_list(processor_handle: _ProcessorHandle) -> list[dict[str, Any]]:
    _count("amdsmi_get_gpu_process_list")
    _check(processor_handle)
    return [
        {
            "name": "python3",
            "pid": pid,
            "mem": held,
            "engine_usage": {"gfx": 0, "enc": 0},
            "memory_usage": {"gtt_mem": 0, "cpu_mem": 0, "vram_mem": held},
            "cu_occupancy": "N/A",
        }
        for pid, held in sorted(_processes(processor_handle).items())
    ]


def _processes(handle: _ProcessorHandle) -> dict[int, int]:
    """pid -> bytes: the fault servers below this process (on device 0 only), plus those just gone."""
    if handle.value != 0x1000:
        return {}
    now = time.monotonic()
    seen: dict[int, int] = {}
    for p in psutil.Process().children(recursive=True):
        try:
            cmd = p.cmdline()
            if not any("fault_server" in part for part in cmd) or p.status() == psutil.STATUS_ZOMBIE:
                continue
            port = cmd[cmd.index("--port") + 1]
        except (psutil.Error, ValueError, IndexError):
            continue
        try:
            r = httpx.get(f"http://127.0.0.1:{port}/fake_gpu_bytes", timeout=0.5, trust_env=False)
            seen[p.pid] = int(r.json()["bytes"])
        except (httpx.HTTPError, ValueError, KeyError):
            seen[p.pid] = 2 * GIB  # loading: it holds its share already
    lag = float(os.environ.get("FAKE_AMDSMI_RELEASE_LAG_S", "0"))
    with _lock:
        for pid, held in _held.items():
            if pid not in seen and pid not in _gone:
                _gone[pid] = (now, held)
        _held.clear()
        _held.update(seen)
        out = dict(seen)
        for pid, (since, held) in list(_gone.items()):
            if pid in seen:
                del _gone[pid]
            elif now - since < lag:
                out[pid] = held
            else:
                del _gone[pid]
    return out
