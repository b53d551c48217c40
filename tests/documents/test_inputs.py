"""Files into pages: every supported kind, sniffed by content, and every refusal in one line."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from tests.documents.conftest import DPI, encrypted_pdf_bytes, pdf_bytes, render_pages
from vlmswap.documents.inputs import DocumentError, open_bytes, open_file, parse_page_ranges, sniff


def _encode(im: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


@pytest.fixture(scope="module")
def pages():
    return render_pages(size=(400, 300), px=18).images


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_single_images_open_as_one_rgb_page(pages, fmt):
    src = open_bytes(_encode(pages[0], fmt), f"scan.{fmt.lower()}")
    (page,) = list(src.pages())
    assert (src.kind, src.page_count, page.number, page.size, page.image.mode) == (fmt.lower(), 1, 1, (400, 300), "RGB")


def test_multi_page_tiff_gives_every_frame(pages):
    data = _encode(pages[0].copy(), "TIFF", save_all=True, append_images=[p.copy() for p in pages[1:]])
    src = open_bytes(data, "fax.tiff")
    got = list(src.pages())
    assert src.page_count == 3 and [p.number for p in got] == [1, 2, 3]
    # each frame is its own page, not the first one three times
    assert [p.image.tobytes() == pages[i].tobytes() for i, p in enumerate(got)] == [True, True, True]


def test_pdf_pages_render_at_the_requested_dpi(pages):
    data = pdf_bytes(pages, dpi=72)  # 400 x 300 points
    at_150 = open_bytes(data, "x.pdf", dpi=150)
    assert at_150.kind == "pdf" and at_150.page_count == 3
    first = next(at_150.pages())
    assert first.size == (834, 625) and first.source_size == pytest.approx((400, 300))
    assert next(open_bytes(data, "x.pdf", dpi=72).pages()).size == (400, 300)


def test_kind_comes_from_the_bytes_not_the_name(pages, tmp_path):
    p = tmp_path / "really_a_jpeg.pdf"
    p.write_bytes(_encode(pages[0], "JPEG"))
    assert open_file(p).kind == "jpeg"
    assert sniff(b"%PDF-1.7\n...") == "pdf" and sniff(b"GIF89a") is None and sniff(b"PK\x03\x04") is None


def test_page_ranges():
    assert parse_page_ranges("1-3,7", 10) == [1, 2, 3, 7]
    assert parse_page_ranges(" 2 , 2-3 ", 5) == [2, 3]
    assert parse_page_ranges("4-", 6) == [4, 5, 6]
    assert parse_page_ranges(None, 3) == [1, 2, 3]
    for bad in ("0", "3-1", "a", "1-b", ","):
        with pytest.raises(DocumentError):
            parse_page_ranges(bad, 10)


def test_selected_pages_only_are_rendered_in_the_given_order():
    data = pdf_bytes(render_pages(size=(200, 100), px=12).images)
    src = open_bytes(data, "x.pdf", pages="3,1", dpi=DPI)
    assert [p.number for p in src.pages()] == [3, 1]


REFUSALS = {
    "archive.pdf": ("not an image or PDF", "unsupported_file", 415),
    "empty.png": ("file is empty (0 bytes)", "empty_file", 400),
    "corrupt.pdf": ("corrupt PDF", "corrupt_pdf", 400),
    "locked.pdf": ("encrypted PDF (needs a password)", "encrypted_pdf", 400),
    "huge.png": ("over the cap of 40000000", "image_too_large", 413),
}


@pytest.mark.parametrize("name", list(REFUSALS))
def test_bad_files_are_refused_with_one_line_naming_file_and_reason(docs_dir, name):
    reason, code, status = REFUSALS[name]
    with pytest.raises(DocumentError) as info:
        open_file(docs_dir / name)
    err = info.value
    assert str(err).startswith(f"{docs_dir / name}: ") and reason in str(err)
    assert "\n" not in str(err)
    assert (err.code, err.status) == (code, status)


def test_page_range_outside_the_document(docs_dir):
    with pytest.raises(DocumentError, match=r"report\.pdf: page range '2-5' is outside the document \(3 pages\)"):
        open_file(docs_dir / "report.pdf", pages="2-5")


def test_pdf_page_that_would_render_over_the_pixel_cap(docs_dir):
    cap = r"page 1 would render at .* over the cap of 5000000 \(lower --dpi\)"
    with pytest.raises(DocumentError, match=cap) as info:
        open_file(docs_dir / "report.pdf", dpi=300, max_pixels=5_000_000)
    assert info.value.status == 413


def test_truncated_image_is_refused():
    data = _encode(Image.new("RGB", (300, 300), "red"), "PNG")
    with pytest.raises(DocumentError, match=r"truncated or corrupt|not a readable image"):
        open_bytes(data[: len(data) // 2], "cut.png")


def test_missing_file_and_directory(tmp_path):
    with pytest.raises(DocumentError, match="No such file"):
        open_file(tmp_path / "nope.pdf")
    with pytest.raises(DocumentError, match="is a directory"):
        open_file(tmp_path)


def test_encrypted_pdf_bytes_are_what_pdfium_calls_password_protected():
    import pypdfium2 as pdfium

    with pytest.raises(pdfium.PdfiumError) as info:
        pdfium.PdfDocument(encrypted_pdf_bytes())
    assert info.value.err_code == pdfium.raw.FPDF_ERR_PASSWORD
