"""What a model is expected to cost: learned medians from the state dir, else the registry's priors.

One place for the rule, because three places ask: the lifecycle (how much host RAM a sleeper
will hold, how much GPU memory a start needs), the sleeping pool's order (what keeping a
sleeper saves: its cold start less its wake) and the simulator (how long each step takes).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from vlmswap.registry.config import ModelSpec
from vlmswap.swap.stats import Metric

GIB = 1024**3
DEFAULT_START_S = 60.0
"""A cold start nobody measured or declared: the order of a vLLM start (REFERENCE.md: 37-150 s)."""
DEFAULT_WAKE_S = 1.0
"""A wake nobody measured or declared: vLLM's level-1 wakes take 0.1-6 s."""


class Learned(Protocol):
    """The learned stats (swap/stats.py) as the priors read them."""

    def median(self, model: str, metric: Metric) -> float | None: ...


@dataclass(frozen=True)
class Costs:
    """Seconds a model's switch steps take, and where each number came from."""

    start_s: float
    wake_s: float
    sleep_s: float
    source: str  # e.g. "learned start, declared wake"

    @property
    def saving_s(self) -> float:
        """What keeping it asleep saves on its next switch: a wake instead of a cold start."""
        return max(0.0, self.start_s - self.wake_s)


def costs(name: str, spec: ModelSpec, stats: Learned | None) -> Costs:
    """Learned medians (cold_start_s, wake_s, sleep_s) where measured, else the registry's
    `expected_start_s`, `expected_wake_s`, `expected_sleep_s`, else the defaults above (sleep: 0)."""
    said = []

    def pick(metric: Metric, declared: float | None, default: float, what: str) -> float:
        learned = stats.median(name, metric) if stats is not None else None
        if learned is not None:
            said.append(f"learned {what}")
            return learned
        if declared is not None:
            said.append(f"declared {what}")
            return declared
        said.append(f"assumed {what}")
        return default

    start = pick("cold_start_s", spec.expected_start_s, DEFAULT_START_S, "start")
    wake = pick("wake_s", spec.expected_wake_s, DEFAULT_WAKE_S, "wake")
    sleep = pick("sleep_s", spec.expected_sleep_s, 0.0, "sleep")
    return Costs(start, wake, sleep, ", ".join(said))


def sleep_ram_bytes(name: str, spec: ModelSpec, stats: Learned | None, measured: int | None = None) -> int:
    """Host RAM `name` holds asleep: this backend's measured RSS, else the learned median, else
    `sleep_ram_gb`, else `vram_gb` for level 1 (the weights go to host RAM), 0 for level 2."""
    if measured is not None:
        return measured
    learned = stats.median(name, "sleep_ram_bytes") if stats is not None else None
    if learned is not None:
        return int(learned)
    if spec.sleep_ram_gb is not None:
        return int(spec.sleep_ram_gb * GIB)
    return int(spec.vram_gb * GIB) if spec.sleep_level == 1 else 0


def need_bytes(name: str, spec: ModelSpec, stats: Learned | None) -> int:
    """GPU memory `name` takes awake: its measured peak after ready, else the registry's vram_gb."""
    learned = stats.median(name, "peak_vram_bytes") if stats is not None else None
    return int(learned) if learned is not None else int(spec.vram_gb * GIB)


__all__ = ["Costs", "Learned", "costs", "need_bytes", "sleep_ram_bytes"]
