"""Words every command shares: the gateway option, a client for it, and how a command fails.

Messages are in the CLI's language (`vlmswap.i18n`: VLMSWAP_LANG, else the POSIX locale); the
client asks the gateway for its error messages in it too (Accept-Language).
"""

from __future__ import annotations

import ipaddress
from typing import Any, NoReturn

import typer

from vlmswap.i18n import N_, cli_language, num, tr, translate_text

DEFAULT_GATEWAY = "http://127.0.0.1:8080"
GATEWAY_HELP = "Gateway URL (env VLMSWAP_GATEWAY)."


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def gateway_client(gateway: str, api_key: str | None) -> Any:
    from vlmswap.client import Client

    return Client(gateway, api_key=api_key, language=cli_language())


def fail(message: str, code: int = 1) -> NoReturn:
    typer.echo(f"vlmswap: {translate_text(message)}", err=True)
    raise typer.Exit(code)


def fail_line(console: Any, line: str) -> None:
    # One line, never wrapped by rich, printed above the progress bar.
    console.print(line, soft_wrap=True, markup=False, highlight=False)


def unique_stem(stem: str, used: set[str]) -> str:
    out, n = stem, 1
    while out in used:
        n += 1
        out = f"{stem}-{n}"
    used.add(out)
    return out


def ocr_summary(files: int, failed: int, pages: int, blocks: int, seconds: float, flagged: list[str]) -> Any:
    from rich.table import Table

    table = Table(title="vlmswap ocr", show_header=True)
    for col in (N_("files ok"), N_("files failed"), N_("pages"), N_("blocks"), N_("seconds"), N_("pages flagged")):
        table.add_column(tr(col))
    more = ", ..." if len(flagged) > 10 else ""
    shown = f"{len(flagged)}" + (f" ({', '.join(flagged[:10])}{more})" if flagged else "")
    table.add_row(str(files - failed), str(failed), str(pages), str(blocks), num(seconds), shown)
    return table
