"""A profile's preferences: default models per task, OCR mode, dpi, pages, prompt presets, language.

Kept by the gateway (`GET/PUT /api/me/preferences`) in its state dir, one JSON file per profile,
so the UI opens with them in any browser and after a restart, and `vlmswap ocr --gateway`
and `vlmswap.Client` read the same ones. Without profiles there is one, the open profile's.

The model here is the shape (pydantic, unknown fields refused); `check_models` is what only the
gateway can say (the model exists, may be used by the profile, can do the task).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
import threading
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from vlmswap.documents.prompts import Mode
from vlmswap.registry.config import Registry

Language = Literal["en", "ru"]
Task = Literal["chat", "ocr"]
MAX_PRESETS = 50
_PAGES = re.compile(r"^\s*(\d*\s*-?\s*\d*)(\s*,\s*\d*\s*-?\s*\d*)*\s*$")


class PromptPreset(BaseModel):
    """A prompt kept under a name: for chat (put before what is typed) or OCR (the page's prompt)."""

    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=60)
    text: str = Field(min_length=1, max_length=4000)
    task: Task = "chat"


class Preferences(BaseModel):
    """What a profile prefers; every field may be left out (null: the gateway's or the UI's default)."""

    model_config = ConfigDict(extra="forbid")
    chat_model: str | None = Field(None, max_length=200, description="Default model of the Chat page.")
    ocr_model: str | None = Field(
        None, max_length=200, description="Default model for OCR (the UI's OCR page, `vlmswap ocr --gateway`)."
    )
    ocr_mode: Mode | None = Field(None, description="Default OCR mode.")
    dpi: int | None = Field(None, ge=50, le=600, description="Resolution PDF pages are rendered at.")
    pages: str | None = Field(
        None, max_length=200, description="Pages to read by default, e.g. `1-3,7` (1-based); empty or null: all."
    )
    prompt_presets: list[PromptPreset] = Field(default_factory=list, max_length=MAX_PRESETS)
    language: Language | None = Field(None, description="Interface language of the UI; null: the browser's.")

    @field_validator("pages")
    @classmethod
    def _page_ranges(cls, v: str | None) -> str | None:
        if v is None or not v.strip():
            return None
        if not _PAGES.match(v):
            raise ValueError(f"bad page range {v!r} (expected e.g. 1-3,7)")
        from vlmswap.documents.inputs import DocumentError, parse_page_ranges

        try:
            parse_page_ranges(v, 10**9)
        except DocumentError as exc:
            raise ValueError(exc.reason) from None
        return ",".join(p.strip().replace(" ", "") for p in v.split(",") if p.strip())

    @model_validator(mode="after")
    def _unique_presets(self) -> Preferences:
        seen: set[tuple[str, str]] = set()
        for p in self.prompt_presets:
            key = (p.task, p.name)
            if key in seen:
                raise ValueError(f"prompt_presets: two {p.task} presets are named {p.name!r}")
            seen.add(key)
        return self


def check_models(prefs: Preferences, registry: Registry, may_use: set[str] | None) -> tuple[Preferences, list[str]]:
    """The preferences with model ids made registry names, and what is wrong with them ("field: why").

    `may_use`: the registry names the profile may use (None: all).
    """
    problems: list[str] = []
    out = prefs.model_copy()
    for field, task, capabilities in (("chat_model", "chat", ("chat",)), ("ocr_model", "OCR", ("ocr", "layout"))):
        wanted = getattr(prefs, field)
        if wanted is None:
            continue
        name = registry.resolve(wanted)
        if name is None:
            problems.append(f"{field}: unknown model {wanted!r}")
            continue
        if may_use is not None and name not in may_use:
            problems.append(f"{field}: this profile may not use {name}")
            continue
        caps = registry.models[name].capabilities
        if not set(caps) & set(capabilities):
            problems.append(f"{field}: {name} cannot do {task} (capabilities: {', '.join(caps)})")
            continue
        setattr(out, field, name)
    return out, problems


class PreferenceStore:
    """One JSON file per profile under `dir`; written whole and atomically (a crash leaves the old one)."""

    def __init__(self, dir: Path):
        self.dir = Path(dir)
        self._lock = threading.Lock()

    def path(self, profile: str) -> Path:
        safe = re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,80}", profile)
        stem = profile if safe else "profile-" + hashlib.sha256(profile.encode()).hexdigest()[:16]
        return self.dir / f"{stem}.json"

    def get(self, profile: str) -> Preferences:
        """The profile's preferences; the defaults when it has none, or when its file cannot be read."""
        try:
            data = json.loads(self.path(profile).read_text(encoding="utf-8"))
            return Preferences.model_validate(data.get("preferences", {}))
        except (OSError, ValueError, ValidationError, AttributeError):
            return Preferences()

    def put(self, profile: str, prefs: Preferences) -> Preferences:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            body = {"profile": profile, "preferences": prefs.model_dump(mode="json")}
            fd, tmp = tempfile.mkstemp(dir=self.dir, prefix=".prefs-", suffix=".tmp")
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(body, f, ensure_ascii=False, indent=2)
                os.replace(tmp, self.path(profile))
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        return prefs


__all__ = ["Language", "PreferenceStore", "Preferences", "PromptPreset", "check_models"]
