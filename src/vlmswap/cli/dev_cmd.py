"""`vlmswap dev ...`: helpers for developing and testing vlmswap itself."""

from __future__ import annotations

from pathlib import Path

import typer

dev_app = typer.Typer(help="Developer helpers (test models).", no_args_is_help=True)


@dev_app.command("make-tiny-model")
def make_tiny_model(
    out_dir: Path = typer.Argument(..., help="Folder to write the checkpoint into (created if missing)."),
    seed: int = typer.Option(0, help="Random seed of the weights: same seed, same model."),
    arch: str = typer.Option("qwen2-vl", help="Architecture: qwen2-vl, or smolvlm (Idefics3, as SmolVLM-Instruct)."),
) -> None:
    """Build a tiny random-weight checkpoint locally (no download), for tests and demos.

    Serve it with `vlmswap worker --engine transformers --model DIR`.
    """
    if arch not in ("qwen2-vl", "smolvlm"):
        typer.echo(f"--arch {arch}: must be qwen2-vl or smolvlm", err=True)
        raise typer.Exit(2)
    if out_dir.exists() and not out_dir.is_dir():
        typer.echo(f"{out_dir}: exists and is not a folder", err=True)
        raise typer.Exit(2)
    try:
        from vlmswap.devmodels import make_tiny_idefics3, make_tiny_qwen2vl
    except ImportError as exc:  # pragma: no cover - depends on the install
        typer.echo(f"{out_dir}: needs the transformers extra (pip install 'vlmswap[transformers]'): {exc}", err=True)
        raise typer.Exit(2) from None
    if arch == "smolvlm":
        path = make_tiny_idefics3(out_dir, seed=seed)
        typer.echo(f"tiny Idefics3 (SmolVLM) written to {path}")
    else:
        path = make_tiny_qwen2vl(out_dir, seed=seed)
        typer.echo(f"tiny Qwen2-VL written to {path}")


def register(app: typer.Typer) -> None:
    app.add_typer(dev_app, name="dev")
