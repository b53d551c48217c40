"""What the UI tests share: the app's path, the test registry, pages rendered with Pillow."""

from __future__ import annotations

import io
import time
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from tests.support import FONT, worker_cmd

ROOT = Path(__file__).resolve().parents[2]
APP_FILE = ROOT / "src" / "vlmswap" / "ui" / "app.py"

PAGE_ONE = [
    "Quarterly report of the harbour office",
    "The quick brown fox jumps over the lazy dog.",
    "Pack my box with five dozen liquor jugs.",
]
PAGE_TWO = ["Second page of the report", "Sphinx of black quartz, judge my vow."]
FAILURE_LINE = "RuntimeError: CUDA out of memory (simulated for the UI test)"


def click_keyed(page: Any, key: str, timeout_s: float = 30.0) -> None:
    """Click the button of the Streamlit element with key `key` (Playwright's sync page).

    The sidebar is a fragment that reruns every few seconds: for a moment the card being
    replaced and its successor can both be in the page, two buttons for one key, and
    Playwright's strict locator refuses to choose. Click once one is left.
    """
    from playwright.sync_api import Error

    locator = page.locator(f".st-key-{key} button")
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            locator.click(timeout=2_000)
            return
        except Error:  # two of them for a moment, or not there yet
            if time.monotonic() > deadline:
                raise
            page.wait_for_timeout(200)


def registry(tiny_model: Path) -> dict:
    return {
        "gateway": {
            "stop_grace_s": 5,
            "drain_timeout_s": 5,
            "vram_release_timeout_s": 1,
            "backoff_initial_s": 0,
            "backoff_max_s": 0,
        },
        "models": {
            "ocr-a": {
                "served_name": "ocr-a",
                "cmd": worker_cmd("rapidocr"),
                "family": "rapidocr",
                "capabilities": ["ocr", "layout"],
                "startup_timeout_s": 120,
            },
            "ocr-b": {
                "served_name": "ocr-b",
                "cmd": worker_cmd("rapidocr"),
                "family": "rapidocr",
                "capabilities": ["ocr", "layout"],
                "startup_timeout_s": 120,
                "sleep_mode": True,
            },
            "tiny-chat": {
                "served_name": "tiny-chat",
                "family": "qwen2_vl",
                "capabilities": ["chat", "ocr"],
                "cmd": worker_cmd("transformers", "--model", str(tiny_model), "--device", "cpu"),
                "startup_timeout_s": 180,
            },
            "broken": {
                "served_name": "broken",
                "family": "generic",
                "capabilities": ["chat"],
                "cmd": [
                    "${PYTHON}",
                    "-c",
                    f"import sys; print('loading weights'); print({FAILURE_LINE!r}); sys.stdout.flush(); sys.exit(3)",
                ],
                "startup_timeout_s": 30,
            },
            "big-gpu": {
                "served_name": "big-gpu",
                "family": "qwen3_vl",
                "capabilities": ["chat", "grounding"],
                "vram_gb": 6.6,
                "cmd": ["vllm", "serve", "Qwen/Qwen3-VL-2B-Instruct", "--port", "${PORT}"],
            },
        },
    }


def render_page(lines: list[str], size: int = 30, width: int = 1000) -> Image.Image:
    font = ImageFont.truetype(FONT, size)
    im = Image.new("RGB", (width, 80 + len(lines) * (size + 26)), "white")
    draw = ImageDraw.Draw(im)
    for i, line in enumerate(lines):
        draw.text((40, 40 + i * (size + 26)), line, font=font, fill="black")
    return im


DOCUMENT = [
    (44, "Harbour Office Quarterly Report"),
    (26, "Summary of the third quarter"),
    (22, "The quick brown fox jumps over the lazy dog while the ships wait."),
    (22, "Cargo volume rose by twelve percent compared with last year, and"),
    (22, "the new crane on pier four moved its first containers in August."),
    (26, "Outlook"),
    (22, "Pack my box with five dozen liquor jugs before the winter season."),
    (22, "Dredging of the northern channel starts in November as planned."),
]


def render_document() -> Image.Image:
    """A page that looks like a document (title, headings, paragraphs), for the browser test."""
    im = Image.new("RGB", (1100, 760), "white")
    draw = ImageDraw.Draw(im)
    y = 60
    for size, line in DOCUMENT:
        gap = 30 if size > 22 else 14
        if size == 26 and y > 60:
            y += 24
        draw.text((70, y), line, font=ImageFont.truetype(FONT, size), fill="black")
        y += size + gap
    draw.text((70, 700), "Page 1 of 1", font=ImageFont.truetype(FONT, 16), fill="black")
    return im


def png_bytes(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()
