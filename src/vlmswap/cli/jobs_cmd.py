"""`vlmswap jobs list|show|cancel|result`, and `vlmswap ocr --gateway` as document jobs.

With a gateway, each file is submitted once as a job and followed through its events with a
progress bar; Ctrl-C cancels the jobs (the pages done stay on the gateway). The outputs are
written from the job's result, so they are the same files `vlmswap ocr` writes without one.
"""

from __future__ import annotations

import io
import json
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import typer

from vlmswap.cli.common import DEFAULT_GATEWAY, GATEWAY_HELP, fail, fail_line, gateway_client, ocr_summary, unique_stem
from vlmswap.i18n import N_, num, tr, translate_text

STATE_COLOURS = {"queued": "yellow", "running": "cyan", "done": "green", "failed": "red", "cancelled": "magenta"}


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return tr("{n} s", n=f"{seconds:.0f}") if seconds < 120 else tr("{n} min", n=num(seconds / 60))


def _reason(message: str, name: str) -> str:
    """The gateway names the upload (`name: reason`); the CLI names the file as the user typed it."""
    message = translate_text(message)
    return message[len(name) + 2 :] if message.startswith(f"{name}: ") else message


def run_ocr_jobs(
    files: list[str],
    *,
    gateway: str,
    model: str,
    mode: str,
    pages: str | None,
    dpi: float,
    out: Path,
    formats: list[str],
    max_tokens: int | None,
    api_key: str | None = None,
) -> int:
    """`vlmswap ocr --gateway`: one job per file, followed live; 2 when any file or page failed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from vlmswap.client import GatewayError
    from vlmswap.documents import export

    err = Console(stderr=True)
    client = gateway_client(gateway, api_key)
    failed = 0
    used: set[str] = set()
    submitted: list[tuple[str, str, Any]] = []  # (file as given, stem, job)
    t0 = time.perf_counter()
    for f in files:
        p = Path(f)
        stem = unique_stem(export.source_stem(p.name), used)
        upload = stem + p.suffix  # the gateway names its outputs after the upload
        try:
            content = p.read_bytes()
        except OSError as exc:
            fail_line(err, f"{f}: {exc.strerror or exc}")
            failed += 1
            continue
        try:
            job = client.submit_job(
                content=content, filename=upload, model=model, mode=mode, pages=pages, dpi=dpi, max_tokens=max_tokens
            )
        except GatewayError as exc:
            if exc.code in ("model_not_found", "gateway_unreachable") or exc.status is None:
                fail_line(err, f"vlmswap ocr: {translate_text(exc.message)}")
                _cancel(submitted)
                return 2
            fail_line(err, f"{f}: {_reason(exc.message, upload)}")
            failed += 1
            continue
        submitted.append((f, stem, job))

    done_pages = blocks = 0
    flagged: list[str] = []
    written: list[Path] = []
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(tr("pages")),
        TextColumn(tr("ETA") + " {task.fields[eta]}"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err) as progress:
            for f, stem, job in submitted:
                task = progress.add_task(Path(f).name, total=job.info.get("pages_total"), eta="-")

                def on_event(ev: dict[str, Any], task: Any = task, f: str = f) -> None:
                    progress.update(
                        task,
                        completed=(ev.get("pages_done") or 0) + (ev.get("pages_failed") or 0),
                        eta=_eta(ev.get("eta_s")),
                    )
                    if ev.get("step") == "page" and ev.get("page_state") == "failed":
                        why = translate_text(str(ev.get("page_error")))
                        fail_line(progress.console, f"{f}: " + tr("page {n} failed: {why}", n=ev["page"], why=why))

                end = job.wait(on_event=on_event)
                if end["state"] != "done" or end["pages_failed"]:
                    failed += 1
                    if end["state"] != "done":
                        said = tr("job {state}", state=tr(end["state"]))
                        why = translate_text(end.get("error") or "")
                        fail_line(progress.console, f"{f}: {said}: {why}".rstrip(": "))
                if not end["pages_done"]:
                    continue
                with zipfile.ZipFile(io.BytesIO(job.result("zip"))) as zf:
                    bundle = {n: zf.read(n) for n in zf.namelist()}
                doc = json.loads(bundle[f"{stem}.json"])
                done_pages += len(doc["pages"])
                blocks += sum(len(pg["blocks"]) for pg in doc["pages"])
                flagged += [f"{Path(f).name}:{pg['number']}" for pg in doc["pages"] if pg.get("flags")]
                for rel, data in export.select(bundle, formats, stem).items():
                    path = out / rel
                    path.parent.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(data)
                    written.append(path)
    except KeyboardInterrupt:
        kept = _cancel(submitted)
        err.print(tr("cancelled: {what}", what=kept), markup=False, highlight=False)
        return 130
    except GatewayError as exc:
        fail_line(err, f"vlmswap ocr: {translate_text(exc.message)}")
        return 2
    Console(stderr=True, soft_wrap=True).print(
        ocr_summary(len(files), failed, done_pages, blocks, time.perf_counter() - t0, flagged)
    )
    if written:
        print(tr("wrote {n} files to {out}", n=len(written), out=out), file=sys.stderr)
    return 2 if failed else 0


def _cancel(submitted: list[tuple[str, str, Any]]) -> str:
    """Cancel every job not yet finished; says what each kept."""
    from vlmswap.client import GatewayError

    said = []
    for f, _stem, job in submitted:
        if job.finished:
            continue
        try:
            res = job.cancel()
            kept = tr("(job {id}, pages kept: {n})", id=job.id, n=res.get("pages_done", 0))
            said.append(f"{Path(f).name} {kept}")
        except GatewayError as exc:
            said.append(f"{Path(f).name} " + tr("(job {id}: {why})", id=job.id, why=translate_text(exc.message)))
    return ", ".join(said) or tr("nothing was running")


def register(app: typer.Typer) -> None:
    jobs = typer.Typer(help="Document jobs on a gateway: list, show, cancel, fetch results.", no_args_is_help=True)
    app.add_typer(jobs, name="jobs")
    gw_opt = typer.Option(DEFAULT_GATEWAY, "--gateway", "-g", envvar="VLMSWAP_GATEWAY", help=GATEWAY_HELP)
    key_opt = typer.Option(None, "--api-key", envvar="VLMSWAP_API_KEY", help="API key of the gateway.")

    @jobs.command("list")
    def list_(
        gateway: str = gw_opt,
        api_key: str | None = key_opt,
        limit: int = typer.Option(20, min=1, max=1000, help="How many, newest first."),
        as_json: bool = typer.Option(False, "--json", help="Print the list as JSON."),
    ) -> None:
        """The gateway's recent document jobs, newest first."""
        from rich.console import Console
        from rich.table import Table

        from vlmswap.client import GatewayError

        try:
            data = gateway_client(gateway, api_key).jobs(limit)
        except GatewayError as exc:
            fail(exc.message)
        if as_json:
            typer.echo(json.dumps(data, indent=2))
            return
        t = Table(show_edge=False)
        for col in (
            N_("id"),
            N_("state"),
            N_("file"),
            N_("model"),
            N_("pages"),
            N_("failed"),
            N_("ETA"),
            N_("submitted"),
        ):
            t.add_column(tr(col))
        for j in data:
            colour = STATE_COLOURS.get(j["state"], "white")
            t.add_row(
                j["id"],
                f"[{colour}]{tr(j['state'])}[/]",
                j["source"],
                j["model"],
                f"{j['pages_done']}/{j['pages_total']}",
                str(j["pages_failed"] or ""),
                _eta(j.get("eta_s")) if j["state"] in ("queued", "running") else "",
                _when(j["created_at"]),
            )
        Console(width=None if sys.stdout.isatty() else 140).print(t)

    @jobs.command("show")
    def show(
        job_id: str = typer.Argument(..., help="The job's id."),
        gateway: str = gw_opt,
        api_key: str | None = key_opt,
        as_json: bool = typer.Option(False, "--json", help="Print GET /api/jobs/ID as JSON."),
    ) -> None:
        """One job: its state, progress, ETA and every page's state, tries, time and error."""
        from rich.console import Console
        from rich.table import Table

        from vlmswap.client import GatewayError

        try:
            j = gateway_client(gateway, api_key).job(job_id).info
        except GatewayError as exc:
            fail(exc.message)
        if as_json:
            typer.echo(json.dumps(j, indent=2))
            return
        console = Console(width=None if sys.stdout.isatty() else 140)
        colour = STATE_COLOURS.get(j["state"], "white")
        console.print(
            tr(
                "job [bold]{id}[/bold]  [{colour}]{state}[/]  {source}  model {model}  mode {mode}  dpi {dpi}",
                id=j["id"],
                colour=colour,
                state=tr(j["state"]),
                source=j["source"],
                model=j["model"],
                mode=j["mode"],
                dpi=f"{j['dpi']:g}",
            )
        )
        console.print(
            tr(
                "pages {done}/{total} done, {failed} failed   ETA {eta}   submitted {submitted}   ended {ended}",
                done=j["pages_done"],
                total=j["pages_total"],
                failed=j["pages_failed"],
                eta=_eta(j.get("eta_s")),
                submitted=_when(j["created_at"]),
                ended=_when(j.get("finished_at")),
            )
        )
        if j.get("error"):
            console.print(f"[red]{translate_text(j['error'])}[/red]")
        t = Table(show_edge=False)
        for col in (N_("page"), N_("state"), N_("tries"), N_("seconds"), N_("error")):
            t.add_column(tr(col))
        for p in j["pages"]:
            t.add_row(
                str(p["number"]),
                f"[{STATE_COLOURS.get(p['state'], 'white')}]{tr(p['state'])}[/]",
                str(p["tries"]),
                num(p["seconds"], 2) if p.get("seconds") else "",
                translate_text(p.get("error") or "")[:80],
            )
        console.print(t)

    @jobs.command("cancel")
    def cancel(
        job_id: str = typer.Argument(..., help="The job's id."),
        gateway: str = gw_opt,
        api_key: str | None = key_opt,
        purge: bool = typer.Option(False, help="Also remove the job and its files from the gateway."),
    ) -> None:
        """Cancel a job; the pages done are kept (unless --purge)."""
        from vlmswap.client import GatewayError

        client = gateway_client(gateway, api_key)
        try:
            res = client.job(job_id).cancel(purge=purge)
        except GatewayError as exc:
            fail(exc.message)
        if purge:
            kept = tr("removed")
        else:
            kept = tr("pages kept: {done} of {total}", done=res["pages_done"], total=res["pages_total"])
        typer.echo(tr("job {id}: {state} ({kept})", id=job_id, state=tr(res["state"]), kept=kept))

    @jobs.command("result")
    def result(
        job_id: str = typer.Argument(..., help="The job's id."),
        gateway: str = gw_opt,
        api_key: str | None = key_opt,
        fmt: str = typer.Option("md", "--format", "-f", help="json (the Document), md, or zip (everything)."),
        out: Path | None = typer.Option(None, "--out", "-o", help="File to write; default stdout (zip: <source>.zip)."),
    ) -> None:
        """The pages read so far; a job still running gives what it has (and says so on stderr)."""
        from vlmswap.client import GatewayError
        from vlmswap.documents import export

        if fmt not in ("json", "md", "zip"):
            fail(tr("unknown --format {what}; choose from {formats}", what=fmt, formats="json, md, zip"), 2)
        try:
            job = gateway_client(gateway, api_key).job(job_id)
            data = job.result(fmt)
        except GatewayError as exc:
            fail(exc.message)
        if not job.finished:
            typer.echo(
                tr(
                    "job {id} is {state}: {done} of {total} pages so far",
                    id=job_id,
                    state=tr(str(job.state)),
                    done=job.info["pages_done"],
                    total=job.info["pages_total"],
                ),
                err=True,
            )
        if fmt == "json":
            doc = data.to_dict()
            payload = json.dumps(doc, ensure_ascii=False, indent=2).encode("utf-8")
        elif fmt == "md":
            payload = str(data).encode("utf-8")
        else:
            payload = data
            out = out or Path(f"{export.source_stem(job.info['source'])}.zip")
        if out is None:
            sys.stdout.buffer.write(payload)
            sys.stdout.flush()
        else:
            out.write_bytes(payload)
            typer.echo(tr("wrote {out}", out=out), err=True)


__all__ = ["register", "run_ocr_jobs"]
