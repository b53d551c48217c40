"""Files -> pages: images (PNG, JPEG, WebP, TIFF incl. multi-page) and PDFs (pypdfium2).

The kind is sniffed from the first bytes, never from the extension: a `.pdf` that is a
JPEG is read as a JPEG, a `.png` that is a ZIP is refused. Everything that can be checked
before any model runs is checked when the file is opened (kind, encryption, corruption,
page range, pixel caps of every selected page), so a bad file fails fast and alone.
PDFs are rendered one page at a time, when asked for, at the chosen dpi.
"""

from __future__ import annotations

import io
import math
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image

from vlmswap.api.images import DEFAULT_MAX_PIXELS, ImageError, open_image

#: Bytes read from one local file at most (a scanned PDF can be large; uploads have their own cap).
DEFAULT_MAX_FILE_BYTES = 512 * 1024 * 1024
DEFAULT_DPI = 150.0
SUPPORTED = "PDF, PNG, JPEG, WebP, TIFF"

# PDFium is not thread-safe; the gateway opens uploads in worker threads.
_PDFIUM_LOCK = threading.RLock()


class DocumentError(ValueError):
    """A file that cannot be used, with the reason; str() is one line: `FILE: reason`."""

    def __init__(self, path: str, reason: str, code: str = "invalid_document", status: int = 400):
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.code = code
        self.status = status


@dataclass
class PageImage:
    """One page as the pipeline sees it: RGB pixels, its 1-based number, its size at the source."""

    number: int
    image: Image.Image
    source_size: tuple[float, float]  # images: pixels; PDF pages: points (1/72 inch)

    @property
    def size(self) -> tuple[int, int]:
        return self.image.size


def sniff(data: bytes) -> str | None:
    """'pdf', 'png', 'jpeg', 'webp', 'tiff' from the magic bytes, or None."""
    head = data[:16]
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    if b"%PDF-" in data[:1024]:  # the spec tolerates junk before the header, and PDFium does too
        return "pdf"
    return None


def parse_page_ranges(spec: str | None, count: int, path: str = "<input>") -> list[int]:
    """'1-3,7' -> [1, 2, 3, 7] (1-based, in the order given, without repeats); None/'' -> all."""
    if spec is None or not spec.strip():
        return list(range(1, count + 1))
    out: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if not part:
            continue
        lo_s, dash, hi_s = part.partition("-")
        try:
            lo = int(lo_s) if lo_s.strip() else 1
            hi = (int(hi_s) if hi_s.strip() else count) if dash else lo
        except ValueError:
            raise DocumentError(path, f"bad page range {spec!r} (expected e.g. 1-3,7)", "invalid_pages") from None
        if lo < 1 or hi < lo:
            raise DocumentError(path, f"bad page range {part!r} in {spec!r}", "invalid_pages")
        if hi > count:
            noun = "page" if count == 1 else "pages"
            raise DocumentError(
                path, f"page range {part!r} is outside the document ({count} {noun})", "page_out_of_range"
            )
        out.extend(n for n in range(lo, hi + 1) if n not in out)
    if not out:
        raise DocumentError(path, f"bad page range {spec!r} (expected e.g. 1-3,7)", "invalid_pages")
    return out


@dataclass
class SourceFile:
    """An opened, validated file; `pages()` yields the selected pages in order."""

    path: str
    kind: str
    page_count: int
    selected: list[int]
    dpi: float = DEFAULT_DPI
    _images: dict[int, PageImage] = field(default_factory=dict, repr=False)
    _pdf: object | None = field(default=None, repr=False)

    def page(self, number: int) -> PageImage:
        if number in self._images:
            return self._images[number]
        if self._pdf is None:
            raise DocumentError(self.path, f"page {number} was not selected", "page_out_of_range")
        return _render_pdf_page(self._pdf, self.path, number, self.dpi)

    def pages(self) -> Iterator[PageImage]:
        for n in self.selected:
            yield self.page(n)

    def close(self) -> None:
        if self._pdf is not None:
            with _PDFIUM_LOCK:
                self._pdf.close()  # type: ignore[attr-defined]
            self._pdf = None
        self._images.clear()

    def __enter__(self) -> SourceFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_file(path: str | os.PathLike[str], max_bytes: int = DEFAULT_MAX_FILE_BYTES) -> bytes:
    p = Path(path)
    try:
        if p.is_dir():
            raise DocumentError(str(path), "is a directory, not a file", "not_a_file")
        size = p.stat().st_size
        if size > max_bytes:
            raise DocumentError(str(path), f"file is {size} bytes, over the cap of {max_bytes}", "file_too_large", 413)
        return p.read_bytes()
    except OSError as exc:
        raise DocumentError(str(path), exc.strerror or str(exc), "unreadable_file") from None


def open_file(
    path: str | os.PathLike[str],
    *,
    pages: str | None = None,
    dpi: float = DEFAULT_DPI,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    max_bytes: int = DEFAULT_MAX_FILE_BYTES,
) -> SourceFile:
    return open_bytes(read_file(path, max_bytes), str(path), pages=pages, dpi=dpi, max_pixels=max_pixels)


def open_bytes(
    data: bytes, path: str, *, pages: str | None = None, dpi: float = DEFAULT_DPI, max_pixels: int = DEFAULT_MAX_PIXELS
) -> SourceFile:
    """Validate and open a file's bytes; raises DocumentError naming `path` and the reason."""
    if not data:
        raise DocumentError(path, "file is empty (0 bytes)", "empty_file")
    if not (1 <= dpi <= 1200):
        raise DocumentError(path, f"dpi {dpi:g} is outside 1..1200", "invalid_dpi")
    kind = sniff(data)
    if kind is None:
        raise DocumentError(path, f"not an image or PDF (supported: {SUPPORTED})", "unsupported_file", 415)
    if kind == "pdf":
        return _open_pdf(data, path, pages, dpi, max_pixels)
    return _open_image(data, path, kind, pages, max_pixels)


def _image_error(path: str, exc: ImageError) -> DocumentError:
    status = 413 if exc.code == "image_too_large" else 400
    return DocumentError(path, str(exc), exc.code, status)


def _open_image(data: bytes, path: str, kind: str, pages: str | None, max_pixels: int) -> SourceFile:
    try:
        first = open_image(data, max_pixels=max_pixels)
    except ImageError as exc:
        raise _image_error(path, exc) from None
    count = 1
    if kind == "tiff":
        with Image.open(io.BytesIO(data)) as probe:
            count = max(1, int(getattr(probe, "n_frames", 1)))
    selected = parse_page_ranges(pages, count, path)
    images: dict[int, PageImage] = {}
    for n in selected:
        try:
            im: Image.Image = first if n == 1 else open_image(data, max_pixels=max_pixels, frame=n - 1)
        except ImageError as exc:
            status = 413 if exc.code == "image_too_large" else 400
            raise DocumentError(path, f"page {n}: {exc}", exc.code, status) from None
        if im.width * im.height > max_pixels:
            raise DocumentError(
                path,
                f"page {n} is {im.width}x{im.height} = {im.width * im.height} pixels, over the cap of {max_pixels}",
                "image_too_large",
                413,
            )
        images[n] = PageImage(n, im, (float(im.width), float(im.height)))
    return SourceFile(path, kind, count, selected, _images=images)


def _open_pdf(data: bytes, path: str, pages: str | None, dpi: float, max_pixels: int) -> SourceFile:
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            pdf = pdfium.PdfDocument(data)
        except pdfium.PdfiumError as exc:
            if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_PASSWORD:
                raise DocumentError(path, "encrypted PDF (needs a password)", "encrypted_pdf") from None
            if getattr(exc, "err_code", None) == pdfium.raw.FPDF_ERR_SECURITY:
                raise DocumentError(path, "PDF uses an unsupported security handler", "encrypted_pdf") from None
            raise DocumentError(path, f"corrupt PDF ({_pdfium_reason(exc)})", "corrupt_pdf") from None
        try:
            count = len(pdf)
            if count == 0:
                raise DocumentError(path, "PDF has no pages", "corrupt_pdf")
            selected = parse_page_ranges(pages, count, path)
            scale = dpi / 72.0
            for n in selected:
                w_pt, h_pt = pdf.get_page_size(n - 1)
                w, h = math.ceil(w_pt * scale), math.ceil(h_pt * scale)  # PDFium rounds up
                if w * h > max_pixels:
                    raise DocumentError(
                        path,
                        f"page {n} would render at {w}x{h} = {w * h} pixels at {dpi:g} dpi, "
                        f"over the cap of {max_pixels} (lower --dpi)",
                        "image_too_large",
                        413,
                    )
                if w < 1 or h < 1:
                    raise DocumentError(path, f"page {n} has no area", "corrupt_pdf")
        except DocumentError:
            pdf.close()
            raise
        except pdfium.PdfiumError as exc:
            pdf.close()
            raise DocumentError(path, f"corrupt PDF ({_pdfium_reason(exc)})", "corrupt_pdf") from None
    return SourceFile(path, "pdf", count, selected, dpi=dpi, _pdf=pdf)


def _pdfium_reason(exc: Exception) -> str:
    msg = str(exc).strip().rstrip(".")
    return msg.split("(", 1)[1].rstrip(")") if "(" in msg else msg


def _render_pdf_page(pdf: object, path: str, number: int, dpi: float) -> PageImage:
    import pypdfium2 as pdfium

    with _PDFIUM_LOCK:
        try:
            page = pdf[number - 1]  # type: ignore[index]
            try:
                size = page.get_size()
                bitmap = page.render(scale=dpi / 72.0)
                im = bitmap.to_pil()
            finally:
                page.close()
        except pdfium.PdfiumError as exc:
            raise DocumentError(path, f"page {number}: corrupt PDF ({_pdfium_reason(exc)})", "corrupt_pdf") from None
    if im.mode != "RGB":
        im = im.convert("RGB")
    return PageImage(number, im, (float(size[0]), float(size[1])))
