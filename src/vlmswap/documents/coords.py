"""Boxes from the model's input pixels back onto the original page.

Parsers hand over boxes in model-input pixels (relative 0-1000 formats are converted there).
The page and the input have the same aspect up to rounding to the patch size, so each axis
is scaled on its own: x_page = x_input * page_w / input_w. Then the box is clamped to the
page, and boxes with no area left (a model pointing outside the image, or x2 <= x1) go.
"""

from __future__ import annotations

from collections.abc import Sequence

#: A box narrower or lower than this many page pixels after clamping carries no layout.
MIN_SIDE = 1.0


def relative_to_input(box: Sequence[float], input_w: int, input_h: int, scale: float = 1000.0) -> list[float]:
    """A box in 0..scale relative coordinates (Qwen2-VL, Qwen3-VL) as input pixels."""
    x1, y1, x2, y2 = box
    return [x1 / scale * input_w, y1 / scale * input_h, x2 / scale * input_w, y2 / scale * input_h]


def input_to_page(box: Sequence[float], input_size: tuple[int, int], page_size: tuple[int, int]) -> list[float] | None:
    """Map, order, clamp; None when nothing of the box is left on the page."""
    (iw, ih), (pw, ph) = input_size, page_size
    sx, sy = pw / iw, ph / ih
    x1, y1, x2, y2 = (float(v) for v in box)
    x1, x2 = sorted((x1 * sx, x2 * sx))
    y1, y2 = sorted((y1 * sy, y2 * sy))
    x1, x2 = min(max(x1, 0.0), pw), min(max(x2, 0.0), pw)
    y1, y2 = min(max(y1, 0.0), ph), min(max(y2, 0.0), ph)
    if x2 - x1 < MIN_SIDE or y2 - y1 < MIN_SIDE:
        return None
    return [round(x1, 1), round(y1, 1), round(x2, 1), round(y2, 1)]


def page_to_input(box: Sequence[float], page_size: tuple[int, int], input_size: tuple[int, int]) -> list[float]:
    """The inverse mapping (used for grounding prompts and tests)."""
    (pw, ph), (iw, ih) = page_size, input_size
    x1, y1, x2, y2 = box
    return [x1 * iw / pw, y1 * ih / ph, x2 * iw / pw, y2 * ih / ph]
