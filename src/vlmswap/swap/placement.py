"""Placement for policy `fit`: which models may be awake together, and who makes room.

Pure: sizes in, decisions out. A model's need is its measured peak GPU memory after ready
(learned, see stats.py) or, until measured, the registry's `vram_gb`; the budget is
`gateway.gpu_budget_gb`, else the card (NVML, or `gateway.gpu_memory_gb` where there is no
NVML) less a 5 % reserve. Eviction order when the next model does not fit: never a model
with requests in flight unless nothing else frees enough (it is drained first, as under
`single`); idle models before busy ones, those without queued work before those with, then
least recently used.
"""

from __future__ import annotations

from dataclasses import dataclass, field

GIB = 1024**3
RESERVE_FRACTION = 0.05


@dataclass(frozen=True)
class Candidate:
    """An awake model that could make room."""

    name: str
    in_flight: int
    queued: int
    last_used: float


@dataclass
class Placement:
    capacity_bytes: int | None  # None: no known card (every model fits; sizes are unknown)
    need: dict[str, int] = field(default_factory=dict)

    @classmethod
    def for_card(cls, total_bytes: int | None, budget_gb: float | None, need: dict[str, int]) -> Placement:
        if budget_gb is not None:
            return cls(int(budget_gb * GIB), dict(need))
        if total_bytes:
            return cls(int(total_bytes * (1 - RESERVE_FRACTION)), dict(need))
        return cls(None, dict(need))

    def used(self, models: set[str] | frozenset[str]) -> int:
        return sum(self.need.get(m, 0) for m in models)

    def fits(self, models: set[str] | frozenset[str]) -> bool:
        return self.capacity_bytes is None or self.used(models) <= self.capacity_bytes

    def victims(self, target: str, awake: list[Candidate], fixed: frozenset[str] = frozenset()) -> list[str] | None:
        """The awake models to retire so `target` fits beside the rest, cheapest first; [] when it
        fits already; None when it cannot fit even alone. `fixed`: memory that cannot be freed by
        this choice (models starting or stopping); the answer may then still not fit (wait)."""
        if not self.fits({target}):
            return None
        keep = {c.name for c in awake} | fixed
        if self.fits(keep | {target}):
            return []
        out: list[str] = []
        for c in sorted(awake, key=lambda c: (c.in_flight > 0, c.queued > 0, c.last_used)):
            out.append(c.name)
            keep.discard(c.name)
            if self.fits(keep | {target}):
                return out
        return out
