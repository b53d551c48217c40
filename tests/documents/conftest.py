"""Documents the tests render themselves (known text, known line boxes) and files that must be refused."""

from __future__ import annotations

import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image, ImageDraw, ImageFont

from tests.support import FONT

DPI = 100  # A4 at 100 dpi: 827 x 1169 px; small enough for a shared 2-core CI
A4_PX = (827, 1169)
PAGE_TEXTS = [
    [
        "Quarterly report of the vlmswap project.",
        "The quick brown fox jumps over the lazy dog.",
        "Invoice number 4711 dated 26 November 2026.",
    ],
    [
        "Second page: results and measurements.",
        "Pack my box with five dozen liquor jugs.",
        "Total amount due: 1,234.56 EUR.",
    ],
    [
        "Third page closes the document.",
        "Sphinx of black quartz, judge my vow.",
        "How vexingly quick daft zebras jump!",
    ],
]


@dataclass
class Rendered:
    images: list[Image.Image]
    texts: list[list[str]]
    boxes: list[list[tuple[int, int, int, int]]]  # per page, per line: the ink's box in page pixels


def render_pages(texts: list[list[str]] = PAGE_TEXTS, size: tuple[int, int] = A4_PX, px: int = 22) -> Rendered:
    font = ImageFont.truetype(FONT, px)
    images, boxes = [], []
    for lines in texts:
        im = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(im)
        page_boxes = []
        for i, line in enumerate(lines):
            xy = (80, 100 + i * int(px * 2.4))
            draw.text(xy, line, font=font, fill="black")
            page_boxes.append(tuple(int(v) for v in draw.textbbox(xy, line, font=font)))
        images.append(im)
        boxes.append(page_boxes)
    return Rendered(images, texts, boxes)


def pdf_bytes(images: list[Image.Image], dpi: int = DPI) -> bytes:
    buf = io.BytesIO()
    images[0].copy().save(buf, "PDF", save_all=True, append_images=[im.copy() for im in images[1:]], resolution=dpi)
    return buf.getvalue()


def encrypted_pdf_bytes() -> bytes:
    """A PDF with a Standard security handler whose user password is not empty."""
    objs = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 200 200] >>",
        b"<< /Filter /Standard /V 1 /R 2 /O <" + b"11" * 32 + b"> /U <" + b"22" * 32 + b"> /P -4 >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, o in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + o + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += (
        f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R /Encrypt 4 0 R "
        "/ID [<0123456789abcdef0123456789abcdef><0123456789abcdef0123456789abcdef>] >>\n"
    ).encode()
    out += f"startxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def big_png_bytes(pixels_over: int = 40_000_000) -> bytes:
    side = int(pixels_over**0.5) + 100
    buf = io.BytesIO()
    Image.new("1", (side, side), 1).save(buf, "PNG")
    return buf.getvalue()


@pytest.fixture(scope="session")
def rendered() -> Rendered:
    return render_pages()


@pytest.fixture(scope="session")
def docs_dir(tmp_path_factory: pytest.TempPathFactory, rendered: Rendered) -> Path:
    """Good and bad files, written once per session."""
    d = tmp_path_factory.mktemp("docs")
    (d / "report.pdf").write_bytes(pdf_bytes(rendered.images))
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a.txt", "not a document")
    (d / "archive.pdf").write_bytes(buf.getvalue())  # a ZIP wearing a .pdf name
    (d / "empty.png").write_bytes(b"")
    good = pdf_bytes(rendered.images[:1])
    (d / "corrupt.pdf").write_bytes(good[:9] + b"\x00garbage" * 50)
    (d / "locked.pdf").write_bytes(encrypted_pdf_bytes())
    (d / "huge.png").write_bytes(big_png_bytes())
    return d
