"""Fixtures for the worker's tests: a real rapidocr worker process, pages rendered with Pillow."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.support import FONT, free_port, running, worker_argv

# Eight English sentences: the known text of the page the OCR tests render.
PAGE_LINES = [
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs, please.",
    "A worker serves one model at a time on a small GPU.",
    "Reading order runs from top to bottom, then left to right.",
    "Every request gets an answer, even a malformed one.",
    "Sphinx of black quartz, judge my vow and be quick.",
    "The invoice total was 1,234.56 euros on 12 March 2025.",
    "Bright vixens jump while dozy fowl quack at dawn.",
]

MAX_BODY_MB = 2  # small, so the size-cap tests send little


@dataclass
class Page:
    image: Image.Image
    lines: list[str]
    boxes: list[tuple[int, int, int, int]]  # drawn ink box of each line (ImageDraw.textbbox)

    @property
    def text(self) -> str:
        return "\n".join(self.lines)


def render_page(
    lines: list[str],
    *,
    size: int = 28,
    width: int = 1000,
    left: int = 40,
    top: int = 40,
    line_gap: int = 22,
    min_height: int = 0,
) -> Page:
    """Lines of black DejaVuSans on white. Small images get `min_height`: RapidOCR scales an
    image's short side up to 736 px before detection, so a thin strip costs as much as a page."""
    font = ImageFont.truetype(FONT, size)
    height = max(top * 2 + len(lines) * (size + line_gap), min_height)
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    boxes = []
    for i, line in enumerate(lines):
        xy = (left, top + i * (size + line_gap))
        draw.text(xy, line, font=font, fill="black")
        boxes.append(tuple(int(v) for v in draw.textbbox(xy, line, font=font)))
    return Page(im, list(lines), boxes)  # type: ignore[arg-type]


def png_data_url(im: Image.Image) -> str:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def chat_body(image_url: str | None, prompt: str, *, model: str = "rapidocr", **extra: object) -> dict:
    content: list[dict] = []
    if image_url is not None:
        content.append({"type": "image_url", "image_url": {"url": image_url}})
    content.append({"type": "text", "text": prompt})
    return {"model": model, "messages": [{"role": "user", "content": content}], **extra}


@dataclass
class Worker:
    url: str  # base URL, no trailing slash
    log: Path
    served_name: str

    def client(self, timeout: float = 60.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=timeout, trust_env=False)


@pytest.fixture(scope="session")
def page() -> Page:
    return render_page(PAGE_LINES)


@pytest.fixture(scope="session")
def small_image_url() -> str:
    """One short line: the cheapest valid request, used to check the worker still serves."""
    return png_data_url(render_page(["Still serving."], width=320, min_height=320).image)


@pytest.fixture(scope="session")
def rapidocr_worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    port = free_port()
    log = tmp_path_factory.mktemp("worker") / "worker.log"
    argv = worker_argv("rapidocr", port, "--max-body-mb", str(MAX_BODY_MB))
    with running(argv, f"http://127.0.0.1:{port}/health", timeout=120, log_path=log):
        yield Worker(f"http://127.0.0.1:{port}", log, "rapidocr")
