"""dots.ocr's own client against a real rapidocr worker, and a page of known structure.

The client is the judge: its exact request through the official openai client, its own
post-processing of the answer (tests/dots_client.py). The structured page (tests/worker/
structured.py) has a title, a section header, paragraphs, list items, a two-column part, a
table and page furniture; the engine must find each, in reading order.
"""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from typing import Any

import httpx
import pytest

from tests import dots_client
from tests.worker.conftest import Worker, render_page
from tests.worker.structured import StructuredPage, render_structured
from vlmswap.documents import dots_prompts
from vlmswap.documents.export import page_markdown
from vlmswap.documents.inputs import PageImage
from vlmswap.documents.layout import CATEGORIES
from vlmswap.documents.metrics import cer
from vlmswap.documents.pipeline import RemoteSpec, ocr_page

TOL = 8  # pixels a box mapped back by the client may miss the drawn ink by


@pytest.fixture(scope="module")
def structured() -> StructuredPage:
    return render_structured()


@pytest.fixture(scope="module")
def api(rapidocr_worker: Worker):
    with dots_client.client(rapidocr_worker.url + "/v1") as c:
        yield c


@pytest.fixture(scope="module")
def cells(api, structured: StructuredPage) -> list[dict[str, Any]]:
    """The structured page through dots.ocr's client, mapped back by its post-processing."""
    raw = dots_client.ask(api, "rapidocr", structured.image, dots_prompts.layout_all())
    return dots_client.post_process(raw, structured.image.size, structured.image.size)


def _plain(text: str) -> str:
    return text.lstrip("#").strip()


def _covers(box: list[int], ink: tuple[int, int, int, int], tol: int = TOL) -> bool:
    return (
        box[0] <= ink[0] + tol
        and box[1] <= ink[1] + tol
        and box[2] >= ink[2] - tol
        and box[3] >= ink[3] - tol
        and box[0] >= ink[0] - 3 * tol
        and box[1] >= ink[1] - 3 * tol
        and box[2] <= ink[2] + 3 * tol
        and box[3] <= ink[3] + 3 * tol
    )


def test_dots_ocr_clients_layout_request_gets_json_its_post_processing_accepts(cells, structured):
    assert all(c["category"] in CATEGORIES and isinstance(c.get("text"), str) for c in cells), cells
    # mapped back by the client from dots.ocr's resized frame (1232 x 1764 for this 1240 x 1754
    # page), the footer at the very bottom lands on its ink
    footer = next(c for c in cells if c["category"] == "Page-footer")
    assert _covers(footer["bbox"], structured.of("Page-footer")[0].box), (footer, structured.of("Page-footer"))


def test_structured_page_reads_as_its_blocks_in_reading_order(cells, structured):
    assert [c["category"] for c in cells] == [b.category for b in structured.blocks], cells
    for cell, block in zip(cells, structured.blocks):
        assert _covers(cell["bbox"], block.box), (cell, block)
        if block.category == "Table":
            continue
        assert cer(block.text, _plain(cell["text"])) < 0.04, (block.text, cell["text"])
    # paragraphs are merged: each two- and three-line paragraph is one element
    texts = [c for c in cells if c["category"] == "Text"]
    assert len(texts) == len(structured.of("Text"))


def test_aligned_short_cells_come_back_as_an_html_table(cells, structured):
    table = next(c for c in cells if c["category"] == "Table")
    rows = [[td.text or "" for td in tr] for tr in ET.fromstring(table["text"])]
    truth = structured.of("Table")[0].cells
    assert len(rows) == len(truth) and all(len(r) == 3 for r in rows), rows
    assert cer(" ".join(" ".join(r) for r in truth), " ".join(" ".join(r) for r in rows)) < 0.05, rows


def test_headings_carry_markdown_marks_and_the_clients_markdown_reads_as_paragraphs(cells, structured):
    md = dots_client.markdown(cells).split("\n\n")
    assert md[0].startswith("# ") and md[2].startswith("## "), md
    assert "7" not in md and not any(p.startswith("Annual report") for p in md)  # furniture left out
    assert all("\n" not in p for p in md)  # a paragraph is one piece of text, not one per line
    assert len(md) == len(structured.blocks) - 2


def test_pipeline_sends_the_clients_prefix_and_its_markdown_has_headings_and_paragraphs(rapidocr_worker, structured):
    sent: list[dict[str, Any]] = []

    async def chat(body: dict[str, Any]) -> str:
        sent.append(body)
        async with httpx.AsyncClient(timeout=300, trust_env=False) as http:
            r = await http.post(rapidocr_worker.url + "/v1/chat/completions", json=body)
        r.raise_for_status()
        return r.json()["choices"][0]["message"]["content"]

    page_image = PageImage(1, structured.image, structured.image.size)
    page = asyncio.run(
        ocr_page(page_image, model_name="rapidocr", spec=RemoteSpec("rapidocr"), mode="layout", chat=chat)
    )
    text = sent[0]["messages"][0]["content"][1]["text"]
    assert text == dots_client.IMAGE_PREFIX + dots_prompts.layout_all()
    assert (sent[0]["temperature"], sent[0]["top_p"]) == (0.1, 0.9)
    assert not page.flags, page.flags
    md = page_markdown(page).split("\n\n")
    titles = [b.lines[0] for b in structured.blocks if b.category in ("Title", "Section-header")]
    assert md[0] == "# " + titles[0] and md[2] == "## " + titles[1], md[:3]
    assert "<table>" in md[-2] and md[-1].startswith("A closing paragraph") and "\n" not in md[-1], md[-2:]
    assert [b.category for b in page.blocks] == [b.category for b in structured.blocks]


SMALL = render_page(
    ["Placeholders never hide a prompt.", "Nor does the second line."], width=900, line_gap=8, min_height=600
)


@pytest.mark.parametrize(
    "prefix",
    [dots_client.IMAGE_PREFIX, "<|vision_start|><|image_pad|><|vision_end|>", "<image>\n", ""],
    ids=["dots", "qwen", "image-tag", "none"],
)
def test_layout_prompt_is_recognised_behind_any_image_placeholder(api, prefix):
    raw = dots_client.ask(api, "rapidocr", SMALL.image, dots_prompts.layout_only(), prefix=prefix)
    cells = dots_client.post_process(raw, SMALL.image.size, SMALL.image.size)
    assert [c["category"] for c in cells] == ["Text"] and "text" not in cells[0], cells


def test_scene_spotting_and_web_parsing_answer_in_layout_json(api):
    lines = json.loads(dots_client.ask(api, "rapidocr", SMALL.image, dots_prompts.scene_spotting()))
    assert [cer(t, c["text"]) < 0.05 for t, c in zip(SMALL.lines, lines)] == [True, True], lines
    web = json.loads(dots_client.ask(api, "rapidocr", SMALL.image, dots_prompts.web_parsing()))
    assert len(web) == 1 and cer(" ".join(SMALL.lines), web[0]["text"]) < 0.05, web


def test_image_to_svg_gives_a_text_only_svg_in_the_asked_viewbox(api):
    w, h = SMALL.image.size
    raw = dots_client.ask(api, "rapidocr", SMALL.image, dots_prompts.image_to_svg(w, h))
    svg = ET.fromstring(raw)
    assert svg.tag.endswith("svg") and svg.get("viewBox") == f"0 0 {w} {h}"
    texts = [t.text for t in svg if t.tag.endswith("text")]
    assert cer(" ".join(SMALL.lines), " ".join(texts)) < 0.05, texts
    y = [float(t.get("y")) for t in svg]
    assert y == sorted(y) and all(0 < v < h for v in y)


def test_grounding_behind_the_prefix_reads_only_its_box(api):
    b = SMALL.boxes[1]
    raw = dots_client.ask(
        api, "rapidocr", SMALL.image, dots_prompts.grounding_ocr((b[0] - 8, b[1] - 8, b[2] + 8, b[3] + 8))
    )
    assert cer(SMALL.lines[1], raw) < 0.05, raw
