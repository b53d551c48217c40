"""`vlmswap ui` (the Streamlit app) and `vlmswap up` (gateway + UI together: `make run`).

Both start child programs from argv lists, never a shell. `up` owns its two children: it
waits until both answer, prints their URLs, and on Ctrl-C/SIGTERM (or when either child
dies) stops both; the gateway in turn stops its backends.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import typer

from vlmswap.i18n import tr

APP_FILE = Path(__file__).resolve().parent.parent / "ui" / "app.py"
GATEWAY_ENV = "VLMSWAP_GATEWAY_URL"  # same name as vlmswap.ui.api.GATEWAY_ENV (not imported: no streamlit here)


def streamlit_argv(port: int, host: str) -> list[str]:
    """`streamlit run` on the packaged app: headless, no usage stats, no browser, no file watching.

    Streamlit's own upload cap follows the app's (VLMSWAP_UI_MAX_UPLOAD_MB, default 32 MB like
    the gateway's body limit), so the browser refuses what the gateway would refuse anyway.
    """
    upload_mb = max(1, math.ceil(float(os.environ.get("VLMSWAP_UI_MAX_UPLOAD_MB", "32"))))
    return [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(APP_FILE),
        "--server.maxUploadSize",
        str(upload_mb),
        "--server.port",
        str(port),
        "--server.address",
        host,
        "--server.headless",
        "true",
        "--server.fileWatcherType",
        "none",
        "--server.runOnSave",
        "false",
        "--browser.gatherUsageStats",
        "false",
        "--client.toolbarMode",
        "minimal",
        "--global.developmentMode",
        "false",
    ]


def _ui_env(gateway: str) -> dict[str, str]:
    return {**os.environ, GATEWAY_ENV: gateway.rstrip("/"), "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"}


def _answers(url: str) -> bool:
    import httpx

    try:
        return httpx.get(url, timeout=2.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(procs: list[subprocess.Popen[bytes]], grace: float) -> None:
    """SIGTERM each child's process group, wait up to `grace`, then SIGKILL what is left."""
    for p in procs:
        if p.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, signal.SIGKILL)
            p.wait(5)


class _Stop(Exception):
    pass


def register(app: typer.Typer) -> None:
    @app.command("ui")
    def ui(
        gateway: str = typer.Option("http://127.0.0.1:8080", "--gateway", help="URL of the vlmswap gateway."),
        port: int = typer.Option(8501, "--port", help="Port of the web UI."),
        host: str = typer.Option("127.0.0.1", "--host", help="Address to bind; keep loopback unless you mean it."),
    ) -> None:
        """Run the web UI (Streamlit), a client of a running gateway (`vlmswap serve`)."""
        try:
            import streamlit  # noqa: F401
        except ImportError:
            typer.echo("vlmswap ui: " + tr("streamlit is not installed (pip install 'vlmswap[ui]')"), err=True)
            raise typer.Exit(2) from None
        typer.echo(f"vlmswap ui: http://{host}:{port} (" + tr("gateway {url}", url=gateway) + ")")
        argv = streamlit_argv(port, host)
        os.execve(argv[0], argv, _ui_env(gateway))

    @app.command("up")
    def up(
        config: Path | None = typer.Option(None, "--config", help="Registry YAML; default: the one shipped."),
        port: int = typer.Option(8080, "--port", help="Port of the gateway."),
        ui_port: int = typer.Option(8501, "--ui-port", help="Port of the web UI."),
        timeout: float = typer.Option(120.0, "--timeout", help="Seconds to wait for both to answer."),
    ) -> None:
        """Start the gateway and the web UI together; Ctrl-C stops both (and the gateway's backends).

        Nothing is preloaded: a model starts on its first use (the embedded rapidocr in seconds).
        """
        if config is not None and not config.is_file():
            typer.echo(f"{config}: " + tr("no such file"), err=True)
            raise typer.Exit(2)
        host = "127.0.0.1"  # both on loopback: the UI sends no API key
        gw_argv = [sys.executable, "-m", "vlmswap", "serve", "--port", str(port)]
        if config is not None:
            gw_argv += ["--config", str(config)]
        gateway = f"http://{host}:{port}"
        ui_url = f"http://{host}:{ui_port}"

        def on_signal(signum: int, _frame: object) -> None:
            raise _Stop()

        old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        procs: list[subprocess.Popen[bytes]] = []
        code = 0
        try:
            procs.append(subprocess.Popen(gw_argv, start_new_session=True))
            procs.append(subprocess.Popen(streamlit_argv(ui_port, host), env=_ui_env(gateway), start_new_session=True))
            checks = [
                (procs[0], f"{gateway}/api/status", tr("the gateway")),
                (procs[1], f"{ui_url}/_stcore/health", tr("the UI")),
            ]
            deadline = time.monotonic() + timeout
            waiting = list(checks)
            while waiting:
                for item in list(waiting):
                    proc, url, what = item
                    if proc.poll() is not None:
                        typer.echo(
                            "vlmswap up: " + tr("{what} exited with code {code}", what=what, code=proc.returncode),
                            err=True,
                        )
                        code = 1
                        raise _Stop()
                    if _answers(url):
                        waiting.remove(item)
                if time.monotonic() > deadline:
                    typer.echo(
                        "vlmswap up: "
                        + tr(
                            "no answer from {urls} after {seconds} s",
                            urls=", ".join(w[1] for w in waiting),
                            seconds=f"{timeout:.0f}",
                        ),
                        err=True,
                    )
                    code = 1
                    raise _Stop()
                time.sleep(0.2)
            typer.echo(tr("vlmswap gateway: {url}  (OpenAI API: {url}/v1)", url=gateway))
            typer.echo(tr("vlmswap web UI:  {url}", url=ui_url))
            typer.echo(tr("Press Ctrl-C to stop both."))
            while True:
                for proc, _, what in checks:
                    if proc.poll() is not None:
                        typer.echo(
                            "vlmswap up: "
                            + tr("{what} exited with code {code}; stopping", what=what, code=proc.returncode),
                            err=True,
                        )
                        code = 1
                        raise _Stop()
                time.sleep(0.5)
        except _Stop:
            pass
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            # The gateway needs time to stop its backends (their own grace periods).
            _stop(procs, grace=60.0)
        raise typer.Exit(code)
