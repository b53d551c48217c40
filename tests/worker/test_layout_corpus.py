"""One page of each kind of the layout corpus, read end to end by the real rapidocr worker.

Each page is drawn by bench/layout_corpus.py with its truth (blocks, categories, table rows);
the worker gets it as dots.ocr's layout prompt and answers dots.ocr's JSON. The corpus-wide
figures are bench/layout_eval.py's (bench/README.md); these pin what each kind must keep.
"""

from __future__ import annotations

import json
import os

import pytest

from bench import layout_corpus
from bench.layout_eval import cell_text, cer, table_rows
from tests.worker.conftest import Worker, chat_body, png_data_url
from vlmswap.documents import dots_prompts

HEADINGS = ("Title", "Section-header")


def layout(worker: Worker, page: layout_corpus.Page) -> list[dict]:
    with worker.client(timeout=120) as c:
        r = c.post("/v1/chat/completions", json=chat_body(png_data_url(page.image), dots_prompts.layout_all()))
    assert r.status_code == 200, r.text
    cells: list[dict] = json.loads(r.json()["choices"][0]["message"]["content"])
    return cells


def text_of(cells: list[dict]) -> str:
    return "\n".join(cell_text(c) for c in cells)


def category_of(cells: list[dict], text: str) -> str:
    """The category of the cell that reads `text` (closest match)."""
    best = min(cells, key=lambda c: cer(text, cell_text(c)))
    assert cer(text, cell_text(best)) <= 0.2, (text, [cell_text(c) for c in cells])
    return str(best["category"])


def headings(cells: list[dict]) -> list[str]:
    return [cell_text(c) for c in cells if c["category"] in HEADINGS]


def same_headings(cells: list[dict], page: layout_corpus.Page) -> bool:
    """The cells' headings are the truth's, in order, each read within 15 % of its characters."""
    want = [b.text for b in page.blocks if b.category in HEADINGS]
    got = headings(cells)
    return len(got) == len(want) and all(cer(w, g) <= 0.15 for w, g in zip(want, got))


def rows_of_tables(cells: list[dict]) -> list[list[str]]:
    return [[x for x in row if x] for c in cells if c["category"] == "Table" for row in table_rows(c["text"])]


def truth_rows(page: layout_corpus.Page) -> list[list[str]]:
    return [[x for x in row if x] for b in page.blocks if b.rows is not None for row in b.rows]


def test_letter_body_lines_stay_text_and_only_the_bold_subject_is_a_heading(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("letter-0")
    cells = layout(rapidocr_worker, page)
    assert cer(page.text, text_of(cells)) <= 0.01
    subject = next(b.text for b in page.blocks if b.category == "Section-header")
    letterhead = next(b.text for b in page.blocks if b.category == "Title")
    assert sorted(headings(cells)) == sorted([letterhead, subject])
    credit = next(b.text for b in page.blocks if b.text.startswith("We will credit"))
    assert category_of(cells, credit) == "Text"
    assert category_of(cells, "Kind regards,") == "Text"


def test_invoice_line_items_come_out_as_table_rows_under_their_header(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("invoice-1")
    cells = layout(rapidocr_worker, page)
    assert cer(page.text, text_of(cells)) <= 0.01
    assert [c["category"] for c in cells].count("Table") == 1
    assert rows_of_tables(cells) == truth_rows(page)
    assert category_of(cells, "Invoice no.: " + page.blocks[3].text.split(": ")[1]) == "Text"
    assert headings(cells) == ["INVOICE"]


def test_small_report_table_with_narrow_column_gaps_keeps_its_rows(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("report-1")  # columns under one em apart
    cells = layout(rapidocr_worker, page)
    assert cer(page.text, text_of(cells)) <= 0.01
    assert rows_of_tables(cells) == truth_rows(page)
    assert same_headings(cells, page), headings(cells)
    assert not any(cell_text(c).startswith(("Parameter", "Turbidity")) for c in cells if c["category"] in HEADINGS)


def test_two_column_article_reads_column_by_column_and_its_author_is_no_heading(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("article-0")
    cells = layout(rapidocr_worker, page)
    # the one-line-per-row reading interleaves the columns (about 60 % CER); column by column is near 0
    assert cer(page.text, text_of(cells)) <= 0.01
    author = next(b.text for b in page.blocks if "Department" in b.text)
    assert category_of(cells, author) == "Text"
    assert same_headings(cells, page), headings(cells)


def test_form_labels_are_read_with_their_values_row_by_row(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("form-1")  # two label/value pairs on a row
    cells = layout(rapidocr_worker, page)
    assert cer(page.text, text_of(cells)) <= 0.01
    texts = [cell_text(c) for c in cells]
    pairs = [b.text for b in page.blocks if b.category == "Text" and ":" in b.text and len(b.text) < 40]
    assert [t for t in texts if t in pairs] == pairs  # each pair one block, in row order
    assert "Table" not in [c["category"] for c in cells]


def test_receipt_items_come_out_as_rows_with_their_prices(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("receipt-1")
    cells = layout(rapidocr_worker, page)
    assert cer(page.text, text_of(cells)) <= 0.01
    assert rows_of_tables(cells) == truth_rows(page)


def test_slide_bullets_are_list_items_under_the_title(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("slide-0")
    cells = layout(rapidocr_worker, page)
    assert cer(page.text, text_of(cells)) <= 0.01
    assert [c["category"] for c in cells] == [b.category for b in page.blocks]


MANUAL = "/usr/share/doc/libtasn1-doc/libtasn1.pdf"


@pytest.mark.skipif(not os.path.exists(MANUAL), reason="libtasn1-doc is not installed (scripts/system-deps.sh)")
def test_typeset_manual_page_keeps_its_reading_order_and_bold_large_headings(rapidocr_worker: Worker) -> None:
    page = layout_corpus.page("libtasn1-p4")
    cells = layout(rapidocr_worker, page)
    assert cer(page.text, text_of(cells)) <= 0.01
    assert same_headings(cells, page), headings(cells)
    assert [c["category"] for c in cells].count("List-item") == [b.category for b in page.blocks].count("List-item")
