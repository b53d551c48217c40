"""Fixtures for the transformers engine's tests: the tiny Qwen2-VL loaded in-process."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.support import FONT


@pytest.fixture(scope="session")
def engine(tiny_model_dir: Path):
    """One loaded engine for the session (CPU, fp32); tests that sleep it wake it again."""
    from vlmswap.worker.engines.transformers_engine import TransformersEngine

    eng = TransformersEngine(str(tiny_model_dir), device="cpu")
    eng.load()
    yield eng
    if eng.is_sleeping:
        eng.wake_up()


def picture(text: str, color: str = "white", size: tuple[int, int] = (224, 112)) -> Image.Image:
    """A small RGB picture with a word on it: different pictures must give different answers."""
    im = Image.new("RGB", size, color)
    ImageDraw.Draw(im).text((10, 40), text, font=ImageFont.truetype(FONT, 24), fill="black")
    return im
