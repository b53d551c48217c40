"""`vlmswap ocr FILE...`: documents in, layout JSON, Markdown, annotated PNGs and ZIPs out.

Without --gateway it runs an in-process manager on the registry (default: the shipped one),
so `vlmswap ocr scan.pdf` works on a laptop without a GPU through the embedded rapidocr
engine. With --gateway each file becomes a document job on the gateway (`cli/jobs_cmd.py`).
A bad file costs one line on stderr (`FILE: reason`) and the rest still run; the exit
code is 2 when any file failed.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import typer

from vlmswap.cli.common import fail_line, ocr_summary, unique_stem

DEFAULT_FORMATS = "json,md,png"


async def _ocr_file(
    src: Any,
    runner: Any,
    *,
    model_name: str,
    spec: Any,
    mode: str,
    formats: list[str],
    out: Path,
    stem: str,
    max_tokens: int | None,
    advance: Any,
) -> tuple[Any, list[Path]]:
    """One opened file through the model; its outputs written under `out`."""
    from vlmswap.documents import export
    from vlmswap.documents.pipeline import ocr_source

    rendered: dict[str, bytes] = {}
    want_images = bool({"png", "md", "zip"} & set(formats))

    async def page_done(result: Any, page_image: Any) -> None:
        if want_images:  # now, while the page image is at hand; it is not kept
            rendered.update(await asyncio.to_thread(export.page_files, result, page_image.image, stem))
        advance()

    doc = await ocr_source(
        src, model_name=model_name, spec=spec, mode=mode, chat=runner.chat, max_tokens=max_tokens, on_page=page_done
    )
    written = []
    for rel, data in export.select(export.bundle(doc, {}, stem, rendered), formats, stem).items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append(path)
    return doc, written


def _serves_jobs(gateway: str, api_key: str | None) -> bool:
    """Whether the gateway has /api/jobs (gateways older than document jobs, and clusters before they ran
    them, do not)."""
    from vlmswap.client import Client, GatewayError

    try:
        Client(gateway, api_key=api_key).jobs(1)
    except GatewayError as exc:
        return exc.status != 404
    return True


async def _run(
    files: list[str],
    *,
    model: str,
    mode: str,
    pages: str | None,
    dpi: float,
    out: Path,
    formats: list[str],
    registry: Path | None,
    max_tokens: int | None,
    gateway: str | None = None,
    api_key: str | None = None,
) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vlmswap.api.errors import APIError
    from vlmswap.documents import export
    from vlmswap.documents.inputs import DocumentError, SourceFile, open_file
    from vlmswap.documents.pipeline import GatewayRunner, LocalRunner
    from vlmswap.registry.config import ConfigError, load_registry

    err = Console(stderr=True)
    try:
        runner: Any = GatewayRunner(gateway, api_key=api_key) if gateway else LocalRunner(load_registry(registry))
        model_name, spec = await runner.resolve(model)
    except ConfigError as exc:
        fail_line(err, f"{exc.source}: {'; '.join(exc.errors)}")
        return 2
    except APIError as exc:
        fail_line(err, f"vlmswap ocr: {exc.message}")
        return 2

    # Every file is checked before any model starts: a bad one costs a line, not a model load.
    failed = 0
    opened: list[SourceFile] = []
    for f in files:
        try:
            opened.append(await asyncio.to_thread(open_file, f, pages=pages, dpi=dpi))
        except DocumentError as exc:
            fail_line(err, str(exc))
            failed += 1

    done_pages = blocks = 0
    flagged: list[str] = []
    written: list[Path] = []
    used: set[str] = set()
    t0 = time.perf_counter()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("pages"),
        TimeElapsedColumn(),
    )
    if opened:
        out.mkdir(parents=True, exist_ok=True)  # noqa: ASYNC240 - once, before any page is read
        with Progress(*columns, console=err) as progress:
            task = progress.add_task(model_name, total=sum(len(s.selected) for s in opened))
            async with runner:
                for src in opened:
                    progress.update(task, description=Path(src.path).name)
                    try:
                        doc, paths = await _ocr_file(
                            src,
                            runner,
                            model_name=model_name,
                            spec=spec,
                            mode=mode,
                            formats=formats,
                            out=out,
                            stem=unique_stem(export.source_stem(src.path), used),
                            max_tokens=max_tokens,
                            advance=lambda: progress.advance(task),
                        )
                    except DocumentError as exc:  # a PDF page that fails to render
                        fail_line(progress.console, str(exc))
                        failed += 1
                        continue
                    except APIError as exc:  # the model failed to start or to answer
                        fail_line(progress.console, f"{src.path}: {exc.message}")
                        failed += 1
                        continue
                    finally:
                        src.close()
                    written += paths
                    done_pages += len(doc.pages)
                    blocks += sum(len(p.blocks) for p in doc.pages)
                    flagged += [f"{Path(src.path).name}:{n}" for n in doc.flagged_pages]
    Console(stderr=True, soft_wrap=True).print(
        ocr_summary(len(files), failed, done_pages, blocks, time.perf_counter() - t0, flagged)
    )
    if written:
        print(f"wrote {len(written)} files to {out}", file=sys.stderr)
    return 2 if failed else 0


def register(app: typer.Typer) -> None:
    @app.command("ocr")
    def ocr(
        files: list[str] = typer.Argument(
            ...,
            help="Images (PNG, JPEG, WebP, TIFF incl. multi-page) and PDFs; "
            "the kind is read from the bytes, not the name.",
        ),
        model: str = typer.Option("rapidocr", "--model", "-m", help="Model id (served name, registry name or alias)."),
        mode: str = typer.Option(
            "layout",
            "--mode",
            help="layout (boxes + text), layout-only (boxes), text, web-parsing (a web "
            "page's layout), scene-spotting (text lines in photos), svg (image to "
            "SVG; dots.mocr).",
        ),
        pages: str | None = typer.Option(None, "--pages", help="Pages to read, e.g. 1-3,7 (1-based); default all."),
        dpi: float = typer.Option(150.0, "--dpi", help="Resolution PDF pages are rendered at."),
        out: Path = typer.Option(Path("out"), "--out", "-o", help="Directory for the results."),
        fmt: str = typer.Option(
            DEFAULT_FORMATS,
            "--format",
            "-f",
            help="Comma-separated: json (document + per page), md (+ picture crops), "
            "png (annotated pages), zip (everything).",
        ),
        gateway: str | None = typer.Option(
            None,
            "--gateway",
            "-g",
            help="A running gateway's URL: each file becomes a job there, "
            "followed live (Ctrl-C cancels it); default: an in-process "
            "manager.",
        ),
        api_key: str | None = typer.Option(
            None, "--api-key", envvar="VLMSWAP_API_KEY", help="With --gateway: the gateway's API key."
        ),
        registry: Path | None = typer.Option(
            None, "--registry", help="Registry file for the in-process manager; default: the shipped one."
        ),
        max_tokens: int | None = typer.Option(
            None, "--max-tokens", min=1, help="Per page; default: what is left of the model's context."
        ),
    ) -> None:
        """OCR documents page by page into layout JSON, Markdown and annotated PNGs (exit 2 if any file failed)."""
        from vlmswap.documents.export import FORMATS
        from vlmswap.documents.prompts import normalize_mode

        formats = [f.strip().lower() for f in fmt.split(",") if f.strip()]
        bad = [f for f in formats if f not in FORMATS]
        if bad or not formats:
            shown = ",".join(bad) if bad else repr(fmt)
            typer.echo(f"vlmswap ocr: unknown --format {shown}; choose from {','.join(FORMATS)}", err=True)
            raise typer.Exit(2)
        try:
            mode = normalize_mode(mode)
        except ValueError as exc:
            typer.echo(f"vlmswap ocr: {exc}", err=True)
            raise typer.Exit(2) from None
        if gateway and not _serves_jobs(gateway, api_key):
            typer.echo(
                f"vlmswap ocr: {gateway} serves no document jobs (an older gateway?); reading page by page "
                f"through its OpenAI API",
                err=True,
            )
            code = asyncio.run(
                _run(
                    files,
                    model=model,
                    mode=mode,
                    pages=pages,
                    dpi=dpi,
                    out=out,
                    formats=formats,
                    registry=None,
                    max_tokens=max_tokens,
                    gateway=gateway,
                    api_key=api_key,
                )
            )
        elif gateway:
            from vlmswap.cli.jobs_cmd import run_ocr_jobs

            out.mkdir(parents=True, exist_ok=True)
            code = run_ocr_jobs(
                files,
                gateway=gateway,
                model=model,
                mode=mode,
                pages=pages,
                dpi=dpi,
                out=out,
                formats=formats,
                max_tokens=max_tokens,
                api_key=api_key,
            )
        else:
            code = asyncio.run(
                _run(
                    files,
                    model=model,
                    mode=mode,
                    pages=pages,
                    dpi=dpi,
                    out=out,
                    formats=formats,
                    registry=registry,
                    max_tokens=max_tokens,
                )
            )
        raise typer.Exit(code)
