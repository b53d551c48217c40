"""The one way in for model work: who asks, whether they may, when it runs, and what it cost.

Chat and completions (the proxy), `/api/ocr` and every page of a document job enter here, so
each is held to the same rules: the caller's profile (the models it may use, its `priority`,
`requests_per_minute` and `max_concurrent`), the scheduler's queue, the profile's usage
(requests, tokens, seconds the model was held) and the request metrics. A door that skips
this is a door that forgets one of them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from typing import Protocol

from vlmswap.api.errors import APIError
from vlmswap.registry.profiles import Identity, Limiter, Usage
from vlmswap.swap.manager import Lease, Manager, Ticket


class RequestMetrics(Protocol):
    def observe_request(self, model: str, status: int, seconds: float) -> None: ...


class Entry:
    """One admitted request: its place in the queue, then its lease. `close()` it once, when it is over."""

    def __init__(self, admission: Admission, who: Identity, name: str, t0: float):
        self.admission = admission
        self.who = who
        self.name = name
        self.t0 = t0
        self.ticket: Ticket | None = None
        self.tokens = 0
        self._granted_at: float | None = None
        self._observed = False
        self._closed = False

    @property
    def queued(self) -> bool:
        """Still waiting for its model (a stream may show the switch meanwhile)."""
        return self.ticket is not None and not self.ticket.future.done()

    async def wait(self) -> Lease:
        """The lease, once the scheduler grants it (APIError when it refuses)."""
        assert self.ticket is not None
        lease = await self.ticket.wait()
        self._granted_at = time.monotonic()
        return lease

    def count(self, answer: bytes | dict[str, object]) -> None:
        """Tokens from an OpenAI answer's `usage` (a body, or one event of a stream)."""
        with contextlib.suppress(ValueError, AttributeError, TypeError):
            body = json.loads(answer) if isinstance(answer, bytes) else answer
            usage = body.get("usage") or {}
            self.tokens += int(usage.get("total_tokens") or 0)  # type: ignore[union-attr]

    def observe(self, status: int) -> None:
        """The request metric, once: at the start of the answer (queueing included), or at close."""
        if not self._observed:
            self._observed = True
            self.admission.observe(self.name, status, self.t0)

    def close(self, status: int) -> None:
        """The request is over: it leaves the queue or gives its lease back, and what it cost is counted."""
        if self._closed:
            return
        self._closed = True
        self.observe(status)
        if self.ticket is not None:
            self.ticket.release()
        held = time.monotonic() - self._granted_at if self._granted_at is not None else 0.0
        self.admission.leave(self.who, tokens=self.tokens, held_s=held)


class Admission:
    def __init__(self, manager: Manager, usage: Usage, metrics: RequestMetrics | None = None):
        self.manager = manager
        self.usage = usage
        self.metrics = metrics
        self.limiter = Limiter()

    def enter(self, who: Identity, model_id: str) -> Entry:
        """Check the profile and its limits, then join the queue. Raises APIError: 404 unknown model,
        403 not this profile's, 429 over its limits, 503 when the scheduler refuses at once."""
        t0 = time.perf_counter()
        try:
            name = self.manager.resolve(model_id)
        except APIError as exc:
            self.observe("unknown", exc.status, t0)
            raise
        if not who.may_use(name):
            self.observe(name, 403, t0)
            raise APIError(403, f"profile {who.name} may not use {name}", param="model", code="model_not_allowed")
        wait = self.limiter.admit(who, time.monotonic())
        if wait is not None:
            self.observe(name, 429, t0)
            raise APIError(
                429,
                f"profile {who.name} is over its limit (requests_per_minute {who.requests_per_minute}, "
                f"max_concurrent {who.max_concurrent})",
                code="rate_limited",
                headers={"Retry-After": str(int(wait))},
            )
        entry = Entry(self, who, name, t0)
        try:
            entry.ticket = self.manager.request(name, who.priority)
        except APIError as exc:
            entry.close(exc.status)
            raise
        return entry

    @contextlib.asynccontextmanager
    async def lease(self, who: Identity, model_id: str) -> AsyncIterator[tuple[Lease, Entry]]:
        """`enter` and wait: the lease is held until the block exits (a document page uses this)."""
        entry = self.enter(who, model_id)
        status = 500
        try:
            lease = await entry.wait()
            yield lease, entry
            status = 200
        except APIError as exc:
            status = exc.status
            raise
        except asyncio.CancelledError:
            status = 499  # the caller went away
            raise
        finally:
            entry.close(status)

    def observe(self, model: str, status: int, t0: float | None) -> None:
        """One request metric (`t0` None: no duration, e.g. a stream that failed after its start)."""
        if self.metrics is not None:
            self.metrics.observe_request(model, status, 0.0 if t0 is None else time.perf_counter() - t0)

    def leave(self, who: Identity, *, tokens: int, held_s: float) -> None:
        self.limiter.release(who)
        self.usage.record(who.name, tokens=tokens, gpu_seconds=held_s)


__all__ = ["Admission", "Entry", "RequestMetrics"]
