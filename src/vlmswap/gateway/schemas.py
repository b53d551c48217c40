"""Response bodies of the gateway's own API (admin, events, OCR), for its OpenAPI document.

Deliberately open (`extra="allow"`): the manager owns these facts and may add fields; the
document pins the fields clients rely on. The OpenAI shapes live in `vlmswap.api.openai_types`.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class Health(_Open):
    status: Literal["ok"]
    resident: str | None


class ModelStatus(_Open):
    """One model as `/api/status` (and a load) reports it."""

    name: str
    served_name: str
    state: str
    in_flight: int
    queued: int
    last_error: str | None = None


class Switch(_Open):
    target: str
    phase: str | None  # None for the moment between a switch's start and its first phase
    elapsed_s: float
    eta_s: float | None = None


class Predicted(_Open):
    """A model the predictor expects: its chance of a request within `prediction_horizon_s`, and why."""

    model: str
    chance: float
    why: str


class Staging(_Open):
    """Idle-time staging: what is staged now, and counts per kind (page_cache, sleep)."""

    enabled: bool
    staged: dict[str, str]
    loads: dict[str, int]
    used: dict[str, int]
    abandoned: dict[str, int]


class Status(_Open):
    resident: str | None
    models: dict[str, ModelStatus]
    queue_length: int
    in_flight: int
    switch: Switch | None
    switches: int
    gpu: dict[str, Any]
    predicted: list[Predicted] = []
    staging: Staging | None = None


class UnloadResult(_Open):
    model: str | None
    unloading: bool
    state: str | None = None
    message: str | None = None


class SleepResult(_Open):
    model: str | None
    sleeping: bool
    state: str | None = None
    message: str | None = None


class Logs(_Open):
    model: str
    lines: list[str]


class OcrResult(_Open):
    """`document`: the first file's; `documents`: one per uploaded file (pages, blocks with boxes)."""

    document: dict[str, Any]
    documents: list[dict[str, Any]]
    markdown: str


OCR_FORM: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "array",
            "items": {"type": "string", "format": "binary"},
            "description": "images (PNG, JPEG, ...) or PDFs, one or more parts",
        },
        "model": {"type": "string", "default": "rapidocr"},
        "mode": {
            "type": "string",
            "default": "layout",
            "examples": ["layout", "layout-only", "text"],
            "description": "layout | layout-only | text (a few aliases are accepted too; empty means layout)",
        },
        "pages": {"type": "string", "description": "PDF pages, e.g. 1-3,7"},
        "dpi": {"type": "number", "description": "PDF rendering resolution (default 150)"},
    },
}

__all__ = [
    "OCR_FORM",
    "Health",
    "Logs",
    "ModelStatus",
    "OcrResult",
    "Predicted",
    "SleepResult",
    "Staging",
    "Status",
    "Switch",
    "UnloadResult",
]
