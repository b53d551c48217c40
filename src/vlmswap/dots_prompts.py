"""dots.ocr's prompts, verbatim (from rednote-hilab/dots.ocr, MIT licence; see dots_ocr_prompts.json).

The model was trained on these exact texts: send them unchanged, and recognise them
unchanged (the embedded engine answers them in dots.ocr's output format).
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Literal

Mode = Literal["layout_all", "layout_only", "ocr", "grounding_ocr"]


@lru_cache(maxsize=1)
def prompts() -> dict[str, str]:
    data = json.loads(resources.files("vlmswap").joinpath("dots_ocr_prompts.json").read_text(encoding="utf-8"))
    return data["prompts"]


def layout_all() -> str:
    return prompts()["prompt_layout_all_en"]


def layout_only() -> str:
    return prompts()["prompt_layout_only_en"]


def ocr() -> str:
    return prompts()["prompt_ocr"]


def grounding_ocr(bbox: tuple[int, int, int, int] | list[int]) -> str:
    x1, y1, x2, y2 = (int(v) for v in bbox)
    return prompts()["prompt_grounding_ocr"] + f"[{x1}, {y1}, {x2}, {y2}]"


def classify(prompt: str) -> Mode | None:
    """Which dots.ocr prompt this is, compared verbatim (surrounding whitespace aside)."""
    p = prompt.strip()
    table = prompts()
    if p == table["prompt_layout_all_en"].strip():
        return "layout_all"
    if p == table["prompt_layout_only_en"].strip():
        return "layout_only"
    if p == table["prompt_ocr"].strip():
        return "ocr"
    if p.startswith(table["prompt_grounding_ocr"].strip()):
        return "grounding_ocr"
    return None
