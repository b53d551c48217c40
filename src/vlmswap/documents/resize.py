"""The model input size: Qwen2-VL's smart_resize, per family, done on the client.

Vision models of the Qwen lineage (dots.ocr included) resize every image so both sides are
multiples of the patch merge size and the area is inside [min_pixels, max_pixels]. Boxes come
back in the pixels of *that* image. We resize on the client to exactly that size, so the
server's own resize is a no-op and we know the input size for certain, and keep it with the
page for the mapping back (see coords.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

from PIL import Image


def smart_resize(
    height: int, width: int, factor: int = 28, min_pixels: int = 56 * 56, max_pixels: int = 14 * 14 * 4 * 1280
) -> tuple[int, int]:
    """(height, width) as transformers' Qwen2-VL image processor computes it (same rounding)."""
    if max(height, width) / min(height, width) > 200:
        ratio = max(height, width) / min(height, width)
        raise ValueError(f"absolute aspect ratio must be smaller than 200, got {ratio}")
    h_bar = round(height / factor) * factor
    w_bar = round(width / factor) * factor
    if h_bar * w_bar > max_pixels:
        beta = math.sqrt((height * width) / max_pixels)
        h_bar = max(factor, math.floor(height / beta / factor) * factor)
        w_bar = max(factor, math.floor(width / beta / factor) * factor)
    elif h_bar * w_bar < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h_bar = math.ceil(height * beta / factor) * factor
        w_bar = math.ceil(width * beta / factor) * factor
    return h_bar, w_bar


@dataclass(frozen=True)
class ResizeRule:
    """How a family sizes its input; factor 0 means the model takes the image as it is."""

    factor: int
    min_pixels: int
    max_pixels: int


#: From each model's preprocessor_config.json (patch 14 x merge 2 = 28; Qwen3-VL: patch 16 x 2 = 32).
FAMILY_RULES: dict[str, ResizeRule] = {
    "dots_ocr": ResizeRule(28, 3136, 11_289_600),
    "rapidocr": ResizeRule(28, 3136, 11_289_600),  # answers like dots.ocr, so it gets dots.ocr's input
    "qwen2_vl": ResizeRule(28, 3136, 12_845_056),
    "qwen2_5_vl": ResizeRule(28, 3136, 12_845_056),
    "qwen3_vl": ResizeRule(32, 65_536, 16_777_216),
    "phi3_v": ResizeRule(0, 0, 0),  # text only: no boxes to map, its processor crops itself
    "generic": ResizeRule(0, 0, 0),
}


class SizingSpec(Protocol):
    """What resizing needs of a model: its family and its resize bounds (ModelSpec has them)."""

    @property
    def family(self) -> str: ...
    @property
    def min_pixels(self) -> int | None: ...
    @property
    def max_pixels(self) -> int | None: ...


def rule_for(spec: SizingSpec) -> ResizeRule:
    """The family's rule with the model's own min_pixels/max_pixels from the registry, if set."""
    base = FAMILY_RULES.get(spec.family, FAMILY_RULES["generic"])
    return ResizeRule(base.factor, spec.min_pixels or base.min_pixels, spec.max_pixels or base.max_pixels)


def input_size(width: int, height: int, rule: ResizeRule) -> tuple[int, int]:
    """(width, height) of the image the model should see."""
    if rule.factor <= 0:
        return width, height
    h, w = smart_resize(height, width, rule.factor, rule.min_pixels, rule.max_pixels)
    return w, h


def to_model_input(image: Image.Image, rule: ResizeRule) -> Image.Image:
    """The page resized to the model's input size (unchanged when it already is)."""
    w, h = input_size(image.width, image.height, rule)
    if (w, h) == image.size:
        return image
    return image.resize((w, h), Image.Resampling.BICUBIC)
