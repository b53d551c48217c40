"""`vlmswap pull NAME...`: fetch registry models' checkpoints into the local Hugging Face cache.

On this machine, before the gateway needs them, so a switch starts from the cache instead of
downloading gigabytes inside it. Every name is checked before anything downloads.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from vlmswap.cli.common import fail
from vlmswap.i18n import tr

if TYPE_CHECKING:
    from vlmswap.registry.hub import Source


def register(app: typer.Typer) -> None:
    @app.command("pull")
    def pull(
        names: list[str] = typer.Argument(..., help="Models to fetch (registry name, served name or alias)."),
        config: Path | None = typer.Option(None, "--config", "-c", help="Registry YAML (default: the shipped one)."),
    ) -> None:
        """Download models' files from the Hugging Face Hub into the local cache, with progress.

        Only what a server needs (configs, tokenizer, remote code, weights), into $HF_HUB_CACHE
        (default ~/.cache/huggingface/hub); HF_TOKEN and HF_ENDPOINT are honoured. Files already
        there are skipped and a large file's partial bytes are kept, so a stopped pull (Ctrl-C)
        continues where it left off. Exit 2 for an unknown model or one with nothing to
        download, 1 when a download fails, 130 when interrupted.
        """
        from vlmswap.registry.config import ConfigError, load_registry
        from vlmswap.registry.hub import PullError, pullable

        try:
            registry = load_registry(config)
        except ConfigError as exc:
            fail(str(exc), 2)
        plan: list[tuple[str, Source]] = []
        for name in names:
            real = registry.resolve(name)
            if real is None:
                fail(f"{name}: " + tr("unknown model (known: {ids})", ids=", ".join(registry.known_ids())), 2)
            try:
                plan.append((real, pullable(registry.models[real])))
            except PullError as exc:
                fail(f"{name}: {exc}", 2)
        failed = 0
        for real, src in plan:
            try:
                _pull_one(real, src)
            except PullError as exc:
                typer.echo(f"vlmswap: {real}: {exc}", err=True)
                failed += 1
            except KeyboardInterrupt:
                typer.echo(
                    f"vlmswap: {real}: "
                    + tr(
                        "interrupted; the files finished so far are kept, `vlmswap pull {name}` fetches the rest",
                        name=real,
                    ),
                    err=True,
                )
                raise typer.Exit(130) from None
        raise typer.Exit(1 if failed else 0)


def _pull_one(name: str, src: Source) -> None:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from vlmswap.registry.download import Progress as Step
    from vlmswap.registry.download import pull
    from vlmswap.registry.hub import fmt_size

    console = Console(stderr=True)
    live = console.is_terminal
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[file]}"),
        console=console,
        disable=not live,
    ) as bar:
        task = bar.add_task(name, total=None, file="")
        last_file = {"done": -1}

        def on_progress(p: Step) -> None:
            bar.update(
                task,
                total=p.total_bytes,
                completed=p.downloaded_bytes,
                file=f"{p.files_done}/{p.files_total} {p.file}".rstrip(),
            )
            if not live and p.files_total and p.files_done != last_file["done"]:  # a log: a line per file
                last_file["done"] = p.files_done
                console.print(
                    f"{name}: "
                    + tr(
                        "{done}/{total} files, {got} of {size}",
                        done=p.files_done,
                        total=p.files_total,
                        got=fmt_size(p.downloaded_bytes),
                        size=fmt_size(p.total_bytes),
                    ),
                    markup=False,
                    highlight=False,
                )

        folder = pull(src, on_progress)
    print(f"{name}: " + tr("{repo} is in {folder}", repo=src.repo, folder=folder), file=sys.stdout)
