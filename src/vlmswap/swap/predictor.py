"""Which model will be asked for next: per model, the chance of a request within the next horizon.

Learned online from the requests themselves, so it needs no training step and follows a
workload that changes. Each time the requested model changes (and once per window during a
long run of one model) an *observation* opens: which model is current, the hour of day, and
for each model how long ago it was last asked and how often lately. It stays open for
`censor_s` and records when each model was first asked after it. A closed observation adds,
per model, its *exposure* (seconds until that first request, or `censor_s` if none came) and
whether an *event* (that request) happened, to four tables; each count decays with a
half-life so that old habits fade. Events over exposure is a request rate, so a model asked
again in ten seconds and one asked in ten minutes differ even when both come back "soon":

- `base`: each model's rate after any observation (the prior of everything below);
- `hour`: the same per hour of day (a team that reads documents in the morning);
- `after`: per current model, a first-order transition table (after dots-ocr, qwen2-vl);
- `recent`: per model and per cell of recency and frequency, "last asked this long ago" and
  "asked after another model this many times within the window" (a model of the group in use
  comes back; a stray request for one outside it mostly does not), with the same cells pooled
  over all models as the fallback while a model has little history of its own.

Each table gives a rate (shrunk toward its fallback by `prior_strength` pseudo-observations)
and so a chance of a request within the horizon H, 1 - exp(-rate * H). The tables are combined
in log-odds by a small logistic regression learned online from the same observations (did the
model come within H?): it starts as a naive Bayes product (the base chance times each table's
evidence relative to it) and learns how much each table is worth in this workload; recency
misleads when models are used in a fixed cycle, the transition table when they are not. With
no history every chance is 1/2 and the callers' tie-breaks decide (least recently used): the
predictor adds to LRU only what it has seen.

Pure and cheap: `observe` is O(open observations) dictionary insertions (at most `max_open`);
a query is a handful of dictionary reads. No I/O: `dumps`/`load_dict` let the manager keep it
beside the learned stats in the state dir.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION = 3
FEATURES = ("bias", "base", "hour", "after", "after2", "recent")
START = (0.0, 1.0, 1.0, 1.0, 1.0, 1.0)  # the naive Bayes product in log-odds
AGE_EDGES = (0.125, 0.5, 1.0, 4.0, 16.0)
"""Cells of "last asked this long ago", in windows: [0, W/8), [W/8, W/2), [W/2, W), [W, 4W), [4W, 16W),
longer; and one more for never."""
NEVER = len(AGE_EDGES) + 1
VISITS_MAX = 4
"""Visits (requests for a model after one for another) within the last window: 0, 1, 2, 3, 4 or more."""
LN2 = math.log(2)
CLOSE_PER_CALL = 2


def local_hour(t: float) -> int:
    """The hour of day on this machine's clock of a wall-clock time (epoch seconds)."""
    return time.localtime(t).tm_hour


def trace_hour(t: float) -> int:
    """The hour of day of a trace time: epoch seconds are read on this machine's clock; smaller
    numbers count from midnight (a synthetic trace's t=0 is 00:00)."""
    return local_hour(t) if t >= 1e8 else int(t // 3600) % 24


Cell = list[float]
"""[events, exposure seconds, stamp]: decayed counts, expressed at time `stamp`."""


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return math.log(p / (1 - p))


def _sigmoid(x: float) -> float:
    if x < -30:
        return 0.0
    return 1 / (1 + math.exp(-x))


def _chance(rate: float, horizon_s: float) -> float:
    """A request within the horizon at this rate (a Poisson process): 1 - exp(-rate * H)."""
    return -math.expm1(-rate * horizon_s)


def _z(rate: float, horizon_s: float) -> float:
    """The log-odds of `_chance`: log((1 - e^-x) / e^-x) = log(e^x - 1), clamped like _logit."""
    x = min(max(rate * horizon_s, 1e-4), 9.2)
    return math.log(math.expm1(x))


def _decay(cell: Cell, t: float, half_life_s: float) -> None:
    """Express the counts at `t`; steps under 0.07 % of decay wait until they add up to more."""
    dt = t - cell[2]
    if dt > half_life_s * 1e-3:
        f = 0.5 ** (dt / half_life_s)
        cell[0] *= f
        cell[1] *= f
        cell[2] = t


def _rate(cell: Cell | None, t: float, half_life_s: float, prior: float, strength: float) -> tuple[float, float]:
    """(rate shrunk toward `prior` by `strength` pseudo-observations of one event each after the
    prior's mean time, exposure behind it): a gamma prior's posterior mean."""
    if cell is None or not cell[1]:
        return prior, 0.0
    dt = t - cell[2]
    f = 1.0 if dt < half_life_s * 1e-3 else 0.5 ** (dt / half_life_s)  # under 0.07 %: not worth a pow
    events, exposure = cell[0] * f, cell[1] * f
    return (events + strength) / (exposure + strength / prior), exposure


@dataclass
class _Obs:
    """An open observation: what follows the moment `source` became (or stayed) current at `t0`."""

    source: str
    source2: str  # the model before `source` and `source` ("a>b"): the second-order context
    t0: float
    hour: int
    cells: dict[str, int]  # model -> its recency/frequency cell at t0
    x: dict[str, tuple[float, ...]]  # model -> the combination's inputs at t0
    first: dict[str, float] = field(default_factory=dict)  # model -> its first request after t0


@dataclass(frozen=True)
class Prediction:
    model: str
    chance: float
    why: str


@dataclass(frozen=True)
class Weights:
    """How much each table's evidence counts, and how much history it takes to count (tuned on the
    tuning seeds of bench/simulate.py, never on the seeds it reports as held out)."""

    prior_strength: float = 2.0  # pseudo-observations behind each table's fallback
    learning_rate: float = 0.02  # of the combination (0: the naive Bayes product, never adjusted)


class Predictor:
    """Per model, the chance of being asked within the next `horizon_s` seconds."""

    def __init__(
        self,
        models: Iterable[str],
        *,
        horizon_s: float = 30.0,
        window_s: float | None = None,
        censor_s: float | None = None,
        half_life_s: float = 3 * 86400.0,
        weights: Weights | None = None,
        hour_of: Callable[[float], int] = local_hour,
        max_open: int = 256,
    ):
        if horizon_s <= 0 or half_life_s <= 0:
            raise ValueError("horizon_s and half_life_s must be positive")
        self.models = list(dict.fromkeys(models))
        self.horizon_s = horizon_s
        self.window_s = window_s or 20 * horizon_s  # recency and frequency are counted over this
        self.censor_s = censor_s or 4 * max(self.horizon_s, self.window_s)
        self.half_life_s = half_life_s
        self.weights = weights or Weights()
        self.hour_of = hour_of
        self.max_open = max_open
        self.current: str | None = None
        self.previous: str | None = None  # the model asked before the current one
        self.last: dict[str, float] = {}  # model -> when it was last asked
        self.visits: dict[str, deque[float]] = {}  # model -> when each of its runs began, within the window
        self.base: dict[str, Cell] = {}
        self.hour: dict[int, dict[str, Cell]] = {}
        self.after: dict[str, dict[str, Cell]] = {}
        self.recent: dict[str, dict[int, Cell]] = {}
        self.recent_all: dict[int, Cell] = {}
        self.coef = list(START)
        self._open: deque[_Obs] = deque()
        self._last_open = -math.inf
        self.observed = 0

    @property
    def prior_rate(self) -> float:
        """The rate of "no history": a chance of 1/2 within the horizon."""
        return LN2 / self.horizon_s

    # --- learning --------------------------------------------------------------------------

    def observe(self, model: str, t: float) -> None:
        """A request for `model` at time `t` (seconds; times must not go backwards by much)."""
        self.observed += 1
        self._close_until(t)
        for obs in reversed(self._open):  # newest first: those still open come before the expired ones
            if obs.t0 + self.censor_s < t:
                break
            obs.first.setdefault(model, t)
        changed = model != self.current
        if changed:
            self.previous = self.current
        self.current = model
        self.last[model] = t
        if changed:
            self.visits.setdefault(model, deque()).append(t)
        if model not in self.models:
            self.models.append(model)
        if changed or t - self._last_open >= self.window_s:
            cells = {m: self._cell(m, t) for m in self.models}
            x = {m: self._inputs(m, t, cells[m]) for m in self.models}
            self._open.append(_Obs(model, f"{self.previous}>{model}", t, self.hour_of(t), cells, x))
            self._last_open = t
            while len(self._open) > self.max_open:
                self._close(self._open.popleft(), t)

    def _close_until(self, t: float) -> None:
        """Close what has expired, a few per call: after a long pause a request would otherwise pay for
        every observation at once (the rest close on the next calls; they take nothing new meanwhile)."""
        for _ in range(CLOSE_PER_CALL):
            if not self._open or self._open[0].t0 + self.censor_s >= t:
                return
            obs = self._open.popleft()
            self._close(obs, obs.t0 + self.censor_s)

    def _close(self, obs: _Obs, end: float) -> None:
        """Add what `obs` saw until `end` (its censoring time, or earlier when the cap closes it)."""
        hl, span = self.half_life_s, end - obs.t0
        rows = (
            self.base,
            self.hour.setdefault(obs.hour, {}),
            self.after.setdefault(obs.source, {}),
            self.after.setdefault(obs.source2, {}),
        )
        lr = self.weights.learning_rate
        for m, cell_id in obs.cells.items():
            first = obs.first.get(m)
            event = 1.0 if first is not None else 0.0
            exposure = (first - obs.t0) if first is not None else span
            if lr and span >= self.horizon_s:  # the combination: was the guess at t0 right within H?
                x = obs.x[m]
                y = 1.0 if first is not None and first - obs.t0 <= self.horizon_s else 0.0
                g = lr * (y - _sigmoid(sum(c * v for c, v in zip(self.coef, x))))
                self.coef = [c + g * v for c, v in zip(self.coef, x)]
            cells = [row.setdefault(m, [0.0, 0.0, end]) for row in rows]
            cells.append(self.recent.setdefault(m, {}).setdefault(cell_id, [0.0, 0.0, end]))
            cells.append(self.recent_all.setdefault(cell_id, [0.0, 0.0, end]))
            for cell in cells:
                _decay(cell, end, hl)
                cell[0] += event
                cell[1] += exposure

    def _cell(self, m: str, t: float) -> int:
        """m's recency (AGE_EDGES, NEVER) and frequency (visits within the window) as one number."""
        last = self.last.get(m)
        if last is None:
            return NEVER * 10
        a = (t - last) / self.window_s
        age = next((i for i, edge in enumerate(AGE_EDGES) if a < edge), len(AGE_EDGES))
        v = self.visits.get(m)
        while v and v[0] <= t - self.window_s:
            v.popleft()
        return age * 10 + min(len(v) if v else 0, VISITS_MAX)

    # --- asking ----------------------------------------------------------------------------

    def explain(self, model: str, t: float) -> Prediction:
        p, why = self._estimate(model, t)
        return Prediction(model, p, why)

    def ranked(self, t: float, models: Iterable[str] | None = None) -> list[Prediction]:
        """Every model (or those given), most likely first; ties: most recently asked first."""
        names = list(models) if models is not None else self.models
        out = [self.explain(m, t) for m in names]
        return sorted(out, key=lambda p: (-p.chance, -self.last.get(p.model, -math.inf)))

    def _inputs(self, m: str, t: float, cell: int, words: list[str] | None = None) -> tuple[float, ...]:
        """The combination's inputs for m at t: each table's log-odds relative to its fallback's (the
        base's, the first-order transition's for the second). With `words`, what /api/status says."""
        hl, h, k = self.half_life_s, self.horizon_s, self.weights.prior_strength
        base, seen = _rate(self.base.get(m), t, hl, self.prior_rate, 1.0)
        z = _z(base, h)
        hour = self.hour_of(t)
        r_hour, ex_hour = _rate(self.hour.get(hour, {}).get(m), t, hl, base, k)
        r_after, ex_after, r_after2, ex_after2 = base, 0.0, base, 0.0
        c = self.current
        if c is not None:
            r_after, ex_after = _rate(self.after.get(c, {}).get(m), t, hl, base, k)
            r_after2, ex_after2 = _rate(self.after.get(f"{self.previous}>{c}", {}).get(m), t, hl, r_after, k)
        pooled, _ = _rate(self.recent_all.get(cell), t, hl, base, k)
        r_recent, _ = _rate(self.recent.get(m, {}).get(cell), t, hl, pooled, k)
        if words is not None:
            if not seen:
                words.append("no history yet")
            if ex_hour:
                words.append(f"at {hour:02d}h {_chance(r_hour, h):.0%}")
            if ex_after:
                words.append(f"after {c} {_chance(r_after, h):.0%}")
            if ex_after2 and self.previous is not None:
                words.append(f"after {self.previous} then {c} {_chance(r_after2, h):.0%}")
            last = self.last.get(m)
            if last is not None:
                words.append(f"last asked {ago(t - last)} ago {_chance(r_recent, h):.0%}")
        z_after = _z(r_after, h)
        return (1.0, z, _z(r_hour, h) - z, z_after - z, _z(r_after2, h) - z_after, _z(r_recent, h) - z)

    def chance(self, model: str, t: float) -> float:
        x = self._inputs(model, t, self._cell(model, t))
        return _sigmoid(sum(c * v for c, v in zip(self.coef, x)))

    def _estimate(self, m: str, t: float) -> tuple[float, str]:
        parts: list[str] = []
        x = self._inputs(m, t, self._cell(m, t), parts)
        p = _sigmoid(sum(c * v for c, v in zip(self.coef, x)))
        return p, f"{p:.0%} within {ago(self.horizon_s)}" + (" (" + ", ".join(parts) + ")" if parts else "")

    # --- keeping ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": VERSION,
            "horizon_s": self.horizon_s,
            "window_s": self.window_s,
            "censor_s": self.censor_s,
            "half_life_s": self.half_life_s,
            "current": self.current,
            "previous": self.previous,
            "last": self.last,
            "visits": {m: list(v) for m, v in self.visits.items() if v},
            "observed": self.observed,
            "coef": self.coef,
            "base": self.base,
            "hour": {str(h): r for h, r in self.hour.items()},
            "after": self.after,
            "recent": {m: {str(b): c for b, c in cells.items()} for m, cells in self.recent.items()},
            "recent_all": {str(b): c for b, c in self.recent_all.items()},
        }

    def dumps(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))

    def load_dict(self, d: dict[str, Any]) -> bool:
        """Take the learned tables of `d` (see to_dict); False when they were learned with other
        horizons (not comparable: dropped). Models no longer known are kept (they cost nothing)."""
        if d.get("version") != VERSION or any(
            float(d.get(k, 0)) != getattr(self, k) for k in ("horizon_s", "window_s", "censor_s")
        ):
            return False

        def cells(row: dict[str, Any]) -> dict[str, Cell]:
            return {str(m): [float(x) for x in c] for m, c in row.items()}

        coef = [float(c) for c in d["coef"]]
        if len(coef) != len(FEATURES):
            return False
        # Everything parsed first: a file that fails half-way changes nothing.
        last = {str(k): float(v) for k, v in d.get("last", {}).items()}
        visits = {str(m): deque(float(x) for x in v) for m, v in d.get("visits", {}).items()}
        base = cells(d["base"])
        hour = {int(h): cells(r) for h, r in d["hour"].items()}
        after = {str(m): cells(r) for m, r in d["after"].items()}
        recent = {str(m): {int(b): [float(x) for x in c] for b, c in r.items()} for m, r in d["recent"].items()}
        recent_all = {int(b): [float(x) for x in c] for b, c in d["recent_all"].items()}
        self.current, self.previous = d.get("current"), d.get("previous")
        self.observed = int(d.get("observed", 0))
        self.coef, self.last, self.visits, self.base, self.hour = coef, last, visits, base, hour
        self.after = after
        self.recent, self.recent_all = recent, recent_all
        for m in self.last:
            if m not in self.models:
                self.models.append(m)
        return True

    def save(self, path: Path) -> None:
        write_atomic(path, self.dumps())

    def load(self, path: Path) -> bool:
        """Read what an earlier gateway learned; False when there is nothing usable."""
        try:
            return self.load_dict(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False


def ago(seconds: float) -> str:
    s = max(0.0, seconds)
    if s < 90:
        return f"{s:.0f} s"
    if s < 5400:
        return f"{s / 60:.0f} min"
    return f"{s / 3600:.1f} h"


def write_atomic(path: Path, text: str) -> None:
    """Write a temp file and rename it over `path`, so a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


__all__ = ["Prediction", "Predictor", "Weights", "ago", "local_hour", "trace_hour", "write_atomic"]
