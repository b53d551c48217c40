"""One call from the ingress to a replica: routed by model, its answer's head first, failures named.

The ingress's routes and the document jobs' pages (`cluster/jobs.py`) both reach replicas
through `open_call`, so both are routed alike (Ray's multiplexing: a replica that holds the
model) and a dead replica reads alike (`replica_failed`, a 502).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from vlmswap.api.errors import APIError, error_body
from vlmswap.cluster.asgi_call import Call, Head

log = logging.getLogger("vlmswap.cluster")


def replica_failed(exc: BaseException) -> dict[str, Any]:
    return error_body(
        502, f"the replica serving the request failed: {type(exc).__name__}: {str(exc)[:300]}", code="replica_failed"
    )


class ReplicaFailed(Exception):
    """The replica handling a call died or could not be reached before it answered."""

    def __init__(self, cause: BaseException):
        super().__init__(str(cause))
        self.body = replica_failed(cause)


async def open_call(host: Any, req: Call, name: str) -> tuple[Head, Any]:
    """`req` to a replica that holds `name` (or will, Ray's multiplexing decides): the answer's
    head, and the stream of its body chunks (cancel it when done). ReplicaFailed before a head."""
    gen = host.options(stream=True, multiplexed_model_id=name).handle.remote(req)
    try:
        head = await gen.__anext__()
        assert isinstance(head, Head)
    except (APIError, asyncio.CancelledError):
        gen.cancel()
        raise
    except Exception as exc:  # RayActorError, ActorDiedError, a lost connection to the replica
        gen.cancel()
        log.warning("replica failed during %s %s: %s", req.method, req.path, exc)
        raise ReplicaFailed(exc) from exc
    return head, gen


__all__ = ["ReplicaFailed", "open_call", "replica_failed"]
