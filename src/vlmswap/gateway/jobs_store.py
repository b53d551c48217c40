"""Where document jobs live: SQLite for the job and page tables, files for inputs and results.

`state_dir/jobs/jobs.sqlite3` holds one row per job and one per page; `state_dir/jobs/<id>/`
holds the uploaded file (`input`) and each finished page's JSON (`pages/0001.json`). A page's
file is written (atomically: a temporary file, then a rename) before its row says `done`, so a
gateway killed at any moment loses at most the page it was reading, never one it reported.
Each call is one short transaction on the event loop's thread (a row or two; WAL journal).
"""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from vlmswap.documents.jobs import Job, JobSpec, JobState, PageRecord, PageState
from vlmswap.documents.layout import Page

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
  id TEXT PRIMARY KEY, state TEXT NOT NULL, source TEXT NOT NULL, model TEXT NOT NULL, mode TEXT NOT NULL,
  dpi REAL NOT NULL, prompt TEXT, max_tokens INTEGER, created_at REAL NOT NULL, started_at REAL,
  finished_at REAL, error TEXT, owner TEXT NOT NULL DEFAULT 'anonymous');
CREATE TABLE IF NOT EXISTS pages (
  job_id TEXT NOT NULL REFERENCES jobs(id) ON DELETE CASCADE, seq INTEGER NOT NULL, number INTEGER NOT NULL,
  state TEXT NOT NULL, tries INTEGER NOT NULL DEFAULT 0, error TEXT, seconds REAL, finished_at REAL,
  PRIMARY KEY (job_id, number));
CREATE INDEX IF NOT EXISTS jobs_created ON jobs(created_at);
"""


class JobStore:
    def __init__(self, root: Path):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / "jobs.sqlite3", check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(jobs)")}
        if "owner" not in columns:  # a state dir from before jobs had owners: theirs are anonymous
            self._db.execute("ALTER TABLE jobs ADD COLUMN owner TEXT NOT NULL DEFAULT 'anonymous'")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _tx(self, sql: str, *params: Any, many: list[tuple[Any, ...]] | None = None) -> list[sqlite3.Row]:
        with self._lock:
            cur = self._db.executemany(sql, many) if many is not None else self._db.execute(sql, params)
            return cur.fetchall()

    # --- files ------------------------------------------------------------------------------

    def job_dir(self, job_id: str) -> Path:
        return self.root / job_id

    def input_path(self, job_id: str) -> Path:
        return self.job_dir(job_id) / "input"

    def page_path(self, job_id: str, number: int) -> Path:
        return self.job_dir(job_id) / "pages" / f"{number:04d}.json"

    def read_page(self, job_id: str, number: int) -> Page | None:
        try:
            return Page.from_dict(json.loads(self.page_path(job_id, number).read_text("utf-8")))
        except (OSError, ValueError, KeyError):
            return None

    # --- jobs -------------------------------------------------------------------------------

    def create(self, spec: JobSpec, data: bytes) -> Job:
        """Write the input, then the rows: a job is visible only once its file is on disk."""
        job_id = uuid.uuid4().hex[:16]
        d = self.job_dir(job_id)
        (d / "pages").mkdir(parents=True)
        _write_atomic(self.input_path(job_id), data)
        now = time.time()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT INTO jobs (id, state, source, model, mode, dpi, prompt, max_tokens, "
                    "created_at, owner) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    (
                        job_id,
                        JobState.QUEUED,
                        spec.source,
                        spec.model,
                        spec.mode,
                        spec.dpi,
                        spec.prompt,
                        spec.max_tokens,
                        now,
                        spec.owner,
                    ),
                )
                self._db.executemany(
                    "INSERT INTO pages (job_id, seq, number, state) VALUES (?,?,?,?)",
                    [(job_id, i, n, PageState.PENDING) for i, n in enumerate(spec.pages)],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                shutil.rmtree(d, ignore_errors=True)
                raise
        return Job(job_id, spec, JobState.QUEUED, now, pages=[PageRecord(n) for n in spec.pages])

    def get(self, job_id: str) -> Job | None:
        rows = self._tx("SELECT * FROM jobs WHERE id = ?", job_id)
        if not rows:
            return None
        pages = self._tx(
            "SELECT number, state, tries, error, seconds, finished_at FROM pages WHERE job_id = ? ORDER BY seq", job_id
        )
        return _job(tuple(rows[0]), [PageRecord(r[0], PageState(r[1]), r[2], r[3], r[4], r[5]) for r in pages])

    def recent(self, limit: int = 50, owner: str | None = None) -> list[Job]:
        """The newest jobs first (`owner`: only that profile's), with their page rows."""
        if owner is None:
            rows = self._tx("SELECT id FROM jobs ORDER BY created_at DESC LIMIT ?", limit)
        else:
            rows = self._tx("SELECT id FROM jobs WHERE owner = ? ORDER BY created_at DESC LIMIT ?", owner, limit)
        ids = [r[0] for r in rows]
        return [j for j in (self.get(i) for i in ids) if j is not None]

    def unfinished(self) -> list[str]:
        """Jobs a gateway must (re)start, oldest first."""
        return [
            r[0]
            for r in self._tx(
                "SELECT id FROM jobs WHERE state IN (?, ?) ORDER BY created_at", JobState.QUEUED, JobState.RUNNING
            )
        ]

    def active_count(self) -> int:
        return int(self._tx("SELECT count(*) FROM jobs WHERE state IN (?, ?)", JobState.QUEUED, JobState.RUNNING)[0][0])

    def mark_running(self, job_id: str) -> bool:
        """queued -> running (the first page reached the model); False when it was not queued."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = ?, started_at = coalesce(started_at, ?) WHERE id = ? AND state = ?",
                (JobState.RUNNING, time.time(), job_id, JobState.QUEUED),
            )
            return cur.rowcount == 1

    def finish_if_active(self, job_id: str, state: JobState, error: str | None = None) -> bool:
        """Move a queued or running job to a final state; False when it had already ended."""
        with self._lock:
            cur = self._db.execute(
                "UPDATE jobs SET state = ?, finished_at = ?, error = ? WHERE id = ? AND state IN (?, ?)",
                (state, time.time(), error, job_id, JobState.QUEUED, JobState.RUNNING),
            )
            return cur.rowcount == 1

    # --- pages ------------------------------------------------------------------------------

    def page_started(self, job_id: str, number: int) -> None:
        self._tx(
            "UPDATE pages SET state = ?, tries = tries + 1 WHERE job_id = ? AND number = ?",
            PageState.RUNNING,
            job_id,
            number,
        )

    def page_done(self, job_id: str, page: Page, seconds: float) -> None:
        _write_atomic(
            self.page_path(job_id, page.number), json.dumps(page.to_dict(), ensure_ascii=False).encode("utf-8")
        )
        self._tx(
            "UPDATE pages SET state = ?, error = NULL, seconds = ?, finished_at = ? WHERE job_id = ? AND number = ?",
            PageState.DONE,
            seconds,
            time.time(),
            job_id,
            page.number,
        )

    def page_error(self, job_id: str, number: int, error: str, final: bool) -> None:
        """Keep the error of a try; `final`: no try is left, the page is failed."""
        state = PageState.FAILED if final else PageState.PENDING
        self._tx(
            "UPDATE pages SET state = ?, error = ?, finished_at = ? WHERE job_id = ? AND number = ?",
            state,
            error,
            time.time() if final else None,
            job_id,
            number,
        )

    def reset_running(self, job_id: str) -> None:
        """Pages a killed gateway left `running`: their cut try does not count."""
        self._tx(
            "UPDATE pages SET state = ?, tries = max(tries - 1, 0) WHERE job_id = ? AND state = ?",
            PageState.PENDING,
            job_id,
            PageState.RUNNING,
        )

    def page_dropped(self, job_id: str, number: int) -> None:
        """A try that was cut (cancel, shutdown): it does not count, the page is still to read."""
        self._tx(
            "UPDATE pages SET state = ?, tries = max(tries - 1, 0) WHERE job_id = ? AND number = ? AND state = ?",
            PageState.PENDING,
            job_id,
            number,
            PageState.RUNNING,
        )

    # --- retention --------------------------------------------------------------------------

    def delete(self, job_id: str) -> None:
        self._tx("DELETE FROM jobs WHERE id = ?", job_id)
        shutil.rmtree(self.job_dir(job_id), ignore_errors=True)

    def expired(self, older_than: float) -> list[str]:
        return [
            r[0]
            for r in self._tx(
                "SELECT id FROM jobs WHERE state IN (?, ?, ?) AND finished_at < ?",
                JobState.DONE,
                JobState.FAILED,
                JobState.CANCELLED,
                older_than,
            )
        ]


def _job(row: tuple[Any, ...], pages: list[PageRecord]) -> Job:
    (job_id, state, source, model, mode, dpi, prompt, max_tokens, created, started, finished, error, owner) = row
    spec = JobSpec(
        source=source,
        model=model,
        mode=mode,
        pages=tuple(p.number for p in pages),
        dpi=dpi,
        prompt=prompt,
        max_tokens=max_tokens,
        owner=owner,
    )
    return Job(job_id, spec, JobState(state), created, started, finished, error, pages)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


__all__ = ["JobStore"]
