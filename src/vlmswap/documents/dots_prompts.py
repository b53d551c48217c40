"""dots.ocr's prompts, verbatim (from rednote-hilab/dots.ocr, MIT licence; see dots_ocr_prompts.json).

The model was trained on these exact texts: send them unchanged, and recognise them
unchanged (the embedded engine answers them in dots.ocr's output format). Clients put
chat-template image placeholders before the prompt: dots.ocr's own client sends
`<|img|><|imgpad|><|endofimg|>` + prompt (without it vLLM v1 inserts a newline there), and
Qwen-style clients write `<|vision_start|><|image_pad|><|vision_end|>` or `<image>`; a
prompt is recognised behind any of them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Literal

Mode = Literal["layout_all", "layout_only", "ocr", "grounding_ocr", "web_parsing", "scene_spotting", "image_to_svg"]

#: What dots.ocr's client (dots_ocr/model/inference.py) writes before every prompt.
IMAGE_PREFIX = "<|img|><|imgpad|><|endofimg|>"

_PLACEHOLDERS = re.compile(
    r"<\|img\|>|<\|imgpad\|>|<\|endofimg\|>|<\|vision_start\|>|<\|image_pad\|>"
    r"|<\|vision_end\|>|<image>"
)
_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_BOX = re.compile(rf"\[{_NUM},{_NUM},{_NUM},{_NUM}\]")
_INT = r"\s*(\d+)\s*"


@lru_cache(maxsize=1)
def prompts() -> dict[str, str]:
    data = json.loads(
        resources.files("vlmswap.documents").joinpath("dots_ocr_prompts.json").read_text(encoding="utf-8")
    )
    found: dict[str, str] = data["prompts"]
    return found


def layout_all() -> str:
    return prompts()["prompt_layout_all_en"]


def layout_only() -> str:
    return prompts()["prompt_layout_only_en"]


def ocr() -> str:
    return prompts()["prompt_ocr"]


def web_parsing() -> str:
    return prompts()["prompt_web_parsing"]


def scene_spotting() -> str:
    return prompts()["prompt_scene_spotting"]


def grounding_ocr(bbox: tuple[int, int, int, int] | list[int]) -> str:
    x1, y1, x2, y2 = (int(v) for v in bbox)
    return prompts()["prompt_grounding_ocr"] + f"[{x1}, {y1}, {x2}, {y2}]"


def image_to_svg(width: int, height: int) -> str:
    """The SVG prompt with its viewBox filled in, as dots.ocr's demo does (the image's size)."""
    return prompts()["prompt_image_to_svg"].replace("{width}", str(int(width))).replace("{height}", str(int(height)))


def without_placeholders(text: str) -> str:
    """The text without chat-template image placeholders (for an engine that places images itself)."""
    return _PLACEHOLDERS.sub("", text)


def strip_placeholders(prompt: str) -> str:
    """The prompt without chat-template image placeholders and surrounding whitespace."""
    return without_placeholders(prompt).strip()


@dataclass(frozen=True)
class Recognised:
    """A known prompt: its mode, and what it carries (grounding's box, the SVG's viewBox size)."""

    mode: Mode
    box: tuple[float, float, float, float] | None = None
    size: tuple[int, int] | None = None


def recognise(prompt: str) -> Recognised | None:
    """Which dots.ocr prompt this is, compared verbatim once placeholders and outer whitespace are gone.

    Raises ValueError for a grounding prompt without its box: the client meant grounding, and
    answering the whole page would hide its mistake.
    """
    p = strip_placeholders(prompt)
    table = prompts()
    exact: dict[str, Mode] = {
        "prompt_layout_all_en": "layout_all",
        "prompt_layout_only_en": "layout_only",
        "prompt_ocr": "ocr",
        "prompt_web_parsing": "web_parsing",
        "prompt_scene_spotting": "scene_spotting",
    }
    for key, mode in exact.items():
        if p == table[key].strip():
            return Recognised(mode)
    grounding = table["prompt_grounding_ocr"].strip()
    if p.startswith(grounding):
        m = _BOX.search(p[len(grounding) :])
        if m is None:
            raise ValueError("grounding prompt without a box [x1, y1, x2, y2]")
        x1, y1, x2, y2 = (float(v) for v in m.groups())
        return Recognised("grounding_ocr", box=(x1, y1, x2, y2))
    head, _, tail = table["prompt_image_to_svg"].partition("{width}")
    middle, _, end = tail.partition("{height}")
    svg = re.fullmatch(re.escape(head) + _INT + re.escape(middle) + _INT + re.escape(end), p)
    if svg is not None:
        return Recognised("image_to_svg", size=(int(svg.group(1)), int(svg.group(2))))
    return None


def classify(prompt: str) -> Mode | None:
    """Which dots.ocr prompt this is (None: none of them); see `recognise`."""
    try:
        known = recognise(prompt)
    except ValueError:
        return "grounding_ocr"
    return None if known is None else known.mode
