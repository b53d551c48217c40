"""Per-model log files with a size cap: `NAME.log`, then `NAME.log.1` (newest) .. `NAME.log.N`.

A backend that logs every request would otherwise fill the disk of a gateway that runs for
months. The rotation itself is the standard library's (`logging.handlers.RotatingFileHandler`:
rename on rollover, oldest dropped); this class only feeds it whole lines, without going
through a logger, so a backend's output never meets vlmswap's own log configuration.
"""

from __future__ import annotations

import logging
from logging.handlers import RotatingFileHandler
from pathlib import Path


class RotatingLog:
    """Append lines to `path`; past `max_bytes` the file is rotated, `keep` older files kept (keep >= 1).

    Not thread-safe on its own: the caller (LogBuffer) serialises writes.
    """

    def __init__(self, path: Path, *, max_bytes: int, keep: int):
        if max_bytes < 1 or keep < 1:
            raise ValueError(f"max_bytes and keep must be at least 1 (got {max_bytes}, {keep})")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._handler = RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=keep, encoding="utf-8", errors="replace"
        )
        self._handler.setFormatter(logging.Formatter("%(message)s"))

    def write(self, line: str) -> None:
        """One line (without its newline); rotates first when the line would pass the cap."""
        self._handler.emit(logging.makeLogRecord({"msg": line, "args": None}))

    def files(self) -> list[Path]:
        """The log's files that exist, newest first."""
        rotated = (self.path.with_name(f"{self.path.name}.{i}") for i in range(1, self._handler.backupCount + 1))
        return [p for p in (self.path, *rotated) if p.exists()]

    def close(self) -> None:
        self._handler.close()


__all__ = ["RotatingLog"]
