"""Fixtures for the UI tests: a real gateway subprocess over a small registry, rendered pages.

The registry holds two embedded rapidocr models (cheap, real switches between them), the
tiny random-weight Qwen2-VL for chat, a model whose process dies at start with a telling
log line, and a vLLM model that cannot run here.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import httpx
import pytest
import yaml
from PIL import Image, ImageDraw, ImageFont

from tests.support import FONT, PY, free_port, running

ROOT = Path(__file__).resolve().parents[2]
APP_FILE = ROOT / "src" / "vlmswap" / "ui" / "app.py"

PAGE_ONE = ["Quarterly report of the harbour office", "The quick brown fox jumps over the lazy dog.",
            "Pack my box with five dozen liquor jugs."]
PAGE_TWO = ["Second page of the report", "Sphinx of black quartz, judge my vow."]
FAILURE_LINE = "RuntimeError: CUDA out of memory (simulated for the UI test)"


def _worker(engine: str, *extra: str) -> list[str]:
    return ["${PYTHON}", "-m", "vlmswap", "worker", "--engine", engine, *extra,
            "--port", "${PORT}", "--served-model-name", "${SERVED_NAME}"]


def registry(tiny_model: Path) -> dict:
    return {
        "gateway": {"stop_grace_s": 5, "drain_timeout_s": 5, "vram_release_timeout_s": 1,
                    "backoff_initial_s": 0, "backoff_max_s": 0},
        "models": {
            "ocr-a": {"served_name": "ocr-a", "cmd": _worker("rapidocr"), "family": "rapidocr",
                      "capabilities": ["ocr", "layout"], "startup_timeout_s": 120},
            "ocr-b": {"served_name": "ocr-b", "cmd": _worker("rapidocr"), "family": "rapidocr",
                      "capabilities": ["ocr", "layout"], "startup_timeout_s": 120},
            "tiny-chat": {"served_name": "tiny-chat", "family": "qwen2_vl", "capabilities": ["chat", "ocr"],
                          "cmd": _worker("transformers", "--model", str(tiny_model), "--device", "cpu"),
                          "startup_timeout_s": 180},
            "broken": {"served_name": "broken", "family": "generic", "capabilities": ["chat"],
                       "cmd": ["${PYTHON}", "-c", f"import sys; print('loading weights'); print({FAILURE_LINE!r}); "
                                                  "sys.stdout.flush(); sys.exit(3)"],
                       "startup_timeout_s": 30},
            "big-gpu": {"served_name": "big-gpu", "family": "qwen3_vl", "capabilities": ["chat", "grounding"],
                        "vram_gb": 6.6, "cmd": ["vllm", "serve", "Qwen/Qwen3-VL-2B-Instruct", "--port", "${PORT}"]},
        },
    }


@dataclass
class GatewayProc:
    url: str
    log: Path

    def status(self) -> dict:
        return httpx.get(f"{self.url}/api/status", timeout=10, trust_env=False).json()

    def resident(self) -> str | None:
        from vlmswap.ui.view import resident_name

        return resident_name(self.status())

    def unload_all(self, timeout: float = 60.0) -> None:
        """Unload whatever is resident and wait until every model is stopped (or failed)."""
        from vlmswap.ui.view import models

        httpx.post(f"{self.url}/api/unload", timeout=60, trust_env=False)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            st = self.status()
            if st.get("switch") is None and all(m.get("state") in ("stopped", "failed") for m in models(st)):
                return
            time.sleep(0.05)
        raise TimeoutError(f"the gateway did not unload within {timeout}s: {self.status()}")


@pytest.fixture(scope="session")
def ui_gateway(tmp_path_factory: pytest.TempPathFactory, tiny_model_dir: Path) -> Iterator[GatewayProc]:
    """One real gateway for the UI tests; each test resets it to 'nothing resident'."""
    d = tmp_path_factory.mktemp("ui-gateway")
    reg = d / "registry.yaml"
    reg.write_text(yaml.safe_dump(registry(tiny_model_dir)))
    port = free_port()
    log = d / "gateway.log"
    argv = [PY, "-m", "vlmswap", "serve", "--config", str(reg), "--port", str(port)]
    with running(argv, f"http://127.0.0.1:{port}/api/status", timeout=60, log_path=log):
        yield GatewayProc(f"http://127.0.0.1:{port}", log)


@pytest.fixture
def gateway(ui_gateway: GatewayProc, monkeypatch: pytest.MonkeyPatch) -> GatewayProc:
    """The gateway with nothing resident, and the app pointed at it."""
    ui_gateway.unload_all()
    monkeypatch.setenv("VLMSWAP_GATEWAY_URL", ui_gateway.url)
    return ui_gateway


@pytest.fixture
def app(gateway: GatewayProc):
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(APP_FILE), default_timeout=240)
    at.run()
    assert not at.exception, at.exception
    return at


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


@pytest.fixture(scope="session")
def page_png() -> bytes:
    return png_bytes(render_page(PAGE_ONE))


@pytest.fixture(scope="session")
def document_png() -> bytes:
    return png_bytes(render_document())


@pytest.fixture(scope="session")
def two_page_pdf() -> bytes:
    """A real two-page PDF (Pillow writes it; pypdfium2 renders it back)."""
    a, b = render_page(PAGE_ONE), render_page(PAGE_TWO)
    buf = io.BytesIO()
    a.save(buf, format="PDF", save_all=True, append_images=[b], resolution=150)
    return buf.getvalue()


@pytest.fixture
def ui_server(gateway: GatewayProc, tmp_path: Path) -> Iterator[str]:
    """`vlmswap ui` as users run it, against the test gateway."""
    port = free_port()
    argv = [PY, "-m", "vlmswap", "ui", "--gateway", gateway.url, "--port", str(port)]
    with running(argv, f"http://127.0.0.1:{port}/_stcore/health", timeout=90, log_path=tmp_path / "ui.log"):
        yield f"http://127.0.0.1:{port}"

