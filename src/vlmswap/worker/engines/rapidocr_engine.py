"""The embedded CPU engine: RapidOCR (PP-OCR through onnxruntime), models inside the wheel.

It runs on any machine, downloads nothing, and answers dots.ocr's prompts in dots.ocr's
output format, so everything downstream treats it exactly like dots.ocr: layout prompts get a
JSON array of `{"bbox", "category", "text"}` in the pixels of the image received, one element
per text line in reading order. Any other prompt gets the page text.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from vlmswap import dots_prompts
from vlmswap.worker.engines.base import Engine, Generation, GenerationRequest


@dataclass
class TextBox:
    """One detection: an axis-aligned box around RapidOCR's quadrilateral, and its text."""

    x1: float
    y1: float
    x2: float
    y2: float
    text: str
    score: float = 1.0

    @property
    def height(self) -> float:
        return max(self.y2 - self.y1, 1.0)


@dataclass
class TextLine:
    boxes: list[TextBox]

    @property
    def bbox(self) -> list[int]:
        return [round(min(b.x1 for b in self.boxes)), round(min(b.y1 for b in self.boxes)),
                round(max(b.x2 for b in self.boxes)), round(max(b.y2 for b in self.boxes))]

    @property
    def text(self) -> str:
        return " ".join(b.text.strip() for b in sorted(self.boxes, key=lambda b: b.x1) if b.text.strip())


def group_lines(boxes: list[TextBox], min_overlap: float = 0.5) -> list[TextLine]:
    """Boxes -> text lines in reading order (top to bottom, then left to right).

    A box joins a line when its vertical overlap with the line's vertical span is at least
    `min_overlap` of the smaller height; PP-OCR's detector splits a line at wide gaps, and
    this puts the pieces back together.
    """
    lines: list[tuple[float, float, list[TextBox]]] = []  # (top, bottom, boxes)
    for b in sorted(boxes, key=lambda b: ((b.y1 + b.y2) / 2, b.x1)):
        for i, (top, bottom, members) in enumerate(lines):
            overlap = min(bottom, b.y2) - max(top, b.y1)
            if overlap >= min_overlap * min(bottom - top, b.height):
                members.append(b)
                lines[i] = (min(top, b.y1), max(bottom, b.y2), members)
                break
        else:
            lines.append((b.y1, b.y2, [b]))
    ordered = sorted(lines, key=lambda t: (t[0], min(b.x1 for b in t[2])))
    return [TextLine(sorted(members, key=lambda b: b.x1)) for _, _, members in ordered]


def inside(box: TextBox, region: tuple[float, float, float, float], min_fraction: float = 0.5) -> bool:
    """Whether at least `min_fraction` of the box's area lies in `region`."""
    rx1, ry1, rx2, ry2 = region
    w = min(box.x2, rx2) - max(box.x1, rx1)
    h = min(box.y2, ry2) - max(box.y1, ry1)
    if w <= 0 or h <= 0:
        return False
    area = max((box.x2 - box.x1) * (box.y2 - box.y1), 1.0)
    return (w * h) / area >= min_fraction


_BOX_IN_PROMPT = re.compile(r"\[\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*(-?\d+(?:\.\d+)?)\s*,\s*"
                            r"(-?\d+(?:\.\d+)?)\s*\]")


def render(mode: str | None, lines: list[TextLine], prompt: str) -> str:
    """The answer text for one image, in dots.ocr's format for its prompts."""
    if mode == "layout_all":
        return json.dumps([{"bbox": ln.bbox, "category": "Text", "text": ln.text} for ln in lines],
                          ensure_ascii=False)
    if mode == "layout_only":
        return json.dumps([{"bbox": ln.bbox, "category": "Text"} for ln in lines], ensure_ascii=False)
    return "\n".join(ln.text for ln in lines)


def count_tokens(text: str) -> int:
    # Rough: whitespace-separated words stand in for tokens. RapidOCR has no tokenizer, and the
    # numbers only feed `usage` and `max_tokens`, where an estimate is honest enough.
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    """The text in word-sized pieces (each with its leading whitespace); joined, they give it back."""
    pieces = re.findall(r"\s*\S+", text)
    trailing = text[len(text.rstrip()):]
    if trailing:
        if pieces:
            pieces[-1] += trailing
        else:
            pieces = [trailing]
    return pieces


class _OCRGeneration(Generation):
    def __init__(self, text: str, prompt_tokens: int, max_tokens: int | None):
        pieces = split_tokens(text)
        if max_tokens is not None and len(pieces) > max_tokens:
            pieces = pieces[:max_tokens]
            self.finish_reason = "length"
        else:
            self.finish_reason = "stop"
        self._pieces = pieces
        self.prompt_tokens = prompt_tokens
        self.completion_tokens = 0

    def __iter__(self) -> Iterator[str]:
        for piece in self._pieces:
            self.completion_tokens += 1
            yield piece


class RapidOCREngine(Engine):
    """RapidOCR 3.x on onnxruntime; the angle classifier is off (upright pages) unless asked for."""

    name = "rapidocr"
    max_model_len = 65536

    def __init__(self, *, use_cls: bool = False, params: dict[str, Any] | None = None):
        self.params: dict[str, Any] = {"Global.use_cls": use_cls, "Global.log_level": "error", **(params or {})}
        self._ocr: Any = None
        self._sleeping = False

    def load(self) -> None:
        from rapidocr import RapidOCR

        ocr = RapidOCR(params=self.params)
        # rapidocr >= 3.10 creates its onnx sessions on first use; create them now so that
        # "loaded" (/health 200) is true and the first request does not pay for it.
        cls = ["_load_cls_model"] if self.params["Global.use_cls"] else []
        loaders = ["_load_det_model", "_load_rec_model", *cls]
        if all(hasattr(ocr, name) for name in loaders):
            for name in loaders:
                getattr(ocr, name)()
        else:  # another 3.x without those helpers: one small read loads them all
            warm = Image.new("RGB", (96, 96), "white")
            ImageDraw.Draw(warm).text((10, 40), "ok 1", fill="black")
            ocr(np.ascontiguousarray(np.asarray(warm)[:, :, ::-1]))
        self._ocr = ocr

    def read(self, image: Image.Image) -> list[TextBox]:
        """Every text box RapidOCR finds, in the pixels of `image`."""
        if self._ocr is None:
            raise RuntimeError("engine not loaded")
        import cv2  # a dependency of rapidocr

        rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
        bgr = cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)  # 10x cheaper than a PIL convert plus a numpy copy
        result = self._ocr(bgr)
        boxes = getattr(result, "boxes", None)
        txts = getattr(result, "txts", None)
        if boxes is None or txts is None or len(boxes) == 0:
            return []
        scores = getattr(result, "scores", None)
        if scores is None or len(scores) != len(txts):
            scores = [1.0] * len(txts)
        out = []
        for quad, text, score in zip(boxes, txts, scores):
            q = np.asarray(quad, dtype=float)
            out.append(TextBox(float(q[:, 0].min()), float(q[:, 1].min()), float(q[:, 0].max()),
                               float(q[:, 1].max()), str(text), float(score)))
        return out

    def generate(self, request: GenerationRequest) -> Generation:
        if self.is_sleeping:
            raise RuntimeError("engine is sleeping")
        images = request.images
        if not images:
            raise ValueError("the rapidocr engine reads images: send at least one image_url part")
        image = images[-1]
        prompt = request.last_user_text
        mode = dots_prompts.classify(prompt)
        region = None
        if mode == "grounding_ocr":
            m = _BOX_IN_PROMPT.search(prompt.strip()[len(dots_prompts.prompts()["prompt_grounding_ocr"].strip()):])
            if m is None:
                raise ValueError("grounding prompt without a box [x1, y1, x2, y2]")
            region = tuple(float(v) for v in m.groups())
        boxes = self.read(image)
        if region is not None:
            boxes = [b for b in boxes if inside(b, region)]  # type: ignore[arg-type]
        text = render(mode, group_lines(boxes), prompt)
        prompt_tokens = sum(count_tokens(m.text) for m in request.messages) + len(images)
        return _OCRGeneration(text, prompt_tokens, request.max_tokens)

    def sleep(self, level: int = 1) -> None:
        # Nothing sits on an accelerator; the onnx sessions stay in RAM so waking is instant.
        # Sleeping is still honest: requests are refused until wake_up.
        self._sleeping = True

    def wake_up(self) -> None:
        self._sleeping = False
