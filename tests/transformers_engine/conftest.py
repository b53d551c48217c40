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


SERVED_NAME = "tiny-qwen2vl"


@pytest.fixture(scope="module")
def tiny_worker(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """A real `vlmswap worker --engine transformers` process serving the tiny Qwen2-VL on CPU."""
    from tests.support import free_port, running, worker_argv

    port = free_port()
    log = tmp_path_factory.mktemp("tiny-worker") / "worker.log"
    argv = worker_argv(
        "transformers", port, "--model", str(tiny_model_dir), "--served-model-name", SERVED_NAME, "--device", "cpu"
    )
    with running(argv, f"http://127.0.0.1:{port}/health", timeout=180, log_path=log):
        yield f"http://127.0.0.1:{port}"
