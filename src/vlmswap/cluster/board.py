"""The Board deployment: the cluster's view, gathered from every replica.

Each ModelHost replica reports its status and metrics here every second (and at once on a
change) and forwards its events; the ingress answers `/api/status`, `/metrics`, `/v1/models`,
`/api/usage` and `/api/events` from here (`aggregate.py` does the merging).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from typing import Any

from ray import serve

from vlmswap.cluster import aggregate
from vlmswap.swap.events import EventBus

STALE_S = 5.0  # a replica silent this long is left out of the cluster's status
EVENT_FIELDS = ("type", "model", "state", "phase", "elapsed_s", "message")


@serve.deployment(num_replicas=1, max_ongoing_requests=10_000, ray_actor_options={"num_cpus": 0})
class Board:
    """The cluster's view: the last report of every replica, and one event stream for all."""

    def __init__(self) -> None:
        self.reports: dict[str, dict[str, Any]] = {}
        self.bus = EventBus()

    def _live(self) -> list[dict[str, Any]]:
        now = time.time()
        for rid in [r for r, rep in self.reports.items() if now - rep["time"] > STALE_S]:
            rep = self.reports.pop(rid)
            self.bus.publish(
                "replica",
                None,
                state="lost",
                message=f"replica {rid} on {rep['node']} stopped reporting",
                replica=rid,
                node=rep["node"],
            )
        return list(self.reports.values())

    async def report(self, rep: dict[str, Any]) -> None:
        if rep["replica"] not in self.reports:
            self.bus.publish(
                "replica",
                None,
                state="up",
                message=f"replica {rep['replica']} up on {rep['node']} "
                f"(slot {rep['slot']}, GPUs {rep['gpu_ids'] or 'none'})",
                replica=rep["replica"],
                node=rep["node"],
            )
        self.reports[rep["replica"]] = rep

    async def leave(self, replica: str) -> None:
        rep = self.reports.pop(replica, None)
        if rep is not None:
            self.bus.publish(
                "replica", None, state="down", message=f"replica {replica} stopped", replica=replica, node=rep["node"]
            )

    async def publish(self, replica: str, node: str, ev: dict[str, Any]) -> None:
        extra = {k: v for k, v in ev.items() if k not in (*EVENT_FIELDS, "seq", "time")}
        self.bus.publish(
            ev["type"],
            ev.get("model"),
            state=ev.get("state"),
            phase=ev.get("phase"),
            elapsed_s=ev.get("elapsed_s"),
            message=ev.get("message") or "",
            **{**extra, "replica": replica, "node": node, "replica_seq": ev.get("seq")},
        )

    async def status(self) -> dict[str, Any]:
        return aggregate.cluster_status(self._live(), time.time())

    async def metrics(self) -> dict[str, str]:
        return {r["replica"]: r["metrics"] for r in self._live()}

    async def usage(self) -> dict[str, dict[str, float | int]]:
        return aggregate.cluster_usage(self._live())

    async def events(self) -> AsyncIterator[dict[str, Any]]:
        sub = self.bus.subscribe()  # before the hello: nothing published after it is missed
        try:
            st = aggregate.cluster_status(self._live(), time.time())
            yield {"type": "hello", "seq": self.bus.seq, "resident": st["resident"], "residents": st["residents"]}
            async for ev in sub:
                yield ev
        finally:
            await sub.aclose()
