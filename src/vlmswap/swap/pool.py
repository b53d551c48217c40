"""The sleeping pool's budgets: who must leave so that a model may sleep, or wake.

Pure functions from sizes and worth to "these go", in the spirit of llama-swap's eviction:
no I/O, so every order and limit is tested without processes. The lifecycle measures (RSS
of a sleeper's processes, NVML bytes per pid) and carries the answers out; the simulator
(swap/simulator.py) asks the same functions, so a replayed trace follows the same rules.

What a sleeper is worth (`keep`) is the caller's (swap/keeping.py): when it was last used
(LRU), or the seconds keeping it is expected to save (predictive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Sleeper:
    name: str
    ram_bytes: int  # host RAM it holds asleep (measured, else estimated)
    gpu_bytes: int  # GPU memory it keeps asleep (its CUDA context), measured per pid
    keep: float  # what keeping it is worth (the manager's pool order); the lowest leave first
    used: float = 0.0  # when it was last used: among equal worth, the least recently used leaves first


@dataclass(frozen=True)
class Plan:
    evict: tuple[str, ...]  # sleepers to stop, in this order
    fits: bool  # False: even with every evictable sleeper gone it does not fit; evict nothing
    why: str = ""


def _cheapest(sleepers: list[Sleeper], protect: frozenset[str]) -> list[Sleeper]:
    return sorted((s for s in sleepers if s.name not in protect), key=lambda s: (s.keep, s.used))


def plan_sleep(
    candidate: str,
    ram_bytes: int,
    sleepers: list[Sleeper],
    *,
    max_sleeping: int | None,
    ram_budget_bytes: int,
    protect: frozenset[str] = frozenset(),
    worth: float = math.inf,
    waking: str | None = None,
) -> Plan:
    """May `candidate` join the pool (holding `ram_bytes`)? `waking`: the sleeper about to wake, which
    leaves the pool (it neither counts nor can be chosen). Which sleepers leave first so it fits
    both `max_sleeping` and the RAM budget. Protected sleepers (the model about to wake, the one
    the oldest queued request waits for) never leave, nor do sleepers worth more than the
    candidate (`worth`, on the scale of `Sleeper.keep`; infinite under LRU: the model that was
    just serving is always the most recently used). With a finite worth the keeps are expected
    savings, which add up: the candidate is refused when those it would displace are worth more
    together than it is."""
    others = [s for s in sleepers if s.name not in (candidate, waking)]
    protect = protect | {s.name for s in others if s.keep > worth}
    if max_sleeping is not None and max_sleeping <= 0:
        return Plan((), False, "max_sleeping is 0")
    if ram_bytes > ram_budget_bytes:
        return Plan(
            (), False, f"it needs {_gb(ram_bytes)} of host RAM, over the whole budget of {_gb(ram_budget_bytes)}"
        )
    count, held = len(others), sum(s.ram_bytes for s in others)
    evict: list[str] = []
    for s in _cheapest(others, protect):
        if (max_sleeping is None or count + 1 <= max_sleeping) and held + ram_bytes <= ram_budget_bytes:
            break
        evict.append(s.name)
        count -= 1
        held -= s.ram_bytes
    if (max_sleeping is not None and count + 1 > max_sleeping) or held + ram_bytes > ram_budget_bytes:
        why = "protected sleeper(s)" if math.isinf(worth) else "sleeper(s) protected or worth more to keep"
        return Plan(
            (),
            False,
            f"the pool holds {_gb(held)} in {count} {why}; budget {_gb(ram_budget_bytes)}, max_sleeping {max_sleeping}",
        )
    lost = sum(s.keep for s in others if s.name in evict)
    if not math.isinf(worth) and len(evict) > 1 and lost > worth:
        return Plan((), False, f"the {len(evict)} sleepers it would displace are worth more to keep together")
    return Plan(tuple(evict), True)


def plan_gpu(
    target: str, need_bytes: int, sleepers: list[Sleeper], *, capacity_bytes: int, protect: frozenset[str] = frozenset()
) -> Plan:
    """Before `target` wakes or starts: its need plus every other sleeper's residual must fit the
    card; sleepers leave least recently used first (never a protected one)."""
    others = [s for s in sleepers if s.name != target]
    held = sum(s.gpu_bytes for s in others)
    evict: list[str] = []
    for s in _cheapest(others, protect):
        if held + need_bytes <= capacity_bytes:
            break
        evict.append(s.name)
        held -= s.gpu_bytes
    if held + need_bytes > capacity_bytes:
        return Plan(
            tuple(evict),
            False,
            f"{_gb(need_bytes)} needed, {_gb(held)} held by protected sleepers, card {_gb(capacity_bytes)}",
        )
    return Plan(tuple(evict), True)


def _gb(n: int) -> str:
    return f"{n / 1024**3:.2f} GiB"
