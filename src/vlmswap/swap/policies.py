"""Who may be awake together, and who makes room: the one question the scheduler asks a policy.

The scheduler owns the queue, grouping, the starvation bound, drains, backoff and crashes;
a policy owns only this (llama-swap keeps its `Swapper` apart from its scheduler the same
way). Two policies: `EvictAll` (gateway.policy `single`: one model at a time) and
`Placement` (`fit`: several while their memory fits the card). Pure: sizes in, names out.

Eviction order, for both: never a model with requests in flight while an idle one frees
enough (a busy one is drained first); those without queued work before those with; then
least recently used.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Protocol

GIB = 1024**3
RESERVE_FRACTION = 0.05


@dataclass(frozen=True)
class Candidate:
    """A model that is up and could make room."""

    name: str
    in_flight: int
    queued: int
    last_used: float


class Policy(Protocol):
    """What the scheduler asks before it brings a model up."""

    def victims(self, target: str, candidates: Sequence[Candidate], fixed: frozenset[str]) -> list[str] | None:
        """The candidates to retire so `target` fits beside what stays, cheapest first; [] when it fits
        already; None when it can never fit, even alone. `fixed` holds memory this choice cannot free
        (models starting, draining or stopping): the answer may still not fit, and then the scheduler
        waits for them."""
        ...

    def fits(self, models: Collection[str]) -> bool:
        """Whether these models may all hold their memory at once."""
        ...

    def measured(self, model: str, need_bytes: int) -> None:
        """A new measurement of what `model` takes awake (replaces the estimate)."""
        ...

    def refusal(self, target: str) -> str:
        """Why `target` can never be brought up (the 503 its requests get when `victims` said None)."""
        ...


def cheapest_first(candidates: Sequence[Candidate]) -> list[Candidate]:
    return sorted(candidates, key=lambda c: (c.in_flight > 0, c.queued > 0, c.last_used))


class EvictAll:
    """Policy `single`: at most one model holds the GPU; everything else makes room."""

    def victims(self, target: str, candidates: Sequence[Candidate], fixed: frozenset[str]) -> list[str] | None:
        return [c.name for c in cheapest_first(candidates) if c.name != target]

    def fits(self, models: Collection[str]) -> bool:
        return len(set(models)) <= 1

    def measured(self, model: str, need_bytes: int) -> None:
        pass

    def refusal(self, target: str) -> str:
        return f"{target} cannot run"  # never said: one model alone always fits


@dataclass
class Placement:
    """Policy `fit`: models awake together while their needs fit the budget.

    A model's need is its measured peak GPU memory after ready (learned, see stats.py) or,
    until measured, the registry's `vram_gb`; the budget is `gateway.gpu_budget_gb`, else the
    card (NVML, or `gateway.gpu_memory_gb` where there is no NVML) less a 5 % reserve.
    """

    capacity_bytes: int | None  # None: no known card (every model fits; sizes are unknown)
    need: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_card(cls, total_bytes: int | None, budget_gb: float | None, need: dict[str, int]) -> Placement:
        if budget_gb is not None:
            return cls(int(budget_gb * GIB), dict(need))
        if total_bytes:
            return cls(int(total_bytes * (1 - RESERVE_FRACTION)), dict(need))
        return cls(None, dict(need))

    def used(self, models: Collection[str]) -> int:
        return sum(self.need.get(m, 0) for m in set(models))

    def fits(self, models: Collection[str]) -> bool:
        return self.capacity_bytes is None or self.used(models) <= self.capacity_bytes

    def victims(
        self, target: str, candidates: Sequence[Candidate], fixed: frozenset[str] = frozenset()
    ) -> list[str] | None:
        if not self.fits({target}):
            return None
        keep = {c.name for c in candidates} | fixed
        if self.fits(keep | {target}):
            return []
        out: list[str] = []
        for c in cheapest_first(candidates):
            out.append(c.name)
            keep.discard(c.name)
            if self.fits(keep | {target}):
                return out
        return out

    def measured(self, model: str, need_bytes: int) -> None:
        self.need[model] = need_bytes

    def refusal(self, target: str) -> str:
        cap = self.capacity_bytes or 0
        return (
            f"{target} needs {self.need.get(target, 0) / GIB:.1f} GiB of GPU memory, more than the budget of "
            f"{cap / GIB:.1f} GiB (gateway.gpu_budget_gb)"
        )


__all__ = ["Candidate", "EvictAll", "Placement", "Policy"]
