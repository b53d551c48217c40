"""The embedded CPU engine: RapidOCR (PP-OCR on OpenVINO or onnxruntime), models inside the wheel.

It runs on any machine, downloads nothing, and answers dots.ocr's (and dots.mocr's) prompts
in their output format, so everything downstream, dots.ocr's own client included, treats it
exactly like dots.ocr: layout prompts get a JSON array of `{"bbox", "category", "text"}` in
the pixels of dots.ocr's own input (its smart_resize of the image received), built from the
detected lines by `layout_rules` (paragraphs, headings, lists, tables, page headers and
footers, reading order across columns). Any other prompt gets the page text.
"""

from __future__ import annotations

import html
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from PIL import Image, ImageDraw

from vlmswap.documents import dots_prompts
from vlmswap.documents.resize import FAMILY_RULES, smart_resize
from vlmswap.worker.engines import ink, layout_rules
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
    #: x ranges of the text's characters other than spaces, left to right, where the recognizer placed them
    chars: list[tuple[float, float]] | None = None

    @property
    def height(self) -> float:
        return max(self.y2 - self.y1, 1.0)


def split_at_gaps(box: TextBox, min_gap: float = 0.6) -> list[TextBox]:
    """A detected box cut where its characters stand apart by more than `min_gap` of its height.

    The detector often boxes a whole table row, cells a few spaces apart, as one line of text,
    and the recognizer may drop those spaces ("2.90.14.3" for "2.9  0.1  4.3"). Where its
    characters sit says what the text lost: a word space leaves a narrow gap, a column gap a
    wide one (measured on the layout corpus, bench/README.md). Each part keeps the box's height
    and its own text.
    """
    if not box.chars or len(box.chars) != sum(1 for c in box.text if not c.isspace()):
        return [box]
    where = [i for i, c in enumerate(box.text) if not c.isspace()]
    cuts = [k for k in range(1, len(box.chars)) if box.chars[k][0] - box.chars[k - 1][1] > min_gap * box.height]
    if not cuts:
        return [box]
    out = []
    for a, b in zip([0, *cuts], [*cuts, len(box.chars)]):
        text = box.text[where[a] : where[b - 1] + 1].strip()
        x1 = box.x1 if a == 0 else box.chars[a][0]
        x2 = box.x2 if b == len(box.chars) else box.chars[b - 1][1]
        out.append(TextBox(x1, box.y1, max(x2, x1 + 1), box.y2, text, box.score, box.chars[a:b]))
    return out


def dots_frame(size: tuple[int, int]) -> tuple[int, int]:
    """(width, height) of the image dots.ocr would see: its smart_resize (factor 28) of `size`.

    dots.ocr under vLLM answers, and is asked (grounding), in the pixels of its resized input;
    dots.ocr's own client maps boxes back from that size. So does this engine; a client that
    resizes first (vlmswap's pipeline, dots.ocr's grounding) sends that size and sees no change.
    """
    rule = FAMILY_RULES["dots_ocr"]
    h, w = smart_resize(size[1], size[0], rule.factor, rule.min_pixels, rule.max_pixels)
    return w, h


def to_frame(boxes: list[TextBox], size: tuple[int, int], frame: tuple[int, int]) -> list[TextBox]:
    if frame == size:
        return boxes
    sx, sy = frame[0] / size[0], frame[1] / size[1]
    return [
        TextBox(
            b.x1 * sx,
            b.y1 * sy,
            b.x2 * sx,
            b.y2 * sy,
            b.text,
            b.score,
            None if b.chars is None else [(a * sx, z * sx) for a, z in b.chars],
        )
        for b in boxes
    ]


def ink_measure(image: Image.Image, frame: tuple[int, int]) -> layout_rules.Measure:
    """ink.measure on the image's grey pixels, for boxes given in `frame` pixels."""
    page = ink.grey(np.asarray(image.convert("L")))
    sx, sy = image.size[0] / frame[0], image.size[1] / frame[1]

    def measure(box: tuple[float, float, float, float]) -> ink.Ink | None:
        return ink.measure(page, (box[0] * sx, box[1] * sy, box[2] * sx, box[3] * sy))

    return measure


def inside(box: TextBox, region: tuple[float, float, float, float], min_fraction: float = 0.5) -> bool:
    """Whether at least `min_fraction` of the box's area lies in `region`."""
    rx1, ry1, rx2, ry2 = region
    w = min(box.x2, rx2) - max(box.x1, rx1)
    h = min(box.y2, ry2) - max(box.y1, ry1)
    if w <= 0 or h <= 0:
        return False
    area = max((box.x2 - box.x1) * (box.y2 - box.y1), 1.0)
    return (w * h) / area >= min_fraction


#: dots.ocr writes an element's text as Markdown, headings with their marks.
_HEADING_MARKS = {"Title": "# ", "Section-header": "## "}


def markdown_text(e: layout_rules.Element) -> str:
    return _HEADING_MARKS.get(e.category, "") + e.text


def _element(e: layout_rules.Element, with_text: bool = True) -> dict[str, Any]:
    x1, y1, x2, y2 = e.bbox
    cell: dict[str, Any] = {
        "bbox": [int(round(x1)), int(round(y1)), int(round(x2)), int(round(y2))],
        "category": e.category,
    }
    if with_text:
        cell["text"] = markdown_text(e)
    return cell


def svg(lines: list[layout_rules.Line], image_size: tuple[int, int], view: tuple[int, int]) -> str:
    """The page's text as an SVG: one <text> per line at its place, scaled to the asked viewBox.

    A text detector sees no shapes, so this is the honest part of an image-to-SVG answer: it
    renders, keeps the words where they were, and has nothing invented.
    """
    sx, sy = view[0] / max(image_size[0], 1), view[1] / max(image_size[1], 1)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {view[0]} {view[1]}" '
        f'width="{view[0]}" height="{view[1]}">'
    ]
    for ln in lines:
        size = round(ln.height * sy * 0.8, 1)
        out.append(
            f'<text x="{round(ln.x1 * sx, 1)}" y="{round(ln.y2 * sy - ln.height * sy * 0.2, 1)}" '
            f'font-size="{size}" font-family="sans-serif">{html.escape(ln.text, quote=False)}</text>'
        )
    out.append("</svg>")
    return "\n".join(out)


def render(
    mode: str | None,
    boxes: list[TextBox],
    image_size: tuple[int, int],
    known: dots_prompts.Recognised | None = None,
    measure: layout_rules.Measure | None = None,
) -> str:
    """The answer text for one image, in dots.ocr's format for its prompts.

    Layout prompts (document and web page) get layout elements (see layout_rules); scene
    spotting gets one element per text line; OCR gets the elements' text without page headers
    and footers (as dots.ocr's OCR prompt does); grounding (boxes already cut to its region)
    and any other prompt get all the text, element by element.
    """
    if mode == "scene_spotting":
        return json.dumps(
            [
                {"bbox": [int(round(v)) for v in (ln.x1, ln.y1, ln.x2, ln.y2)], "category": "Text", "text": ln.text}
                for ln in layout_rules.lines_of(boxes)
            ],
            ensure_ascii=False,
        )
    if mode == "image_to_svg":
        view = known.size if known is not None and known.size is not None else image_size
        return svg(layout_rules.lines_of(boxes), image_size, view)
    elements = layout_rules.layout([p for b in boxes for p in split_at_gaps(b)], image_size, measure=measure)
    if mode in ("layout_all", "web_parsing"):
        return json.dumps([_element(e) for e in elements], ensure_ascii=False)
    if mode == "layout_only":
        return json.dumps([_element(e, with_text=False) for e in elements], ensure_ascii=False)
    if mode == "ocr":
        elements = [e for e in elements if e.category not in ("Page-header", "Page-footer")]
        return "\n\n".join(markdown_text(e) for e in elements)
    return "\n\n".join(e.text for e in elements)


def count_tokens(text: str) -> int:
    # Rough: whitespace-separated words stand in for tokens. RapidOCR has no tokenizer, and the
    # numbers only feed `usage` and `max_tokens`, where an estimate is honest enough.
    return len(text.split())


def split_tokens(text: str) -> list[str]:
    """The text in word-sized pieces (each with its leading whitespace); joined, they give it back."""
    pieces = re.findall(r"\s*\S+", text)
    trailing = text[len(text.rstrip()) :]
    if trailing:
        if pieces:
            pieces[-1] += trailing
        else:
            pieces = [trailing]
    return pieces


def _char_spans(chars: Any) -> list[tuple[float, float]] | None:
    """x ranges of RapidOCR's single-character results ((char, score, quad) each), or None."""
    if not chars:
        return None
    spans = []
    for item in chars:
        quad = item[2] if len(item) > 2 else None
        if quad is None:
            return None
        q = np.asarray(quad, dtype=float).reshape(-1, 2)
        spans.append((float(q[:, 0].min()), float(q[:, 0].max())))
    return spans


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


Runtime = Literal["auto", "onnxruntime", "openvino"]


def tuned_params(runtime: Literal["onnxruntime", "openvino"]) -> dict[str, Any]:
    """RapidOCR settings measured on typeset A4 pages at 150 dpi (bench/rapidocr_options.py,
    results in bench/README.md): detection on the page scaled to at most 960 px (RapidOCR's
    default detects at full size: half of the CPU time, same CER); on onnxruntime one
    recognition crop per batch (batches pad every crop to the widest), on OpenVINO RapidOCR's
    six (its kernels gain from the batch). Threads are set apart (one per model by default: a
    second thread cost more CPU than it saved on a shared machine)."""
    return {
        "Det.limit_type": "max",
        "Det.limit_side_len": 960,
        "Rec.rec_batch_num": 1 if runtime == "onnxruntime" else 6,
    }


def pick_runtime(runtime: Runtime = "auto") -> Literal["onnxruntime", "openvino"]:
    """OpenVINO when installed (the `openvino` extra), else onnxruntime (always installed).

    Both run the same ONNX models from the wheel; OpenVINO needs less than half of onnxruntime's
    CPU time per page at the same output (bench/README.md).
    """
    if runtime != "auto":
        return runtime
    try:
        import openvino  # noqa: F401
    except ImportError:
        return "onnxruntime"
    return "openvino"


class RapidOCREngine(Engine):
    """RapidOCR 3.x on OpenVINO or onnxruntime; the angle classifier is off (upright pages) unless asked for.

    `threads` sets the inference threads per model (default 1, see tuned_params); `params`
    override any RapidOCR setting (dotted keys as in RapidOCR's config.yaml).
    """

    name = "rapidocr"
    max_model_len = 65536

    def __init__(
        self,
        *,
        use_cls: bool = False,
        threads: int = 1,
        runtime: Runtime = "auto",
        params: dict[str, Any] | None = None,
    ):
        from rapidocr import EngineType

        self.runtime = pick_runtime(runtime)
        engine = EngineType(self.runtime)
        self.params: dict[str, Any] = {
            "Global.use_cls": use_cls,
            "Global.log_level": "error",
            **tuned_params(self.runtime),
            "Det.engine_type": engine,
            "Rec.engine_type": engine,
            "Cls.engine_type": engine,
            "EngineConfig.onnxruntime.intra_op_num_threads": threads,
            "EngineConfig.openvino.inference_num_threads": threads,
            **(params or {}),
        }
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
        # Character positions (RapidOCR's single-character boxes, from the recognizer's own
        # alignment, no extra model run) let split_at_gaps part table cells the detector joined.
        result = self._ocr(bgr, return_word_box=True, return_single_char_box=True)
        boxes = getattr(result, "boxes", None)
        txts = getattr(result, "txts", None)
        if boxes is None or txts is None or len(boxes) == 0:
            return []
        scores = getattr(result, "scores", None)
        if scores is None or len(scores) != len(txts):
            scores = [1.0] * len(txts)
        words = getattr(result, "word_results", None)
        if words is None or len(words) != len(txts):
            words = [None] * len(txts)
        out = []
        for quad, text, score, chars in zip(boxes, txts, scores, words):
            q = np.asarray(quad, dtype=float)
            out.append(
                TextBox(
                    float(q[:, 0].min()),
                    float(q[:, 1].min()),
                    float(q[:, 0].max()),
                    float(q[:, 1].max()),
                    str(text),
                    float(score),
                    _char_spans(chars),
                )
            )
        return out

    def generate(self, request: GenerationRequest) -> Generation:
        if self.is_sleeping:
            raise RuntimeError("engine is sleeping")
        images = request.images
        if not images:
            raise ValueError("the rapidocr engine reads images: send at least one image_url part")
        image = images[-1]
        known = dots_prompts.recognise(request.last_user_text)  # ValueError (400) for a box-less grounding prompt
        mode = known.mode if known is not None else None
        frame = dots_frame(image.size)
        boxes = to_frame(self.read(image), image.size, frame)
        if known is not None and known.box is not None:
            boxes = [b for b in boxes if inside(b, known.box)]
        text = render(mode, boxes, frame, known, ink_measure(image, frame))
        prompt_tokens = sum(count_tokens(m.text) for m in request.messages) + len(images)
        return _OCRGeneration(text, prompt_tokens, request.max_tokens)

    def sleep(self, level: int = 1) -> None:
        # Nothing sits on an accelerator; the onnx sessions stay in RAM so waking is instant.
        # Sleeping is still honest: requests are refused until wake_up.
        self._sleeping = True

    def wake_up(self) -> None:
        self._sleeping = False
