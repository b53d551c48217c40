"""`vlmswap config check|show|schema`."""

from __future__ import annotations

import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from vlmswap.i18n import N_, tr, translate_text
from vlmswap.registry.availability import unavailable_reason
from vlmswap.registry.config import ConfigError, json_schema, load_registry

config_app = typer.Typer(help="Validate and show model registries.", no_args_is_help=True)


@config_app.command("check")
def check(files: list[Path] = typer.Argument(..., help="Registry YAML files to validate.")) -> None:
    """Validate registry files; print each error with its path in the file; exit 2 on any."""
    failed = False
    for f in files:
        try:
            reg = load_registry(f)
        except ConfigError as exc:
            failed = True
            for line in exc.errors:
                typer.echo(f"{f}: {line}", err=True)
            continue
        typer.echo(f"{f}: " + tr("ok ({n} models)", n=len(reg.models)))
    raise typer.Exit(2 if failed else 0)


@config_app.command("show")
def show(
    file: Path | None = typer.Argument(None, help="Registry file; default: the one shipped."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """Print the effective registry, marking each model that cannot run on this machine and why."""
    try:
        reg = load_registry(file)
    except ConfigError as exc:
        for line in exc.errors:
            typer.echo(f"{exc.source}: {line}", err=True)
        raise typer.Exit(2) from None
    from vlmswap import gpu

    gpu_present = gpu.probe().available
    # Side by side: a model whose files are missing asks the hub for its size (bounded wait each).
    with ThreadPoolExecutor(max_workers=8) as pool:
        reasons = list(pool.map(lambda spec: unavailable_reason(spec, gpu_present), reg.models.values()))
    rows: list[dict[str, Any]] = []
    for (name, spec), reason in zip(reg.models.items(), reasons):
        rows.append(
            {
                "name": name,
                "served_name": spec.served_name,
                "backend": spec.backend,
                "family": spec.family,
                "capabilities": spec.capabilities,
                "vram_gb": spec.vram_gb,
                "port": spec.port,
                "unavailable": reason,
            }
        )
    if as_json:
        typer.echo(json.dumps({"gateway": reg.gateway.model_dump(), "models": rows}, indent=2))
        return
    table = Table(title=tr("vlmswap registry ({file})", file=file or tr("default")))
    for col in (N_("name"), N_("served name"), N_("family"), N_("can do"), N_("GB"), N_("port"), N_("runs here?")):
        table.add_column(tr(col), overflow="fold")
    for r in rows:
        table.add_row(
            r["name"],
            r["served_name"],
            f"{r['family']} ({r['backend']})",
            ",".join(r["capabilities"]),
            f"{r['vram_gb']:.1f}",
            str(r["port"] or tr("auto")),
            f"[green]{tr('yes')}[/]"
            if r["unavailable"] is None
            else f"[red]{tr('no')}: {translate_text(r['unavailable'])}[/]",
        )
    Console(width=None if sys.stdout.isatty() else 140).print(table)  # pipes: no 80-column squeeze


@config_app.command("schema")
def schema() -> None:
    """Print the JSON Schema of the registry file."""
    typer.echo(json.dumps(json_schema(), indent=2))


def register(app: typer.Typer) -> None:
    app.add_typer(config_app, name="config")
