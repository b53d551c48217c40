"""Markdown rules, annotated PNGs, JSON per page and the ZIP; the JSON contract round-trips."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
from PIL import Image

from vlmswap.documents import export
from vlmswap.documents.layout import Block, Document, Page


def sample_doc() -> Document:
    blocks = [
        Block(0, "Page-header", [10, 5, 390, 20], "ACME Corp - confidential"),
        Block(1, "Title", [20, 30, 380, 60], "Annual report"),
        Block(2, "Section-header", [20, 70, 300, 90], "Results"),
        Block(3, "Text", [20, 100, 380, 140], "Revenue grew by *12%*."),
        Block(4, "Formula", [20, 150, 380, 180], "\\[ E = mc^2 \\]"),
        Block(5, "Table", [20, 190, 380, 260], "<table><tr><td>a</td><td>1</td></tr></table>"),
        Block(6, "Picture", [100, 270, 300, 370], ""),
        Block(7, "Caption", [100, 372, 300, 385], "Figure 1: growth"),
        Block(8, "List-item", [20, 390, 380, 400], "first point"),
        Block(9, "Page-footer", [180, 420, 220, 440], "Page 1"),
    ]
    page = Page(
        1,
        400,
        450,
        392,
        448,
        blocks,
        model="m",
        mode="layout",
        timings={"model_s": 1.5},
        flags=["repair:code_fence"],
        raw_output="```json ...",
    )
    page2 = Page(2, 400, 450, 392, 448, [Block(0, "Text", None, "Text-mode paragraph.")], model="m", mode="text")
    return Document("scans/report 2025.pdf", [page, page2], model="m", mode="layout")


def test_markdown_follows_dots_ocr_conventions():
    md = export.document_markdown(sample_doc())
    assert "ACME Corp" not in md and "Page 1\n" not in md  # header and footer left out
    assert "# Annual report" in md and "## Results" in md
    assert "$$\nE = mc^2\n$$" in md
    assert "<table><tr><td>a</td><td>1</td></tr></table>" in md
    assert "![Picture 1.6](images/report_2025.page0001.block006.png)" in md
    assert "*Figure 1: growth*" in md and "- first point" in md
    assert "Text-mode paragraph." in md
    assert md.index("# Annual report") < md.index("Revenue") < md.index("$$") < md.index("<table>")
    assert md.index("<!-- page 1 -->") < md.index("<!-- page 2 -->")


def test_headers_and_footers_stay_in_the_json():
    d = sample_doc().to_dict()
    cats = [b["category"] for b in d["pages"][0]["blocks"]]
    assert "Page-header" in cats and "Page-footer" in cats


def test_json_contract_round_trips_and_is_plain_json():
    doc = sample_doc()
    text = json.dumps(doc.to_dict())
    back = Document.from_dict(json.loads(text))
    assert back == doc
    assert back.pages[0].input_width == 392 and back.pages[1].blocks[0].bbox is None
    assert back.flagged_pages == [1]


def test_annotate_draws_each_category_in_its_colour_and_highlights_one():
    page = Image.new("RGB", (400, 450), "white")
    doc = sample_doc()
    out = export.annotate(page, doc.pages[0].blocks)
    assert out.size == page.size and page.getpixel((20, 120)) == (255, 255, 255)  # input untouched
    # the Text box's left edge in the Text colour, the Table's in the Table colour
    assert out.getpixel((20, 120)) == export.COLORS["Text"]
    assert out.getpixel((20, 230)) == export.COLORS["Table"]
    assert out.getpixel((200, 330)) == (255, 255, 255)  # inside a box: not filled
    hl = export.annotate(page, doc.pages[0].blocks, highlight=6)
    assert hl.getpixel((200, 330)) != (255, 255, 255)  # the highlighted box is tinted
    # a thumbnail: boxes scale with `page_size`
    small = export.annotate(page.resize((200, 225)), doc.pages[0].blocks, page_size=(400, 450))
    assert small.getpixel((10, 60)) == export.COLORS["Text"]


def test_annotate_labels_blocks_with_their_index():
    page = Image.new("RGB", (400, 450), "white")
    one = [Block(0, "Text", [50, 100, 350, 140], "x")]
    out = export.annotate(page, one)
    label_area = out.crop((50, 80, 80, 100))
    colors = [c for _, c in label_area.getcolors(10000)]
    assert export.COLORS["Text"] in colors and (255, 255, 255) in colors  # a filled tag with white digits


def test_bundle_and_zip_hold_everything():
    doc = sample_doc()
    page_im = Image.new("RGB", (400, 450), (200, 10, 10))
    files = export.bundle(doc, {1: page_im}, "report")
    assert set(files) == {
        "report.json",
        "report.md",
        "report.page0001.json",
        "report.page0002.json",
        "report.page0001.png",
        "images/report.page0001.block006.png",
    }
    crop = Image.open(io.BytesIO(files["images/report.page0001.block006.png"]))
    assert crop.size == (200, 100) and crop.getpixel((100, 50)) == (200, 10, 10)
    assert "](images/report.page0001.block006.png)" in files["report.md"].decode()
    per_page = json.loads(files["report.page0002.json"])
    assert per_page["number"] == 2 and per_page["source"] == "scans/report 2025.pdf"
    chosen = export.select(files, ["md", "zip"], "report")
    assert set(chosen) == {"report.md", "images/report.page0001.block006.png", "report.zip"}
    with zipfile.ZipFile(io.BytesIO(chosen["report.zip"])) as zf:
        assert sorted(zf.namelist()) == sorted(files)
        assert zf.read("report.md") == files["report.md"]
    with pytest.raises(ValueError, match="unknown format"):
        export.select(files, ["pdf"], "report")


def test_source_stem_is_file_name_safe():
    assert export.source_stem("a/b/My Scan (1).PDF") == "My_Scan_1"
    assert export.source_stem("..") == "document"
