"""`vlmswap simulate` and `vlmswap trace generate`: replay a request trace on the real scheduler."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from vlmswap.cli.common import fail

POLICIES = ("lru", "predictive", "oracle")
GIB = 1024**3

trace_app = typer.Typer(help="Request traces for `vlmswap simulate`.", no_args_is_help=True)


@trace_app.command("generate")
def generate(
    kind: str = typer.Argument(..., help="bursty-groups, diurnal, documents-chat or sessions."),
    seed: int = typer.Option(1, help="The same seed gives the same trace."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Write here instead of to stdout."),
    models: str | None = typer.Option(
        None, help="Five model ids for the roles, comma-separated (default: the default registry's names)."
    ),
) -> None:
    """Write a synthetic trace (JSON Lines, one request a line) from a seed."""
    from vlmswap.swap import traces

    try:
        reqs = traces.generate(kind, seed, models.split(",") if models else None)
    except ValueError as exc:
        fail(str(exc), 2)
    text = traces.dumps(reqs)
    if out is None:
        sys.stdout.write(text)
        return
    out.write_text(text, encoding="utf-8")
    typer.echo(f"{out}: {len(reqs)} requests over {(reqs[-1].t - reqs[0].t) / 3600:.1f} h", err=True)


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")

    @app.command("simulate")
    def simulate(
        trace: Path = typer.Option(..., "--trace", "-t", help='JSON Lines: {"t": s, "model": id, "duration_s": s}.'),
        config: Path | None = typer.Option(None, "--config", "-c", help="Registry YAML (default: the shipped one)."),
        policy: str = typer.Option(
            "lru,predictive",
            help="Pool policies to compare, comma-separated: lru, predictive, oracle (knows the trace: a bound).",
        ),
        as_json: bool = typer.Option(False, "--json", help="One JSON object per policy (a list for several)."),
        state_dir: Path | None = typer.Option(
            None, help="Learned stats to take costs from (default: the gateway's state dir, when it has any)."
        ),
        priors_only: bool = typer.Option(False, "--priors-only", help="Ignore learned stats: the registry's priors."),
        gpu_gb: float | None = typer.Option(
            None, help="Simulate a card of this size seen through NVML (sleepers' residual counted before starts)."
        ),
        ram_gb: float | None = typer.Option(
            None, help="The sleeping pool's host RAM (default: gateway.sleep_ram_budget_gb, else half this machine's)."
        ),
        horizon_s: float | None = typer.Option(None, help="predictive: the horizon (default: predict_horizon_s)."),
    ) -> None:
        """Replay a request trace through the gateway's scheduler, placement and sleeping pool on a virtual clock.

        Costs per model come from the learned stats in the state dir, else the registry's
        expected_start_s / expected_wake_s / expected_sleep_s. Prints cold starts, wakes,
        switches, wait (mean, p95, p99) and GPU busy time per policy, side by side.
        """
        from vlmswap.registry.config import ConfigError, load_registry
        from vlmswap.swap import priors, traces
        from vlmswap.swap.simulator import Options
        from vlmswap.swap.simulator import simulate as run

        try:
            registry = load_registry(config)
        except ConfigError as exc:
            fail(str(exc), 2)
        names = [p.strip() for p in policy.split(",") if p.strip()]
        bad = [p for p in names if p not in POLICIES]
        if bad or not names:
            fail(f"--policy {policy}: unknown policy {', '.join(bad) or '(none)'} (one of {', '.join(POLICIES)})", 2)
        try:
            reqs = traces.read(trace, registry)
        except traces.TraceError as exc:
            fail(str(exc), 2)
        stats = None if priors_only else _learned(state_dir)
        try:
            results = [
                run(
                    registry,
                    reqs,
                    Options(
                        name,  # type: ignore[arg-type]
                        card_bytes=int(gpu_gb * GIB) if gpu_gb else None,
                        ram_budget_bytes=int(ram_gb * GIB) if ram_gb is not None else None,
                        horizon_s=horizon_s,
                    ),
                    stats,
                )
                for name in names
            ]
        finally:
            if stats is not None:
                stats.close()
        out = [r.to_json() for r in results]
        if as_json:
            typer.echo(json.dumps(out[0] if len(out) == 1 else out, indent=2))
            return
        costs = {n: priors.costs(n, spec, stats) for n, spec in registry.models.items()}
        _print(trace, reqs, results, costs)


def _learned(state_dir: Path | None) -> Any:
    """The gateway's learned stats, read-only in effect; None where there are none (priors then)."""
    from vlmswap.backends.base import state_dir as default_state_dir
    from vlmswap.swap.stats import Stats

    path = (state_dir or default_state_dir()) / "stats.sqlite3"
    if not path.exists():
        return None
    try:
        return Stats(path)
    except Exception:  # unreadable: say nothing here, the costs table shows "declared"/"assumed"
        return None


def _print(trace: Path, reqs: list[Any], results: list[Any], costs: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    used = sorted({r.model for r in reqs})
    span = reqs[-1].t - reqs[0].t
    console.print(f"{trace}: {len(reqs)} requests for {len(used)} models over {span / 3600:.1f} h")
    c = Table(show_edge=False, title="costs per model (learned, else declared, else assumed)")
    for col in ("model", "cold start", "wake", "sleep", "from"):
        c.add_column(col)
    for name in used:
        k = costs[name]
        c.add_row(name, f"{k.start_s:.1f} s", f"{k.wake_s:.2f} s", f"{k.sleep_s:.2f} s", k.source)
    console.print(c)
    t = Table(show_edge=False, title="simulated, side by side")
    t.add_column("")
    for r in results:
        t.add_column(r.policy, justify="right")

    def row(label: str, fmt: Any) -> None:
        t.add_row(label, *(fmt(r) for r in results))

    row("requests", lambda r: str(r.requests))
    row("rejected (queue full)", lambda r: str(r.rejected))
    row("cold starts", lambda r: str(r.cold_starts))
    row("wakes", lambda r: str(r.wakes))
    row("switches", lambda r: str(r.switches))
    row("wait mean", lambda r: f"{r.mean_wait():.2f} s")
    row("wait p95", lambda r: f"{r.wait(95):.2f} s")
    row("wait p99", lambda r: f"{r.wait(99):.2f} s")
    row("GPU busy", lambda r: f"{r.gpu_busy_s / 3600:.2f} h ({r.gpu_busy_s / max(r.end_s, 1e-9):.0%})")
    row("switching", lambda r: f"{r.switching_s / 3600:.2f} h")
    console.print(t)


__all__ = ["register"]
