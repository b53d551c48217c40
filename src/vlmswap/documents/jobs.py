"""A document job as data: its states, its pages' states, its progress and ETA.

Pure (no I/O, no clock of its own), so the gateway's job store, the Python client, the CLI
and the UI read one job the same way. The gateway keeps jobs in SQLite
(`vlmswap.gateway.jobs_store`) and runs them (`vlmswap.gateway.jobs_runner`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class JobState(StrEnum):
    QUEUED = "queued"  # accepted, no page has reached the model yet
    RUNNING = "running"
    DONE = "done"  # every page done or failed, at least one done
    FAILED = "failed"  # no page could be read (or the input could not be opened again)
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.DONE, JobState.FAILED, JobState.CANCELLED)


class PageState(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"  # every try failed; `error` says why


#: Tries per page for a 5xx or a timeout (the first try counts).
PAGE_TRIES = 2


@dataclass(frozen=True)
class JobSpec:
    """What was asked: one file, one model, one mode, the pages to read."""

    source: str  # the upload's file name
    model: str  # as the client named it
    mode: str = "layout"
    pages: tuple[int, ...] = ()  # 1-based, in reading order
    dpi: float = 150.0
    prompt: str | None = None  # replaces the mode's prompt; the answer is read in the mode's format
    max_tokens: int | None = None
    owner: str = "anonymous"  # the profile that submitted it: only it (and admins) may see or cancel it


@dataclass
class PageRecord:
    number: int
    state: PageState = PageState.PENDING
    tries: int = 0
    error: str | None = None
    seconds: float | None = None  # wall time of the try that finished it
    finished_at: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "state": str(self.state),
            "tries": self.tries,
            "error": self.error,
            "seconds": None if self.seconds is None else round(self.seconds, 3),
            "finished_at": self.finished_at,
        }


@dataclass
class Job:
    id: str
    spec: JobSpec
    state: JobState
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    error: str | None = None
    pages: list[PageRecord] = field(default_factory=list)

    def count(self, state: PageState) -> int:
        return sum(1 for p in self.pages if p.state == state)

    def pending(self) -> list[int]:
        """Pages still to read, in order (a page left `running` by a stopped gateway counts)."""
        return [p.number for p in self.pages if p.state in (PageState.PENDING, PageState.RUNNING)]

    def eta_s(self, concurrency: int = 1) -> float | None:
        """Seconds left, from the mean time of the pages done so far; None before the first."""
        if self.state.finished:
            return 0.0
        times = [p.seconds for p in self.pages if p.state == PageState.DONE and p.seconds is not None]
        if not times:
            return None
        left = len(self.pending())
        return round(sum(times) / len(times) * left / max(1, concurrency), 1)

    def summary(self, concurrency: int = 1) -> dict[str, Any]:
        """The job without its pages: what lists and progress bars need."""
        return {
            "id": self.id,
            "state": str(self.state),
            "source": self.spec.source,
            "model": self.spec.model,
            "mode": self.spec.mode,
            "owner": self.spec.owner,
            "pages_total": len(self.pages),
            "pages_done": self.count(PageState.DONE),
            "pages_failed": self.count(PageState.FAILED),
            "eta_s": self.eta_s(concurrency),
            "created_at": self.created_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "error": self.error,
        }

    def to_dict(self, concurrency: int = 1) -> dict[str, Any]:
        return {
            **self.summary(concurrency),
            "dpi": self.spec.dpi,
            "prompt": self.spec.prompt,
            "max_tokens": self.spec.max_tokens,
            "pages": [p.to_dict() for p in self.pages],
        }


def final_state(job: Job) -> JobState:
    """How a job that ran out of pages ends: done when any page was read, else failed."""
    return JobState.DONE if job.count(PageState.DONE) else JobState.FAILED


def retryable(status: int) -> bool:
    """A 5xx (a backend error, a timeout reported as 502/504) is worth another try; a 4xx is not."""
    return status >= 500


__all__ = ["PAGE_TRIES", "Job", "JobSpec", "JobState", "PageRecord", "PageState", "final_state", "retryable"]
