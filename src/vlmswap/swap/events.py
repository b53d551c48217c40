"""The gateway's event bus: every state change, switch phase and job step, published once.

One owner of the sequence number and the subscribers, so the manager, the document jobs,
`/api/events` and the metrics all speak about the same events. Publishing never blocks: a
subscriber that falls behind loses its oldest events, never the gateway its time.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from typing import Any

Event = dict[str, Any]


class EventBus:
    def __init__(self) -> None:
        self._seq = 0
        self._subscribers: set[asyncio.Queue[Event]] = set()
        self._listeners: list[Callable[[Event], None]] = []

    @property
    def seq(self) -> int:
        """The sequence number of the last event published (0: none yet)."""
        return self._seq

    def publish(
        self,
        type: str,
        model: str | None,
        *,
        state: str | None = None,
        phase: str | None = None,
        elapsed_s: float | None = None,
        message: str = "",
        **extra: Any,
    ) -> Event:
        """Send one event to every subscriber and listener; returns it (with `seq` and `time`)."""
        self._seq += 1
        ev: Event = {
            "seq": self._seq,
            "time": time.time(),
            "type": type,
            "model": model,
            "state": state,
            "phase": phase,
            "elapsed_s": None if elapsed_s is None else round(elapsed_s, 3),
            "message": message,
        }
        ev.update(extra)
        for q in list(self._subscribers):
            if q.full():
                with contextlib.suppress(asyncio.QueueEmpty):
                    q.get_nowait()
            q.put_nowait(ev)
        for fn in self._listeners:
            with contextlib.suppress(Exception):
                fn(ev)
        return ev

    def subscribe(self, maxsize: int = 1000) -> Subscription:
        """Every event from now on (registered before this returns, so nothing is missed)."""
        return Subscription(self, maxsize)

    def add_listener(self, fn: Callable[[Event], None]) -> None:
        """Called synchronously with every event (metrics use this); its exceptions are ignored."""
        self._listeners.append(fn)


class Subscription:
    """An async iterator over published events."""

    def __init__(self, bus: EventBus, maxsize: int = 1000):
        self._bus = bus
        self._queue: asyncio.Queue[Event] = asyncio.Queue(maxsize=maxsize)
        bus._subscribers.add(self._queue)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        return await self._queue.get()

    def drain(self) -> list[Event]:
        """The events already queued, without waiting."""
        out = []
        while not self._queue.empty():
            out.append(self._queue.get_nowait())
        return out

    async def aclose(self) -> None:
        self._bus._subscribers.discard(self._queue)
