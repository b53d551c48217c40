"""Learned numbers per model, kept in the state dir across restarts (SQLite).

Every cold start, wake, sleep (its seconds and the RAM it holds) and ready reading leaves a
sample; the medians replace the registry's priors (`vram_gb`, `sleep_ram_gb`,
`expected_start_s`, ...) once measured, and give switches an ETA.
Small and synchronous: a few writes per switch, never on the request path.
"""

from __future__ import annotations

import sqlite3
import statistics
import time
from pathlib import Path
from typing import Literal

Metric = Literal["cold_start_s", "wake_s", "sleep_s", "peak_vram_bytes", "sleep_ram_bytes"]
METRICS: tuple[Metric, ...] = ("cold_start_s", "wake_s", "sleep_s", "peak_vram_bytes", "sleep_ram_bytes")
KEEP = 50  # samples per model and metric; older ones are dropped


class Stats:
    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS samples (model TEXT NOT NULL, metric TEXT NOT NULL, "
            "value REAL NOT NULL, at REAL NOT NULL)"
        )
        self._db.execute("CREATE INDEX IF NOT EXISTS samples_model_metric ON samples (model, metric, at)")
        self._cache: dict[tuple[str, str], list[float]] = {}

    def record(self, model: str, metric: Metric, value: float) -> None:
        self._db.execute("INSERT INTO samples VALUES (?, ?, ?, ?)", (model, metric, float(value), time.time()))
        self._db.execute(
            "DELETE FROM samples WHERE model = ? AND metric = ? AND rowid NOT IN (SELECT rowid FROM "
            "samples WHERE model = ? AND metric = ? ORDER BY at DESC LIMIT ?)",
            (model, metric, model, metric, KEEP),
        )
        self._cache.pop((model, metric), None)

    def values(self, model: str, metric: Metric) -> list[float]:
        key = (model, metric)
        if key not in self._cache:
            rows = self._db.execute(
                "SELECT value FROM samples WHERE model = ? AND metric = ? ORDER BY at", (model, metric)
            ).fetchall()
            self._cache[key] = [r[0] for r in rows]
        return self._cache[key]

    def median(self, model: str, metric: Metric) -> float | None:
        v = self.values(model, metric)
        return statistics.median(v) if v else None

    def summary(self, model: str) -> dict[str, dict[str, float | int]]:
        """{metric: {count, median, last}} for the metrics measured so far."""
        out: dict[str, dict[str, float | int]] = {}
        for metric in METRICS:
            v = self.values(model, metric)
            if v:
                out[metric] = {"count": len(v), "median": round(statistics.median(v), 4), "last": round(v[-1], 4)}
        return out

    def close(self) -> None:
        self._db.close()
