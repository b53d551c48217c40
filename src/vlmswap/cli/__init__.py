"""The `vlmswap` command. Each area registers its commands from its own module.

Heavy imports (torch, streamlit, the gateway) happen inside the commands, so `--help`
and small commands stay fast.
"""

from __future__ import annotations

import typer

from vlmswap.cli import (
    cluster_cmd,
    config_cmd,
    dev_cmd,
    docs_cmd,
    gateway_cmd,
    jobs_cmd,
    pull_cmd,
    simulate_cmd,
    ui_cmd,
    worker_cmd,
)

app = typer.Typer(
    name="vlmswap",
    help="Several vision-language models on one GPU: one resident at a time, switched on demand.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

config_cmd.register(app)
worker_cmd.register(app)
gateway_cmd.register(app)
pull_cmd.register(app)
docs_cmd.register(app)
jobs_cmd.register(app)
ui_cmd.register(app)
dev_cmd.register(app)
cluster_cmd.register(app)
simulate_cmd.register(app)


def main() -> None:
    app()
