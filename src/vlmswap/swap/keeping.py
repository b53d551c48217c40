"""Which sleeper the pool lets go first: the worth of keeping each one (`gateway.pool_policy`).

The sleeping pool's budgets (pool.py) evict the sleepers worth least first; this module says
what a sleeper is worth. Two orders, one protocol, so the live gateway (manager.py) and the
simulator (simulator.py) ask the same question the same way:

- `Lru`: worth is when it was last used; the least recently used leaves first (what Ollama,
  llama-swap and LocalAI do). The model going to sleep is always let in: it was serving.
- `Predictive`: worth is the seconds keeping it is expected to save on its next switch,
  the chance that it is asked within the horizon (predictor.py) times its cold start less
  its wake (priors.py: learned, else declared). A model with requests queued will be needed
  for certain and before any guess comes true: it ranks above every model without (`QUEUED`
  is added), the oldest queued request's model is never let go at all (pool.py). The model
  going to sleep joins only when it is worth at least what it displaces.

Neither changes which request is served next: only who stays in host RAM.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol

from vlmswap.swap.predictor import Predictor, ago
from vlmswap.swap.priors import Costs

PoolPolicy = Literal["lru", "predictive"]
QUEUED = 1e6
"""Added to the worth of a model with requests queued: above any expected saving (seconds)."""


class PoolOrder(Protocol):
    @property
    def policy(self) -> str: ...

    def keep(self, model: str) -> float:
        """What keeping sleeper `model` is worth; the lowest leave first."""
        ...

    def worth(self, model: str) -> float:
        """What letting `model` join the pool is worth, on the scale of `keep` (inf: always)."""
        ...

    def why(self, model: str) -> str:
        """One line for /api/status: why it is kept (or would be)."""
        ...


@dataclass
class Lru:
    last_used: Callable[[str], float]
    now: Callable[[], float]
    policy: PoolPolicy = "lru"

    def keep(self, model: str) -> float:
        return self.last_used(model)

    def worth(self, model: str) -> float:
        return math.inf

    def why(self, model: str) -> str:
        return f"last used {ago(self.now() - self.last_used(model))} ago (lru: the least recently used leaves first)"


@dataclass
class Predictive:
    predictor: Predictor
    costs: Callable[[str], Costs]
    queued: Callable[[str], int]
    wall: Callable[[], float]  # the predictor's clock
    policy: PoolPolicy = "predictive"

    def chance(self, model: str) -> float:
        return 1.0 if self.queued(model) else self.predictor.chance(model, self.wall())

    def keep(self, model: str) -> float:
        saving = self.costs(model).saving_s
        return QUEUED + saving if self.queued(model) else self.chance(model) * saving

    def worth(self, model: str) -> float:
        return self.keep(model)

    def why(self, model: str) -> str:
        c = self.costs(model)
        if self.queued(model):
            return f"{self.queued(model)} request(s) queued for it; a wake saves {c.saving_s:.1f} s ({c.source})"
        chance = self.predictor.explain(model, self.wall()).why
        return (
            f"keeping it saves {self.keep(model):.1f} s expected: {chance}; a wake instead of a cold start "
            f"saves {c.saving_s:.1f} s ({c.source})"
        )


def order_for(
    policy: PoolPolicy,
    *,
    last_used: Callable[[str], float],
    now: Callable[[], float],
    predictor: Predictor,
    costs: Callable[[str], Costs],
    queued: Callable[[str], int],
    wall: Callable[[], float],
) -> PoolOrder:
    if policy == "lru":
        return Lru(last_used, now)
    return Predictive(predictor, costs, queued, wall)


__all__ = ["QUEUED", "Lru", "PoolOrder", "PoolPolicy", "Predictive", "order_for"]
