"""How vlmswap's own processes log: plain text for people, or JSON lines for log collectors."""

from __future__ import annotations

import logging
import sys
from enum import StrEnum
from typing import Any

from pythonjsonlogger.json import JsonFormatter

JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s"
RENAMED = {"asctime": "time", "levelname": "level", "name": "logger"}


class LogFormat(StrEnum):
    text = "text"
    json = "json"


def configure(fmt: LogFormat) -> dict[str, Any] | None:
    """Set up the root logger on stderr; return the `log_config` to hand uvicorn.

    Text keeps uvicorn's own configuration. JSON gives uvicorn none (None), so its loggers
    propagate to the root handler and every line on stderr is one JSON object: `time`,
    `level`, `logger`, `message`, and any `extra` fields. vlmswap's loggers then log at INFO.
    """
    handler = logging.StreamHandler(sys.stderr)
    if fmt is LogFormat.json:
        handler.setFormatter(JsonFormatter(JSON_FIELDS, rename_fields=RENAMED, timestamp=False))
        logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
        logging.getLogger("vlmswap").setLevel(logging.INFO)
        return None
    handler.setFormatter(logging.Formatter("vlmswap: %(message)s"))
    logging.basicConfig(level=logging.WARNING, handlers=[handler], force=True)
    import uvicorn.config

    return uvicorn.config.LOGGING_CONFIG


__all__ = ["LogFormat", "configure"]
