"""The words every GPU probe shares: one reading (`GpuSnapshot`), the vendors, the probe protocol.

Apart from the implementations so the manager, the lifecycle and the tests can name a reading
without importing a vendor's library.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any, Protocol


class Vendor(StrEnum):
    NVIDIA = "nvidia"
    AMD = "amd"

    @property
    def label(self) -> str:
        """The vendor as people write it ("NVIDIA", "AMD")."""
        return self.value.upper()


@dataclass(frozen=True)
class GpuSnapshot:
    """One reading of one device. Without a GPU: `available` False and `reason` in words.

    `reason` is a sentence for people ("no NVIDIA GPU found: CPU only"); `detail` says what the
    libraries answered, for whoever has to fix it. Positional order is kept from the first
    version (tests build snapshots positionally); `vendor` and `detail` came later, at the end.
    """

    available: bool
    reason: str = ""
    name: str = ""
    index: int = 0
    total_bytes: int = 0
    used_bytes: int = 0
    free_bytes: int = 0
    # pid -> bytes of GPU memory the vendor's library attributes to that process
    processes: dict[int, int] = field(default_factory=dict)
    vendor: str = ""
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["processes"] = {str(k): v for k, v in self.processes.items()}
        return d


class GpuProbe(Protocol):
    """A vendor's library behind two calls: `open` once, then `read` as often as needed.

    `open` returns None when the library answered and sees at least one device, else why not
    (one short phrase, e.g. "NVML library not found"); it never raises. `read` never raises
    either: a failed reading is a snapshot with `available` False and the reason.
    """

    vendor: Vendor

    def open(self) -> str | None: ...

    def read(self, index: int) -> GpuSnapshot: ...
