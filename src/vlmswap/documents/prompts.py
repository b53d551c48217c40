"""What to ask each model family, and in which format its answer will come back.

dots.ocr / dots.mocr (and the embedded rapidocr engine, which answers their prompts) get
their own prompts, verbatim from `vlmswap.documents.dots_prompts`, behind the image placeholders their
own client writes (`<|img|><|imgpad|><|endofimg|>`; without them vLLM v1 puts a newline
before the prompt, which the model was not trained on). The Qwen families get a grounding
request in the form their training used, so their boxes come back in their native format.
Families without grounding get the text request; when a layout was asked of them the page
says so in its flags instead of inventing boxes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from vlmswap.documents import dots_prompts

Mode = Literal["layout", "layout-only", "text", "web-parsing", "scene-spotting", "svg"]
MODES: tuple[str, ...] = ("layout", "layout-only", "text", "web-parsing", "scene-spotting", "svg")

#: How the answer is parsed (see parsers.parse_output).
Format = Literal["dots_json", "qwen2_boxes", "qwen25_json", "qwen3_json", "text", "svg"]

DOTS_FAMILIES = frozenset({"dots_ocr", "rapidocr"})

_CATEGORY_LIST = (
    "Caption, Footnote, Formula, List-item, Page-footer, Page-header, Picture, Section-header, Table, Text, Title"
)

TEXT_PROMPT = (
    "Read all the text in this image in natural reading order. "
    "Output only the text, formatted as Markdown, with no commentary."
)

_QWEN2_LAYOUT = (
    "Find every line of text in this document image. For each line, output its exact text "
    "as the object reference followed by its bounding box."
)
_QWEN2_LAYOUT_ONLY = (
    "Detect every layout element in this document image and output the category of each "
    f"as the object reference followed by its bounding box. Categories: {_CATEGORY_LIST}."
)
_QWEN_JSON_LAYOUT = "Spotting all the text in the image with line-level, and output in JSON format."
_QWEN_JSON_LAYOUT_ONLY = (
    "Detect every layout element in this document image and output their bbox coordinates "
    'in JSON format as [{"bbox_2d": [x1, y1, x2, y2], "label": "category"}]. '
    f"Categories: {_CATEGORY_LIST}."
)

LAYOUT_FAMILIES = frozenset({"dots_ocr", "rapidocr", "qwen2_vl", "qwen2_5_vl", "qwen3_vl"})


@dataclass(frozen=True)
class PromptPlan:
    prompt: str
    format: Format
    mode: str  # the mode actually used (text when layout was not possible)
    flags: tuple[str, ...] = field(default=())


def normalize_mode(mode: str) -> str:
    m = mode.strip().lower().replace("_", "-")
    aliases = {
        "layout-all": "layout",
        "ocr": "text",
        "layoutonly": "layout-only",
        "web": "web-parsing",
        "webpage": "web-parsing",
        "scene": "scene-spotting",
        "spotting": "scene-spotting",
        "image-to-svg": "svg",
    }
    m = aliases.get(m, m)
    if m not in MODES:
        raise ValueError(f"unknown mode {mode!r}; one of {', '.join(MODES)}")
    return m


def plan(family: str, mode: str, input_size: tuple[int, int] = (0, 0)) -> PromptPlan:
    """The prompt and answer format for one page of this family in this mode.

    `input_size` (width, height of the image the model sees) fills the SVG prompt's viewBox.
    """
    mode = normalize_mode(mode)
    if family in DOTS_FAMILIES:
        prefix = dots_prompts.IMAGE_PREFIX
        if mode == "layout":
            return PromptPlan(prefix + dots_prompts.layout_all(), "dots_json", mode)
        if mode == "layout-only":
            return PromptPlan(prefix + dots_prompts.layout_only(), "dots_json", mode)
        if mode == "web-parsing":
            return PromptPlan(prefix + dots_prompts.web_parsing(), "dots_json", mode)
        if mode == "scene-spotting":
            return PromptPlan(prefix + dots_prompts.scene_spotting(), "dots_json", mode)
        if mode == "svg":
            return PromptPlan(prefix + dots_prompts.image_to_svg(*input_size), "svg", mode)
        return PromptPlan(prefix + dots_prompts.ocr(), "text", mode)
    if family in ("qwen2_vl", "qwen2_5_vl", "qwen3_vl"):
        if mode in ("text", "svg"):
            qwen_flags = (
                (f"svg_unsupported: family {family} has no image-to-SVG prompt; ran in text mode",)
                if mode == "svg"
                else ()
            )
            return PromptPlan(TEXT_PROMPT, "text", "text", qwen_flags)
        only = mode == "layout-only"  # web pages and scene text: their line-level spotting, like layout
        if family == "qwen2_vl":
            return PromptPlan(_QWEN2_LAYOUT_ONLY if only else _QWEN2_LAYOUT, "qwen2_boxes", mode)
        fmt: Format = "qwen25_json" if family == "qwen2_5_vl" else "qwen3_json"
        return PromptPlan(_QWEN_JSON_LAYOUT_ONLY if only else _QWEN_JSON_LAYOUT, fmt, mode)
    flags: tuple[str, ...] = ()
    if mode != "text":
        flags = (f"layout_unsupported: family {family} gives text only; ran in text mode",)
    return PromptPlan(TEXT_PROMPT, "text", "text", flags)
