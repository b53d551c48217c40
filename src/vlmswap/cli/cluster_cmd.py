"""`vlmswap cluster serve`: the gateway's API in front of several GPUs or machines, on Ray Serve.

Ray is an extra (`pip install "vlmswap[ray]"`); it is imported only inside the command.
Without `--address` the command starts a local Ray and stops it on exit; with one it joins
a running cluster and, on exit, deletes only its own application.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

import typer

from vlmswap.cli.common import is_loopback

DELETE_SLACK_S = 45.0  # beyond gateway.stop_grace_s: Serve's graceful wait, replica shutdown, Serve itself

cluster_app = typer.Typer(
    help="Several GPUs or machines behind one API, on Ray Serve (extra: vlmswap[ray]).", no_args_is_help=True
)


def fail(message: str, code: int = 2) -> None:
    typer.echo(f"vlmswap: {message}", err=True)
    raise typer.Exit(code)


@cluster_app.command("serve")
def serve_cmd(
    config: Path | None = typer.Option(
        None, "--config", "-c", help="Registry YAML (default: the shipped one); every replica runs it."
    ),
    replicas: int = typer.Option(1, min=1, help="Model host replicas (one GPU each, see --gpus-per-replica)."),
    port: int = typer.Option(8080, help="Port of the cluster's HTTP entry (Ray Serve's proxy)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; non-loopback needs --api-key or --insecure."),
    address: str | None = typer.Option(
        None, help="Join this Ray cluster (e.g. 10.0.0.1:6379 or auto) instead of starting a local one."
    ),
    gpus_per_replica: float = typer.Option(
        1.0, min=0.0, help="GPUs each replica holds (0: the embedded engine, tests)."
    ),
    num_gpus: int | None = typer.Option(
        None, min=0, help="Local Ray only: GPUs it declares (default: those it detects)."
    ),
    models_per_replica: int = typer.Option(
        1, min=1, help="Models Ray routes to one replica before it evicts the least recently used (awake plus asleep)."
    ),
    api_key: str | None = typer.Option(
        None, envvar="VLMSWAP_API_KEY", help="Require `Authorization: Bearer KEY` on every route but /health."
    ),
    insecure: bool = typer.Option(False, help="Allow a non-loopback address without an API key."),
    min_replicas: int | None = typer.Option(None, min=0, help="Autoscaling: fewest replicas (with --max-replicas)."),
    max_replicas: int | None = typer.Option(
        None, min=1, help="Autoscaling on queue length, up to this many replicas (each new one cold-starts its model)."
    ),
    target_ongoing_requests: float = typer.Option(
        2.0, min=0.1, help="Autoscaling: requests in flight or queued per replica that Ray aims for."
    ),
    upscale_delay_s: float | None = typer.Option(
        None, min=0.0, help="Autoscaling: how long the load must stay high before a replica is added (Ray: 30)."
    ),
    downscale_delay_s: float | None = typer.Option(
        None, min=0.0, help="Autoscaling: how long the load must stay low before a replica goes (Ray: 600)."
    ),
    look_back_period_s: float | None = typer.Option(
        None, min=0.1, help="Autoscaling: the window Ray averages the ongoing requests over (Ray: 30)."
    ),
    state_dir: Path | None = typer.Option(
        None, envvar="VLMSWAP_STATE_DIR", help="Base of the replicas' state dirs (pid files, per replica slot)."
    ),
    dashboard: bool = typer.Option(True, help="Local Ray only: start Ray's dashboard (port 8265)."),
) -> None:
    """Serve the registry from N replicas on Ray Serve, each request sent to a replica holding its model.

    Each replica runs vlmswap's own manager (one awake model, the same switching and safety
    rules as `vlmswap serve`) on its own GPU. Ctrl-C or SIGTERM deletes the application (every
    replica stops its backends) and stops a local Ray this command started.
    """
    from vlmswap.registry.config import ConfigError, load_registry

    try:
        registry = load_registry(config)
    except ConfigError as exc:
        fail(str(exc))
    if not is_loopback(host) and not api_key and not insecure:
        fail(
            f"refusing to bind {host} without an API key: pass --api-key (or VLMSWAP_API_KEY), "
            f"or --insecure to accept anyone on the network"
        )
    if (min_replicas is not None) and max_replicas is None:
        fail("--min-replicas needs --max-replicas (autoscaling)")
    if max_replicas is not None and min_replicas is not None and min_replicas > max_replicas:
        fail(f"--min-replicas {min_replicas} is above --max-replicas {max_replicas}")
    knobs = {
        "--upscale-delay-s": upscale_delay_s,
        "--downscale-delay-s": downscale_delay_s,
        "--look-back-period-s": look_back_period_s,
    }
    given = [flag for flag, value in knobs.items() if value is not None]
    if given and max_replicas is None:
        fail(f"{', '.join(given)} needs --max-replicas (autoscaling)")
    from vlmswap.backends.base import port_in_use

    if not address and port_in_use(port, host):  # before a local Ray spends seconds starting
        fail(f"--port {port}: {host}:{port} is already in use")
    try:
        import ray
        from ray import serve
    except ImportError:
        fail('Ray is not installed: pip install "vlmswap[ray]"', 1)

    from vlmswap.cluster.deployments import APP_NAME, ClusterOptions, build_app

    logging.basicConfig(level=logging.WARNING, format="vlmswap: %(message)s", stream=sys.stderr)
    opts = ClusterOptions(
        registry=registry.model_dump(mode="json"),
        replicas=replicas,
        gpus_per_replica=gpus_per_replica,
        models_per_replica=models_per_replica,
        api_key=api_key,
        min_replicas=min_replicas,
        max_replicas=max_replicas,
        target_ongoing_requests=target_ongoing_requests,
        upscale_delay_s=upscale_delay_s,
        downscale_delay_s=downscale_delay_s,
        look_back_period_s=look_back_period_s,
        state_dir=str(state_dir) if state_dir else None,
    )
    init: dict[str, Any] = (
        {"address": address}
        if address
        else {
            "num_cpus": os.cpu_count() or 2,
            "include_dashboard": dashboard,
            **({"num_gpus": num_gpus} if num_gpus is not None else {}),
        }
    )
    ray.init(namespace="vlmswap", logging_level=logging.WARNING, **init)
    # After ray.init, which installs a SIGTERM handler of its own that aborts the process.
    stop = threading.Event()

    def on_signal(*_: Any) -> None:
        if stop.is_set():  # a second Ctrl-C: give up on a clean stop
            typer.echo("vlmswap cluster: stopping now, without waiting for the replicas", err=True)
            os._exit(130)
        stop.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    failed: Exception | None = None
    try:
        serve.start(http_options={"host": host, "port": port}, logging_config={"log_level": "WARNING"})
        count = replicas if max_replicas is None else f"{min_replicas or 1}-{max_replicas}"
        where = f"joined {address}" if address else "local"
        typer.echo(f"vlmswap cluster: starting {count} replica(s) on Ray ({where})", err=True)
        serve.run(build_app(opts), name=APP_NAME, route_prefix="/", logging_config={"log_level": "WARNING"})
        typer.echo(f"vlmswap cluster on http://{host}:{port} ({len(registry.models)} models)", err=True)
        while not stop.wait(0.5):
            pass
    except Exception as exc:  # Serve's proxy cannot bind, a replica fails to start, ...
        failed = exc
    finally:
        typer.echo("vlmswap cluster: stopping (every replica stops its backends)", err=True)
        # Bounded: with Ray's own processes gone (a signal to the whole process group), delete waits forever.
        deleting = threading.Thread(target=_delete, args=(serve, APP_NAME, not address), daemon=True)
        deleting.start()
        deleting.join(registry.gateway.stop_grace_s + DELETE_SLACK_S)
        if deleting.is_alive():
            typer.echo(
                f"vlmswap cluster: Ray did not delete the application within "
                f"{registry.gateway.stop_grace_s + DELETE_SLACK_S:.0f} s; stopping anyway",
                err=True,
            )
        ray.shutdown()
    if failed is not None:
        lines = [line for line in str(failed).splitlines() if line.strip()]
        fail(f"the cluster did not start: {lines[-1].strip() if lines else type(failed).__name__}", 1)


def _delete(serve: Any, app_name: str, shutdown_serve: bool) -> None:
    """Delete the application (each replica stops its backends); then Serve, when we started Ray."""
    with contextlib.suppress(Exception):
        serve.delete(app_name)
        if shutdown_serve:
            serve.shutdown()


def register(app: typer.Typer) -> None:
    app.add_typer(cluster_app, name="cluster")


__all__ = ["register"]
