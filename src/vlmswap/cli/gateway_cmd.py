"""`vlmswap serve`, `status`, `switch`, `unload`: the gateway and its admin API from a shell."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sys
from pathlib import Path
from typing import Any

import typer

from vlmswap.cli import logformat
from vlmswap.cli.common import DEFAULT_GATEWAY, GATEWAY_HELP, fail, gateway_client, is_loopback
from vlmswap.cli.logformat import LogFormat
from vlmswap.i18n import N_, num, tr, translate_text
from vlmswap.swap.states import ModelState, Phase


def register(app: typer.Typer) -> None:
    @app.command("serve")
    def serve(
        config: Path | None = typer.Option(None, "--config", "-c", help="Registry YAML (default: the shipped one)."),
        host: str = typer.Option("127.0.0.1", help="Address to bind; non-loopback needs --api-key or --insecure."),
        port: int = typer.Option(8080, help="Port to bind."),
        preload: str | None = typer.Option(None, help="Model to load at start (registry name, served name or alias)."),
        api_key: str | None = typer.Option(
            None, envvar="VLMSWAP_API_KEY", help="Require `Authorization: Bearer KEY` on every route but /health."
        ),
        insecure: bool = typer.Option(False, help="Allow a non-loopback address without an API key."),
        grouping: bool = typer.Option(True, help="Group queued requests by model (off: first come, first served)."),
        log_level: str = typer.Option("warning", help="uvicorn log level."),
        log_format: LogFormat = typer.Option(
            LogFormat.text,
            "--log-format",
            help="text, or json: one JSON object a line on stderr (time, level, logger, message) for log collectors.",
        ),
    ) -> None:
        """Run the gateway: one resident model at a time, switched on demand, OpenAI API in front.

        Ctrl-C or SIGTERM stops every backend it started. Backends an earlier gateway left
        running are stopped at start, and said so.
        """
        from vlmswap.registry.config import ConfigError, load_registry

        try:
            registry = load_registry(config)
        except ConfigError as exc:
            fail(str(exc), 2)
        if preload is not None and registry.resolve(preload) is None:
            fail(f"--preload {preload}: unknown model (known: {', '.join(registry.known_ids())})", 2)
        if not is_loopback(host) and not api_key and not registry.profiles and not insecure:
            fail(
                f"refusing to bind {host} without an API key: pass --api-key (or VLMSWAP_API_KEY), "
                f"define `profiles:` in the registry, or --insecure to accept anyone on the network",
                2,
            )
        import uvicorn

        from vlmswap.gateway import create_app
        from vlmswap.swap.manager import Manager

        uvicorn_log_config = logformat.configure(log_format)
        manager = Manager(registry, grouping=grouping)
        app_ = create_app(manager, api_key=api_key, preload=preload)
        started = (
            f"vlmswap gateway on http://{host}:{port} ({len(registry.models)} models; state in {manager.state_dir})"
        )
        if log_format is LogFormat.json:
            logging.getLogger("vlmswap.gateway").info(
                started,
                extra={
                    "url": f"http://{host}:{port}",
                    "models": len(registry.models),
                    "state_dir": str(manager.state_dir),
                },
            )
        else:
            typer.echo(started, err=True)

        class _Server(uvicorn.Server):
            def handle_exit(self, sig: int, frame: Any) -> None:
                # Answer queued requests (503) before uvicorn's graceful wait, which then
                # covers only requests in flight; on the loop, not inside the signal handler.
                with contextlib.suppress(RuntimeError):
                    asyncio.get_running_loop().call_soon_threadsafe(manager.stop_admitting)
                super().handle_exit(sig, frame)

        _Server(
            uvicorn.Config(
                app_,
                host=host,
                port=port,
                log_level=log_level,
                access_log=False,
                log_config=uvicorn_log_config,
                timeout_graceful_shutdown=5,
                lifespan="on",
            )
        ).run()

    @app.command("status")
    def status(
        gateway: str = typer.Option(DEFAULT_GATEWAY, envvar="VLMSWAP_GATEWAY", help=GATEWAY_HELP),
        api_key: str | None = typer.Option(None, envvar="VLMSWAP_API_KEY", help="API key of the gateway."),
        as_json: bool = typer.Option(False, "--json", help="Print /api/status as JSON."),
    ) -> None:
        """Show the resident model, every model's state, the queue and the GPU."""
        from vlmswap.client import GatewayError

        try:
            st = gateway_client(gateway, api_key).status()
        except GatewayError as exc:
            fail(exc.message)
        if as_json:
            typer.echo(json.dumps(st, indent=2))
            return
        _print_status(st)

    @app.command("stats")
    def stats(
        gateway: str = typer.Option(DEFAULT_GATEWAY, envvar="VLMSWAP_GATEWAY", help=GATEWAY_HELP),
        api_key: str | None = typer.Option(None, envvar="VLMSWAP_API_KEY", help="API key of the gateway."),
        as_json: bool = typer.Option(False, "--json", help="Print each model's stats as JSON."),
    ) -> None:
        """What the gateway has learned per model: cold start, wake, peak VRAM, RAM asleep (medians)."""
        from vlmswap.client import GatewayError

        try:
            st = gateway_client(gateway, api_key).status()
        except GatewayError as exc:
            fail(exc.message)
        learned = {name: m.get("stats") or {} for name, m in st.get("models", {}).items()}
        if as_json:
            typer.echo(json.dumps(learned, indent=2))
            return
        _print_stats(learned)

    @app.command("switch")
    def switch(
        name: str = typer.Argument(..., help="Model to make resident."),
        gateway: str = typer.Option(DEFAULT_GATEWAY, envvar="VLMSWAP_GATEWAY", help=GATEWAY_HELP),
        api_key: str | None = typer.Option(None, envvar="VLMSWAP_API_KEY", help="API key of the gateway."),
        timeout: float = typer.Option(900.0, help="Give up after this many seconds."),
    ) -> None:
        """Switch to NAME, showing each phase; exit 1 with the backend's last log lines if it fails."""
        from rich.console import Console
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        from vlmswap.client import GatewayError, SwitchError

        console = Console(stderr=True)
        client = gateway_client(gateway, api_key)
        phases = [str(p) for p in Phase if p != Phase.FAILED]
        with Progress(
            SpinnerColumn(),
            TextColumn("[bold]{task.fields[phase]:<13}"),
            TextColumn("{task.description}"),
            TimeElapsedColumn(),
            console=console,
            transient=False,
        ) as bar:
            task = bar.add_task(tr("switching to {name}", name=name), total=len(phases), phase="requested")

            def on_progress(ev: dict[str, Any]) -> None:
                phase = ev.get("phase") or ev.get("state") or ""
                done = phases.index(phase) + 1 if phase in phases else None
                msg = translate_text(str(ev.get("message") or "").splitlines()[0])[:100] if ev.get("message") else ""
                eta, elapsed = ev.get("eta_s"), ev.get("elapsed_s")
                if eta is not None and elapsed is not None and phase != Phase.READY:
                    msg = f"{msg} " + tr("(about {n} s left)", n=f"{max(0.0, eta - elapsed):.0f}")
                # With a learned ETA the bar is time (elapsed of expected); without one, phases done.
                where = (
                    {"total": eta, "completed": min(elapsed, eta)}
                    if eta and elapsed is not None
                    else {"total": len(phases), **({"completed": done} if done else {})}
                )
                bar.update(task, phase=phase, description=msg or tr("switching to {name}", name=name), **where)
                if not console.is_terminal:  # a log, not a live bar: one line per event
                    elapsed = ev.get("elapsed_s")
                    console.print(
                        f"{phase:<13} {f'{elapsed:6.2f} s' if elapsed is not None else '':>8}  {msg}",
                        markup=False,
                        highlight=False,
                    )

            try:
                st = client.switch(name, on_progress=on_progress, timeout=timeout)
            except SwitchError as exc:
                bar.stop()
                console.print(f"[red]{tr('failed:')}[/red] {exc.message}")
                if exc.log_tail and "--- last log lines ---" not in exc.message:
                    console.print(tr("--- last log lines ---"))
                    for line in exc.log_tail:
                        console.print(line, markup=False, highlight=False)
                raise typer.Exit(1) from None
            except GatewayError as exc:
                bar.stop()
                fail(exc.message)
            bar.update(task, phase=Phase.READY, total=1, completed=1)
        resident = st.get("resident")
        m = (st["models"].get(resident) or {}) if resident else {}
        woke, start = m.get("last_wake_s"), m.get("last_start_s")
        how = (
            " " + tr("(woken in {seconds} s)", seconds=num(woke, 2))
            if woke and m.get("wakes")
            else " " + tr("(started in {seconds} s)", seconds=num(start, 2))
            if start
            else ""
        )
        typer.echo(tr("{name} is ready", name=resident) + how)

    @app.command("sleep")
    def sleep(
        name: str = typer.Argument(..., help="The awake model to put to sleep."),
        gateway: str = typer.Option(DEFAULT_GATEWAY, envvar="VLMSWAP_GATEWAY", help=GATEWAY_HELP),
        api_key: str | None = typer.Option(None, envvar="VLMSWAP_API_KEY", help="API key of the gateway."),
    ) -> None:
        """Put NAME to sleep (weights to host RAM), freeing the GPU; the next request wakes it."""
        from vlmswap.client import GatewayError

        try:
            res = gateway_client(gateway, api_key).sleep(name)
        except GatewayError as exc:
            fail(exc.message)
        done = res.get("message") or tr("nothing to do")
        typer.echo(tr("putting {name} to sleep", name=res["model"]) if res.get("sleeping") else done)

    @app.command("unload")
    def unload(
        gateway: str = typer.Option(DEFAULT_GATEWAY, envvar="VLMSWAP_GATEWAY", help=GATEWAY_HELP),
        api_key: str | None = typer.Option(None, envvar="VLMSWAP_API_KEY", help="API key of the gateway."),
    ) -> None:
        """Stop the awake model (after its requests in flight) and every sleeper, freeing the GPU and
        the host RAM they hold."""
        from vlmswap.client import GatewayError

        try:
            res = gateway_client(gateway, api_key).unload()
        except GatewayError as exc:
            fail(exc.message)
        if res.get("unloading"):
            names = ([res["model"]] if res.get("model") else []) + list(res.get("sleepers") or [])
            typer.echo(tr("unloading {names}", names=", ".join(names)))
        else:
            typer.echo(res.get("message") or tr("nothing to unload"))


STAT_COLUMNS = (  # key, header (through tr()), digits, unit (through tr()), scale
    ("cold_start_s", N_("cold start"), 2, N_("s"), 1.0),
    ("wake_s", N_("wake"), 3, N_("s"), 1.0),
    ("peak_vram_bytes", N_("peak VRAM"), 2, N_("GiB"), 1024**-3),
    ("sleep_ram_bytes", N_("RAM asleep"), 2, N_("GiB"), 1024**-3),
)


def _print_stats(learned: dict[str, dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)
    t = Table(show_edge=False, title=tr("learned per model: median (samples)"))
    t.add_column(tr("model"))
    for _, label, _, _, _ in STAT_COLUMNS:
        t.add_column(tr(label))
    for name, st in learned.items():
        cells = []
        for key, _, digits, unit, scale in STAT_COLUMNS:
            v = st.get(key)
            cells.append(f"{num(v['median'] * scale, digits)} {tr(unit)} ({v['count']})" if v else "-")
        t.add_row(name, *cells)
    console.print(t)


def _print_status(st: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 140)  # pipes: no 80-column squeeze
    g = st.get("gpu") or {}
    gib = 1024**3
    if g.get("available"):
        vendor = f" ({str(g['vendor']).upper()})" if g.get("vendor") else ""  # gpu.Vendor.label
        used = tr("{used} / {total} GiB used", used=num(g["used_bytes"] / gib), total=num(g["total_bytes"] / gib))
        gpu = f"{vendor}: {g['name']}: {used}"
    else:
        gpu = f": {translate_text(g.get('reason') or 'no GPU found: CPU only')}"
    sw = st.get("switch")
    console.print(
        tr(
            "resident: [bold]{resident}[/bold]   queue: {queue}   in flight: {in_flight}   switches: {switches}",
            resident=st.get("resident") or "-",
            queue=st.get("queue_length", 0),
            in_flight=st.get("in_flight", 0),
            switches=st.get("switches", 0),
        )
    )
    pool = st.get("pool") or {}
    if pool:
        limit = ", " + tr("at most {n}", n=pool["max_sleeping"]) if pool.get("max_sleeping") is not None else ""
        console.print(
            tr(
                "sleeping pool: {n} asleep, {used} / {budget} GiB host RAM",
                n=pool.get("count", 0),
                used=num(pool.get("ram_bytes", 0) / gib, 2),
                budget=num(pool.get("ram_budget_bytes", 0) / gib),
            )
            + limit
        )
    for name, kept in (pool.get("kept") or {}).items():
        console.print("  " + tr("{name} kept: {why}", name=name, why=kept["why"]), markup=False, highlight=False)
    predicted = [p for p in st.get("predicted") or [] if p.get("why") and "no history" not in p["why"]]
    if predicted:
        horizon = st.get("prediction_horizon_s")
        shown = ", ".join(f"{p['model']} {p['chance']:.0%}" for p in predicted[:3])
        line = (
            tr("next (chance of a request within {seconds} s): {models}", seconds=f"{horizon:g}", models=shown)
            if horizon
            else tr("next (chance of a request): {models}", models=shown)
        )
        console.print(line, markup=False, highlight=False)
    staging = st.get("staging") or {}
    if staging.get("staged") or any((staging.get("loads") or {}).values()):
        loads, taken = staging.get("loads") or {}, staging.get("used") or {}
        now = ", ".join(f"{m} ({k})" for m, k in (staging.get("staged") or {}).items()) or tr("nothing")
        console.print(
            tr(
                "staged: {now}; {loads} staged loads so far, {used} used",
                now=now,
                loads=sum(loads.values()),
                used=sum(taken.values()),
            )
        )
    if sw:
        console.print(
            tr(
                "switch: to {target} ({phase}, {seconds} s)",
                target=sw["target"],
                phase=sw["phase"],
                seconds=num(sw["elapsed_s"]),
            )
        )
    console.print(f"{tr('GPU')}{gpu}", markup=False, highlight=False)
    t = Table(show_edge=False)
    for col in (
        N_("model"),
        N_("served name"),
        N_("state"),
        N_("in flight"),
        N_("queued"),
        N_("last start"),
        N_("last wake"),
        N_("RAM asleep"),
        N_("note"),
    ):
        t.add_column(tr(col))
    colors = {
        ModelState.READY: "green",
        ModelState.STARTING: "yellow",
        ModelState.WAKING: "yellow",
        ModelState.STOPPING: "yellow",
        ModelState.SLEEPING: "blue",
        ModelState.FAILED: "red",
    }
    for name, m in st.get("models", {}).items():
        note = (
            m.get("last_error") if m.get("state") == ModelState.FAILED else translate_text(m.get("unavailable") or "")
        )
        note = (note or "").splitlines()[0][:60] if note else ""
        state = m.get("state", "?")
        ram = m.get("sleep_ram_bytes")
        t.add_row(
            name,
            m.get("served_name", ""),
            f"[{colors.get(state, 'white')}]{tr(state)}[/]",  # the states' words: ui/view.py STATE_LABELS
            str(m.get("in_flight", 0)),
            str(m.get("queued", 0)),
            f"{num(m['last_start_s'])} {tr('s')}" if m.get("last_start_s") else "-",
            f"{num(m['last_wake_s'], 2)} {tr('s')}" if m.get("last_wake_s") else "-",
            f"{num(ram / gib, 2)} {tr('GiB')}" if ram is not None else "-",
            note,
        )
    console.print(t)


__all__ = ["register"]
