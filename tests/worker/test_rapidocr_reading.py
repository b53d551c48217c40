"""The rapidocr worker reads rendered pages: text, dots.ocr layout, grounding, limits."""

from __future__ import annotations

import json

from tests.worker.conftest import PAGE_LINES, Page, Worker, chat_body, png_data_url, render_page
from vlmswap.documents import dots_prompts
from vlmswap.documents.metrics import cer
from vlmswap.worker.engines.layout_rules import Line, rows_of
from vlmswap.worker.engines.rapidocr_engine import split_tokens

TOL = 6  # pixels a returned box may miss the drawn ink by


def ask(worker: Worker, page: Page, prompt: str, **extra: object) -> dict:
    with worker.client() as c:
        r = c.post("/v1/chat/completions", json=chat_body(png_data_url(page.image), prompt, **extra))
    assert r.status_code == 200, r.text
    return r.json()


def test_page_text_is_read_with_low_character_error_rate(rapidocr_worker: Worker, page: Page) -> None:
    body = ask(rapidocr_worker, page, "What does this page say?")
    text = body["choices"][0]["message"]["content"]
    assert cer(page.text, text) < 0.02, text
    assert text.splitlines()[0].startswith("The quick")  # reading order: first line first
    assert body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"]["completion_tokens"] == len(text.split())
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def test_scene_spotting_gives_one_box_per_rendered_line(rapidocr_worker: Worker, page: Page) -> None:
    body = ask(rapidocr_worker, page, dots_prompts.scene_spotting())
    cells = json.loads(body["choices"][0]["message"]["content"])
    assert len(cells) == len(page.lines), cells
    for cell, drawn, line in zip(cells, page.boxes, page.lines):
        assert cell["category"] == "Text"
        x1, y1, x2, y2 = cell["bbox"]
        dx1, dy1, dx2, dy2 = drawn
        # covers the drawn line (within a few pixels) ...
        assert x1 <= dx1 + TOL and y1 <= dy1 + TOL and x2 >= dx2 - TOL and y2 >= dy2 - TOL, (cell, drawn)
        # ... and is not much larger than it
        assert x1 >= dx1 - 3 * TOL and y1 >= dy1 - 3 * TOL and x2 <= dx2 + 3 * TOL and y2 <= dy2 + 3 * TOL, (
            cell,
            drawn,
        )
        assert cer(line, cell["text"]) < 0.05, (line, cell["text"])


def test_layout_prompt_reads_lines_set_at_body_leading_as_one_paragraph(rapidocr_worker: Worker) -> None:
    page = render_page(PAGE_LINES[:4], line_gap=8)  # pitch 1.3 x the font size, as typeset text
    cells = json.loads(ask(rapidocr_worker, page, dots_prompts.layout_all())["choices"][0]["message"]["content"])
    assert [c["category"] for c in cells] == ["Text"], cells
    x1, y1, x2, y2 = cells[0]["bbox"]
    assert x1 <= min(b[0] for b in page.boxes) + TOL and y1 <= page.boxes[0][1] + TOL
    assert x2 >= max(b[2] for b in page.boxes) - TOL and y2 >= page.boxes[-1][3] - TOL
    assert cer(" ".join(page.lines), cells[0]["text"]) < 0.02, cells[0]["text"]


def test_layout_boxes_are_in_the_pixels_of_dots_ocrs_resized_input(rapidocr_worker: Worker) -> None:
    # 1400 x 800 is not a multiple of 28 high: dots.ocr would see 1400 x 812 and answer in those pixels
    big = render_page(["Coordinates follow the image size."], size=56, width=1400, left=300, top=200, min_height=800)
    cells = json.loads(ask(rapidocr_worker, big, dots_prompts.layout_only())["choices"][0]["message"]["content"])
    assert len(cells) == 1 and "text" not in cells[0]
    x1, y1, x2, y2 = cells[0]["bbox"]
    dx1, dy1, dx2, dy2 = big.boxes[0]
    sy = 812 / 800
    margin = 0.4 * (dy2 - dy1) * sy  # detection runs on a reduced page: boxes a little loose
    assert abs(x1 - dx1) <= margin and abs(y1 - dy1 * sy) <= margin
    assert abs(x2 - dx2) <= margin and abs(y2 - dy2 * sy) <= margin


def test_grounding_prompt_reads_only_the_lines_inside_the_box(rapidocr_worker: Worker, page: Page) -> None:
    b2, b3 = page.boxes[2], page.boxes[3]
    region = (b2[0] - 10, b2[1] - 8, max(b2[2], b3[2]) + 10, b3[3] + 8)
    text = ask(rapidocr_worker, page, dots_prompts.grounding_ocr(region))["choices"][0]["message"]["content"]
    assert cer("\n".join(page.lines[2:4]), text) < 0.03, text


def test_max_tokens_cuts_the_answer_with_finish_reason_length(rapidocr_worker: Worker) -> None:
    short = render_page(["one two three four five six seven eight"], width=700, min_height=700)
    body = ask(rapidocr_worker, short, dots_prompts.ocr(), max_tokens=3)
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["choices"][0]["message"]["content"].split() == ["one", "two", "three"]
    assert body["usage"]["completion_tokens"] == 3


def test_stop_string_ends_the_answer_early(rapidocr_worker: Worker) -> None:
    short = render_page(["alpha beta gamma delta"], width=600, min_height=600)
    body = ask(rapidocr_worker, short, dots_prompts.ocr(), stop=["gamma"])
    assert body["choices"][0]["message"]["content"].strip() == "alpha beta"
    assert body["choices"][0]["finish_reason"] == "stop"


def test_rows_of_puts_pieces_of_one_baseline_together_top_down_left_right() -> None:
    boxes = [
        Line(400, 102, 600, 128, "right half"),  # same line as "left half", detected separately
        Line(10, 40, 200, 66, "first line"),
        Line(10, 100, 300, 126, "left half"),
        Line(10, 160, 250, 186, "third line"),
    ]
    rows = rows_of(boxes)
    assert [[b.text for b in row] for row in rows] == [["first line"], ["left half", "right half"], ["third line"]]


def test_split_tokens_round_trips_the_text() -> None:
    text = '  a  layout\n[{"bbox": [1, 2]}]\n '
    assert "".join(split_tokens(text)) == text
    assert len(split_tokens(text)) == len(text.split())
