"""One model as the lifecycle owns it: its state, its backend while one exists, its log, what was measured.

One object per model (llama-swap's `process.Process`), so a model's facts live in one
place instead of in parallel name-keyed maps. The scheduler keeps its own coarse view
(`scheduler.Slot`); `/api/status` shows both.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from vlmswap.backends.base import Backend, LogBuffer
from vlmswap.registry.config import ModelSpec
from vlmswap.swap.states import ModelState


def safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass(eq=False)
class Model:
    name: str
    spec: ModelSpec
    log_path: Path
    state: ModelState = ModelState.STOPPED
    since: float = field(default_factory=time.time)  # wall clock of the last state change
    last_error: str | None = None
    last_start_s: float | None = None  # the last cold start, seconds
    last_wake_s: float | None = None  # the last wake, seconds
    starts: int = 0
    wakes: int = 0
    sleep_ram_bytes: int | None = None  # measured RSS while asleep (replaces the estimate)
    sleep_gpu_bytes: int | None = None  # measured GPU residual while asleep
    backend: Backend | None = None  # while one exists: starting, ready, asleep or stopping
    log: LogBuffer | None = None  # opened at the first start; its file outlives the gateway
    vram_before: int | None = None  # the card's used bytes just before its start (NVML), for the stop's check

    @property
    def base_url(self) -> str | None:
        return self.backend.base_url if self.backend is not None else None

    def pids(self) -> set[int]:
        return self.backend.pids() if self.backend is not None else set()

    def exit_status(self) -> str | None:
        """How its backend ended, if it has (None while it runs or when it has none)."""
        return self.backend.exit_status() if self.backend is not None else None

    @property
    def asleep(self) -> bool:
        return self.backend is not None and self.state == ModelState.SLEEPING

    def tail(self, lines: int = 100) -> list[str]:
        """The backend's last output lines: from memory, or from its log file after a restart."""
        if self.log is not None:
            return self.log.tail(lines)
        if lines <= 0:
            return []
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return [line.rstrip("\n") for line in deque(f, maxlen=lines)]
        except OSError:
            return []
