"""Document jobs in the cluster: the ingress keeps them and runs them; each page goes to a replica.

The ingress runs the single gateway's `JobService` and `/api/jobs` routes unchanged, with its
store in a state dir of its own (`STATE/cluster/APP/ingress/jobs`, on the head node, where the
ingress always runs), so a restarted ingress finds every unfinished job and resumes it. What
differs is the page step, `ReplicaPages`: a page is a chat request routed by model like any
other (to a replica that holds the model), carrying the job owner's profile, so the replica's
`Admission` queues, limits and counts it as that profile's, exactly as one gateway does.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from vlmswap.api.errors import APIError
from vlmswap.cluster.asgi_call import Call
from vlmswap.cluster.forward import ReplicaFailed, open_call
from vlmswap.cluster.options import ClusterOptions, registry_of
from vlmswap.documents.pipeline import answer_text
from vlmswap.gateway.jobs_runner import JobService, NotServed
from vlmswap.registry.config import Registry
from vlmswap.registry.profiles import Identity, Profiles
from vlmswap.swap.events import EventBus

log = logging.getLogger("vlmswap.cluster")
JSON_HEADERS = ((b"content-type", b"application/json"), (b"accept", b"application/json"))
PAGE_PATH = "/v1/chat/completions"


def node_name() -> str:
    import ray

    return f"{socket.gethostname()} ({ray.util.get_node_ip_address()})"


def ingress_state_dir(opts: ClusterOptions, app_name: str) -> Path:
    """The ingress's own state dir, beside the replicas' (`replica-N`) under the cluster's."""
    from vlmswap.backends.base import state_dir as default_state_dir

    base = Path(opts.state_dir) if opts.state_dir else default_state_dir()
    return base / "cluster" / app_name / "ingress"


def service_of(app: Any) -> JobService | None:
    """The ingress app's JobService (None before its lifespan started it)."""
    service: JobService | None = getattr(app.state, "jobs", None)
    return service


def _error(status: int, headers: dict[str, str], content: bytes) -> APIError:
    try:
        err = json.loads(content)["error"]
        message, code = str(err.get("message") or ""), err.get("code")
    except (ValueError, KeyError, TypeError, AttributeError):
        message, code = content[:300].decode(errors="replace"), None
    return APIError(status, message or f"the replica answered {status}", code=code, headers=headers)


class ReplicaPages:
    """A job's page as a chat request of its owner, to a replica Ray routes its model to.

    The request meets that replica's gateway as the owner's (`Call.identity`): its Admission
    applies the profile's models, priority, limits and usage; its scheduler queues, groups and
    switches. 429, and 503 with Retry-After (the gateway's own refusals before a lease: queue
    full, backoff, a replica stopping), are `NotServed`: the page waits and asks again without
    spending a try. A replica that dies under the page is a 502 and spends one.
    """

    def __init__(self, host: Any, registry: Registry):
        self.host = host
        self.registry = registry

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def __call__(self, who: Identity, model: str, body: dict[str, Any], started: Callable[[], None]) -> str:
        data = json.dumps({**body, "model": self.registry.models[model].served_name}).encode()
        started()
        try:
            head, gen = await open_call(self.host, Call("POST", PAGE_PATH, b"", JSON_HEADERS, data, who), model)
            try:
                content = b"".join([c async for c in gen])
            except BaseException:
                gen.cancel()
                raise
        except ReplicaFailed as exc:
            raise APIError(502, exc.body["error"]["message"], code="replica_failed") from None
        except (APIError, NotServed):
            raise
        except Exception as exc:  # the replica died while sending its answer
            raise APIError(502, f"the replica serving the page failed: {exc}", code="replica_failed") from None
        headers = {k.decode().title(): v.decode() for k, v in head.headers if k == b"retry-after"}
        if head.status != 200:
            error = _error(head.status, headers, content)
            if head.status == 429 or (head.status == 503 and "Retry-After" in headers):
                raise NotServed(error)
            raise error
        try:
            return answer_text(json.loads(content))
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            raise APIError(502, "model answered with no chat completion", code="backend_error") from None


def job_service(opts: ClusterOptions, host: Any, store_dir: Path) -> JobService:
    registry = registry_of(opts.registry)
    return JobService(
        registry=registry,
        events=EventBus(),
        profiles=Profiles(registry, opts.api_key),
        pages=ReplicaPages(host, registry),
        store_dir=store_dir,
    )


def lifespan(opts: ClusterOptions) -> Callable[[Any], contextlib.AbstractAsyncContextManager[None]]:
    """The ingress app's lifespan (Ray Serve runs it in the replica): the JobService starts, resumes
    what a dead ingress left unfinished, and stops before the replica goes. Its events also go to
    the Board, so `/api/events` carries `job` events as on one gateway."""

    @contextlib.asynccontextmanager
    async def run(app: Any) -> AsyncIterator[None]:
        from ray import serve

        ctx = serve.get_replica_context()
        host = serve.get_deployment_handle("ModelHost", ctx.app_name)
        board = serve.get_deployment_handle("Board", ctx.app_name)
        service = job_service(opts, host, ingress_state_dir(opts, ctx.app_name) / "jobs")
        node = node_name()
        service.events.add_listener(lambda ev: board.publish.remote("ingress", node, ev))
        await service.start()
        app.state.jobs = service
        try:
            yield
        finally:
            await service.stop()

    return run


__all__ = ["ReplicaPages", "ingress_state_dir", "job_service", "lifespan", "node_name", "service_of"]
