"""The ModelHost deployment: one replica per GPU, running vlmswap's own gateway app in process.

The replica builds the single gateway's app (`create_app(manager)`), runs its lifespan, and
calls it without a socket (`asgi_call.call`), so every request meets the same scheduler, queue, switch rules and
error bodies as under `vlmswap serve`. Its `@serve.multiplexed` loader only records the model
for Ray's router (the manager does the switching, on the request's lease): Ray then sends
the next request for that model to this replica.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import os
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from ray import serve

from vlmswap.api.errors import error_body
from vlmswap.cluster import slots
from vlmswap.cluster.asgi_call import Call, Head, Lifespan, call
from vlmswap.cluster.options import ClusterOptions, registry_of
from vlmswap.registry.profiles import OPEN

REPORT_PERIOD_S = 1.0
LEAVE_TIMEOUT_S = 2.0
log = logging.getLogger("vlmswap.cluster")


class Hosted:
    """What Ray's multiplexing LRU holds for a model: a name whose eviction the replica notes."""

    def __init__(self, name: str, routed: set[str]):
        self.name = name
        self._routed = routed
        routed.add(name)

    def __del__(self) -> None:  # Ray calls it on eviction from its LRU
        self._routed.discard(self.name)


class ModelHostBase:
    """One replica: vlmswap's manager and gateway app, in process, on this replica's GPU."""

    async def __init__(self, registry_data: dict[str, Any], board: Any, state_dir: str | None) -> None:  # type: ignore[misc]
        import ray

        from vlmswap import gpu
        from vlmswap.backends.base import state_dir as default_state_dir
        from vlmswap.gateway import create_app
        from vlmswap.swap.manager import Manager

        # No profiles here: the ingress signs every caller in and each call carries its profile
        # (`Call.identity`), so a replica needs no keys (none of the registry's key_env variables
        # on a GPU node) and serves no call without one.
        registry = registry_of({**registry_data, "profiles": {}})
        ctx = serve.get_replica_context()
        self.replica = ctx.replica_id.unique_id
        self.node = f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"
        self.gpu_ids = [str(g) for g in ray.get_gpu_ids()]
        base = Path(state_dir) if state_dir else default_state_dir()
        self.slot = slots.claim(base / "cluster" / ctx.app_name)
        probe = functools.partial(gpu.probe, int(self.gpu_ids[0])) if self.gpu_ids else gpu.probe
        self.manager = Manager(
            registry,
            state_dir=self.slot.state_dir,
            gpu_probe=probe,
            gateway_id=f"{socket.gethostname()}-{self.replica}",
        )
        self.app = create_app(self.manager)
        self.board = board
        self.routed: set[str] = set()
        self._changed = asyncio.Event()
        # The gateway's own startup: the manager starts and stops what a dead replica of this
        # slot left running (logged by the gateway), the connection pool opens.
        self.lifespan = Lifespan(self.app)
        await self.lifespan.start()
        self._tasks = [asyncio.create_task(self._report_loop()), asyncio.create_task(self._forward_events())]

    async def hosted(self, name: str) -> Hosted:
        return Hosted(name, self.routed)

    async def handle(self, req: Call) -> AsyncIterator[Head | bytes]:
        """One HTTP request through this replica's gateway app; the response head, then its body."""
        if req.identity is None:
            yield Head(401, ((b"content-type", b"application/json"),))
            body = error_body(401, "a replica serves calls from the ingress only", code="no_identity")
            yield json.dumps(body).encode()
            return
        name = serve.get_multiplexed_model_id()
        if name:
            await self.hosted(name)  # Ray's LRU (the subclass's multiplexed loader): routing only
        async for item in call(self.app, req):
            yield item

    async def _get(self, path: str) -> bytes:
        """This replica's own gateway route, called in process (as an admin: the whole answer)."""
        chunks = [c async for c in call(self.app, Call("GET", path, identity=OPEN)) if isinstance(c, bytes)]
        return b"".join(chunks)

    async def _report_loop(self) -> None:
        while True:
            self._changed.clear()  # before reading: a change while the report is on its way sends another
            with contextlib.suppress(Exception):
                metrics = (await self._get("/metrics")).decode()
                usage = json.loads(await self._get("/api/usage"))["profiles"]
                await self.board.report.remote(
                    {
                        "replica": self.replica,
                        "node": self.node,
                        "pid": os.getpid(),
                        "slot": self.slot.index,
                        "gpu_ids": self.gpu_ids,
                        "state_dir": str(self.slot.state_dir),
                        "time": time.time(),
                        "routed_models": sorted(self.routed.copy()),  # copy: Ray evicts from a thread
                        "status": self.manager.status(),  # read last: the freshest part
                        "metrics": metrics,
                        "usage": usage,
                    }
                )
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), REPORT_PERIOD_S)

    async def _forward_events(self) -> None:
        sub = self.manager.events.subscribe()
        try:
            async for ev in sub:
                self._changed.set()
                with contextlib.suppress(Exception):
                    await self.board.publish.remote(self.replica, self.node, ev)
        finally:
            await sub.aclose()

    async def __del__(self) -> None:
        """Ray's graceful stop: every backend this replica started goes with it."""
        for task in getattr(self, "_tasks", ()):
            task.cancel()
        if hasattr(self, "lifespan"):
            t0 = time.monotonic()
            await self.lifespan.stop()  # the gateway's shutdown: every backend stops
            log.warning("replica %s: backends stopped in %.1f s", self.replica, time.monotonic() - t0)
            self.slot.release()
            # The board may be going away too (the whole app is deleted): do not wait on it.
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.board.leave.remote(self.replica), LEAVE_TIMEOUT_S)


def host_deployment(opts: ClusterOptions) -> Any:
    """The ModelHost deployment: N replicas (or autoscaled), one GPU each, K models routed to each."""
    registry = registry_of(opts.registry)

    # Ray finds the loader's `self` by its name: the decorated method keeps the name `hosted`.
    loader = serve.multiplexed(max_num_models_per_replica=opts.models_per_replica)(ModelHostBase.hosted)
    ModelHost = type("ModelHost", (ModelHostBase,), {"hosted": loader})
    scaling: dict[str, Any] = (
        {"autoscaling_config": opts.autoscaling_config()} if opts.autoscaling else {"num_replicas": opts.replicas}
    )
    return serve.deployment(
        ModelHost,
        name="ModelHost",
        # Queueing is the manager's job (gateway.max_queue): Ray must not hold requests back.
        max_ongoing_requests=registry.gateway.max_queue + 64,
        # The work happens in the backends the manager starts; the replica itself only relays.
        ray_actor_options={"num_cpus": 0, "num_gpus": opts.gpus_per_replica},
        graceful_shutdown_timeout_s=registry.gateway.stop_grace_s + 15,  # manager.shutdown(): stop, no drain
        **scaling,
    )
