"""Small real servers for tests: they speak the protocols of the things that cannot run here."""

from __future__ import annotations

from pathlib import Path

FAULT_SERVER = Path(__file__).resolve().parent / "fault_server.py"


def fault_cmd(*flags: str) -> list[str]:
    """A registry `cmd` that runs the fault server on ${PORT} as ${SERVED_NAME}, with fault flags."""
    return ["${PYTHON}", str(FAULT_SERVER), "--port", "${PORT}", "--served-model-name", "${SERVED_NAME}", *flags]


def is_fault_server(cmdline: list[str]) -> bool:
    """True for a fault server's process (for process-table samplers in tests)."""
    return any(part.endswith("fault_server.py") for part in cmdline[:3])
