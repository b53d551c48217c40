"""The layout rules on line geometry (and given ink measures): each rule, and the whole page, without an engine."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from tests.support import FONT
from vlmswap.worker.engines import ink
from vlmswap.worker.engines import layout_rules as lr
from vlmswap.worker.engines.ink import Ink
from vlmswap.worker.engines.layout_rules import Line

PAGE = (1240, 1754)
H = 28  # body line height in these pages
ADVANCE = 15  # body pixels per character
BODY_INK = Ink(18.0, 2.7)  # letter height and stroke of the body text


def body(x: float, y: float, text: str | None = None, w: float = 800, h: float = H) -> Line:
    """A body-size line; its text is as long as the width holds at the body's size unless given."""
    if text is None:
        text = ("body text of the page " * 20)[: round(w / ADVANCE)]
    return Line(x, y, x + w, y + h, text)


def para(x: float, y: float, n: int, w: float = 800, pitch: float = 32, tag: str = "p") -> list[Line]:
    filler = " of a paragraph written in the body size, long enough to fill its line " * 3
    return [body(x, y + i * pitch, (f"{tag} line {i}" + filler)[: round(w / ADVANCE)], w) for i in range(n)]


def inked(lines: list[Line], height: float = BODY_INK.height, stroke: float = BODY_INK.stroke) -> list[Line]:
    return [replace(ln, ink=Ink(height, stroke, ln.y2 - 6)) for ln in lines]


def cats(elements: list[lr.Element]) -> list[str]:
    return [e.category for e in elements]


def test_pieces_of_a_line_join_across_word_gaps_but_not_across_a_gutter():
    pieces = [
        Line(100, 100, 300, 128, "left"),
        Line(310, 101, 500, 127, "words"),  # word gap: 10 px
        Line(700, 100, 900, 128, "right column"),
    ]  # gutter: 200 px
    lines = lr.lines_of(pieces)
    assert [ln.text for ln in lines] == ["left words", "right column"]
    assert (lines[0].x1, lines[0].x2) == (100, 500)


def test_a_label_ending_in_a_colon_takes_its_value_across_a_wide_gap():
    pieces = [
        Line(100, 100, 220, 128, "Surname:"),
        Line(400, 100, 500, 128, "Novak"),
        Line(700, 100, 840, 128, "First name:"),
        Line(1000, 100, 1080, 128, "Anna"),
    ]
    lines = lr.lines_of(pieces)
    assert [ln.text for ln in lines] == ["Surname: Novak", "First name: Anna"]
    assert all(ln.pair for ln in lines)


def test_rows_do_not_chain_a_column_of_tightly_set_lines_into_one():
    # boxes 30 px high every 26 px: each overlaps the next by 4 px, and a line beside them by more
    column = [Line(100, 100 + 26 * i, 500, 130 + 26 * i, f"line {i}") for i in range(4)]
    beside = Line(600, 110, 1000, 140, "the other column")
    rows = lr.rows_of([*column, beside])
    assert [[ln.text for ln in r] for r in rows][:2] == [["line 0", "the other column"], ["line 1"]]
    assert len(rows) == 4


def test_body_size_is_the_size_most_characters_are_written_in():
    lines = [Line(0, 0, 900, 60, "Big title", ink=Ink(40, 6)), *inked(para(0, 100, 5))]
    body_text = lr.body_size(lines)
    assert body_text.height == H and body_text.advance == lines[1].advance
    assert body_text.ink is not None and body_text.ink.height == BODY_INK.height
    assert body_text.evidence(lines[:1]) > 2 and body_text.evidence(lines[1:3]) == 0.0


def test_lines_with_the_usual_gap_and_left_edge_merge_and_a_wider_gap_starts_a_paragraph():
    lines = para(100, 100, 3, tag="a") + para(100, 100 + 3 * 32 + 30, 2, tag="b")  # 30 px extra gap
    paras = lr.paragraphs(lines)
    assert [len(p) for p in paras] == [3, 2]
    assert paras[1][0].text.startswith("b line 0")


def test_a_few_pixels_more_between_baselines_start_a_paragraph_even_where_boxes_touch():
    # tight leading: the boxes overlap, so their gap says little; the baselines' pitch does
    lines = inked(para(100, 100, 3, pitch=26, tag="a") + para(100, 100 + 3 * 26 + 9, 2, pitch=26, tag="b"))
    assert [len(p) for p in lr.paragraphs(lines)] == [3, 2]


def test_a_first_line_indent_stays_in_its_paragraph_but_a_new_left_edge_does_not():
    indented = [body(140, 100, w=760)] + para(100, 132, 2)
    assert [len(p) for p in lr.paragraphs(indented)] == [3]
    shifted = para(100, 100, 2) + [body(500, 164, w=400)]
    assert [len(p) for p in lr.paragraphs(shifted)] == [2, 1]


def test_lines_of_another_height_or_weight_do_not_join_a_paragraph():
    lines = [Line(100, 100, 700, 150, "A heading set large")] + para(100, 160, 2)
    assert [len(p) for p in lr.paragraphs(lines)] == [1, 2]
    bold = inked([body(100, 100, "A bold heading at body size", w=400)], stroke=4.2)
    assert [len(p) for p in lr.paragraphs(bold + inked(para(100, 132, 2)))] == [1, 2]


def test_label_and_value_lines_stay_apart_even_when_set_like_a_paragraph():
    lines = [replace(body(100, 100 + 32 * i, f"Label {i}: value {i}", w=300), pair=True) for i in range(3)]
    assert [len(p) for p in lr.paragraphs(lines)] == [1, 1, 1]


def test_a_large_box_alone_is_no_heading_without_ink_to_say_so():
    lines = [Line(100, 150, 900, 210, "Set large, or only boxed large?")] + para(100, 260, 3)
    elements = lr.classify(lr.paragraphs(lines), PAGE, lr.body_size(lines))
    assert cats(elements) == ["Text", "Text"]


def test_taller_letters_make_a_heading_the_largest_near_the_top_the_title():
    lines = (
        [Line(100, 150, 900, 210, "The title set large", ink=Ink(36, 5))]
        + inked(para(100, 260, 3))
        + [Line(100, 400, 420, 434, "A section header", ink=Ink(22, 3.3))]
        + inked(para(100, 460, 3))
        + [Line(100, 1300, 1000, 1360, "Large but low on the page", ink=Ink(36, 5))]
        + inked(para(100, 1400, 2))
        + inked([Line(100, 1600, 400, 1634, "Tall box, body-size letters")])
    )
    elements = lr.classify(lr.paragraphs(lines), PAGE, lr.body_size(lines))
    assert cats(elements) == ["Title", "Text", "Section-header", "Text", "Section-header", "Text", "Text"]


def test_heavier_strokes_at_body_height_make_a_heading_and_a_bold_word_does_not():
    lines = inked([body(100, 100, "Delivery note 4471", w=270)], stroke=4.3) + inked(para(100, 160, 3))
    elements = lr.classify(lr.paragraphs(lines), PAGE, lr.body_size(lines))
    assert cats(elements) == ["Section-header", "Text"]
    slightly = inked([body(100, 100, "One word in bold here", w=300)], stroke=2.9) + inked(para(100, 160, 3))
    assert cats(lr.classify(lr.paragraphs(slightly), PAGE, lr.body_size(slightly))) == ["Text", "Text"]


def test_bullets_and_numbers_start_list_items_even_without_a_gap():
    texts = [
        (100, "• first point"),
        (100, "• second point"),
        (100, "1. numbered point"),
        (130, "continues under its text"),
    ]
    lines = [body(x, 100 + 32 * i, t, w=ADVANCE * len(t)) for i, (x, t) in enumerate(texts)]
    elements = lr.classify(lr.paragraphs(lines), PAGE, lr.body_size(lines))
    assert cats(elements) == ["List-item", "List-item", "List-item"]
    assert elements[2].text == "1. numbered point continues under its text"


def test_a_numbered_line_set_large_is_a_heading_and_a_bullet_never_is():
    lines = (
        [Line(100, 100, 300, 140, "1. Summary", ink=Ink(24, 3.6))]
        + inked(para(100, 160, 3))
        + [Line(100, 300, 500, 340, "• Set large", ink=Ink(24, 3.6))]
    )
    assert cats(lr.classify(lr.paragraphs(lines), PAGE, lr.body_size(lines))) == ["Section-header", "Text", "List-item"]


def test_short_lines_in_the_top_and_bottom_bands_are_page_header_and_footer():
    lines = [Line(100, 40, 400, 62, "Running head"), *para(100, 200, 10), Line(600, 1690, 630, 1712, "12")]
    marks = lr.furniture(lines, PAGE, H)
    assert marks == {0: "Page-header", len(lines) - 1: "Page-footer"}


def test_a_full_width_line_at_the_top_is_body_text_not_a_header():
    lines = [Line(100, 40, 1150, 68, "a long first line of text that runs across the page"), *para(100, 76, 5)]
    assert lr.furniture(lines, PAGE, H) == {}


def grid(
    rows: list[tuple[str | None, ...]], x: float = 100, y: float = 200, col: float = 350, pitch: float = 45
) -> list[Line]:
    out = []
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            if text is not None:
                x1, y1 = x + col * c, y + pitch * r
                out.append(Line(x1, y1, x1 + 20 * len(text), y1 + 28, text))
    return out


def test_aligned_rows_with_a_column_of_numbers_are_a_table_and_its_html_keeps_empty_cells():
    lines = para(100, 100, 2, w=1000) + grid([("Name", "Qty", "Price"), ("apple", "3", "1.20"), ("pear", None, "0.80")])
    found = lr.tables(lines, H)
    assert len(found) == 1 and len(found[0].rows) == 3
    assert found[0].html == (
        "<table><tr><td>Name</td><td>Qty</td><td>Price</td></tr>"
        "<tr><td>apple</td><td>3</td><td>1.20</td></tr>"
        "<tr><td>pear</td><td></td><td>0.80</td></tr></table>"
    )


def test_two_address_blocks_side_by_side_are_no_table():
    blocks = grid(
        [("Northwind Ltd", "Bill to:"), ("12 Mill Road", "Riverside Dairy"), ("Leeds LS1 4AP", "Bristol")],
        col=550,
        pitch=32,
    )
    assert lr.tables(blocks, H) == []


def test_a_label_and_value_list_is_no_table_and_the_table_under_it_keeps_its_header():
    lines = grid(
        [("Invoice no.:", "2025-131"), ("Date:", "23 July 2025"), ("Due date:", "2 August 2025")], col=170, pitch=34
    )
    lines += grid(
        [("Description", "Qty", "Amount"), ("Desk lamp", "1", "27.00"), ("Stapler", "4", "36.00")],
        y=320,
        col=420,
        pitch=34,
    )
    found = lr.tables(lines, H)
    assert [[[c.text for c in row] for row in t.rows] for t in found] == [
        [["Description", "Qty", "Amount"], ["Desk lamp", "1", "27.00"], ["Stapler", "4", "36.00"]]
    ]


def test_a_header_row_read_as_one_piece_is_cut_at_the_columns_below_it():
    header = Line(100, 150, 660, 178, "Parameter April May")
    rows = grid([("Turbidity", "5.2", "1.7"), ("Iron", "6.1", "4.7")], col=250, pitch=34, y=186)
    (table,) = lr.tables([header, *rows], H)
    assert [c.text for c in table.rows[0]] == ["Parameter", "April", "May"]


def test_two_columns_of_text_are_no_table():
    left, right = para(100, 100, 6, w=480, tag="L"), para(660, 100, 6, w=480, tag="R")
    assert lr.tables(left + right, H) == []


def test_misaligned_short_lines_are_no_table():
    lines = [
        Line(100, 100, 200, 128, "1"),
        Line(500, 100, 600, 128, "2"),
        Line(150, 145, 540, 173, "3 spans both"),
        Line(700, 145, 780, 173, "4"),
    ]
    assert lr.tables(lines, H) == []


def test_two_columns_are_read_column_by_column_even_when_their_breaks_align():
    title = [Line(100, 100, 1000, 160, "Title across both columns")]
    left = para(100, 200, 3, w=480, tag="L1") + para(100, 330, 2, w=480, tag="L2")
    right = para(660, 200, 3, w=480, tag="R1") + para(660, 330, 2, w=480, tag="R2")  # same breaks
    after = para(100, 450, 2, w=1040, tag="F")
    elements = lr.layout(title + left + right + after, PAGE)
    assert [e.lines[0].text.split()[0] for e in elements] == ["Title", "L1", "L2", "R1", "R2", "F"]


def test_a_longer_column_runs_on_below_the_shorter_one():
    left = para(100, 200, 3, w=480, tag="L1") + para(100, 330, 2, w=480, tag="L2") + para(100, 450, 3, w=480, tag="L3")
    right = para(660, 200, 3, w=480, tag="R1")
    elements = lr.layout(left + right, PAGE)
    assert [e.lines[0].text.split()[0] for e in elements] == ["L1", "L2", "L3", "R1"]


def test_label_value_pairs_side_by_side_are_read_row_by_row():
    pairs = [
        Line(100, 200, 220, 228, "Surname:"),
        Line(300, 200, 400, 228, "Novak"),
        Line(650, 200, 790, 228, "First name:"),
        Line(850, 200, 930, 228, "Anna"),
        Line(100, 245, 200, 273, "Phone:"),
        Line(300, 245, 480, 273, "0123 456789"),
        Line(650, 245, 730, 273, "Town:"),
        Line(850, 245, 960, 273, "Leeds"),
    ]
    elements = lr.layout(pairs, PAGE)
    assert [e.text for e in elements] == ["Surname: Novak", "First name: Anna", "Phone: 0123 456789", "Town: Leeds"]


def test_short_stacked_lines_beside_other_text_are_read_row_by_row():
    # a code listing: terms under each other, each with its value to the right
    lines = [
        Line(100, 200, 130, 228, "id"),
        Line(300, 200, 560, 228, "OBJECT IDENTIFIER,"),
        Line(100, 232, 180, 260, "value"),
        Line(300, 232, 380, 260, "Value"),
    ]
    elements = lr.layout(lines, PAGE)
    assert [e.text for e in elements] == ["id", "OBJECT IDENTIFIER,", "value", "Value"]


def test_layout_puts_headers_first_and_footers_last():
    lines = [Line(600, 1690, 630, 1712, "3"), *para(100, 300, 3), Line(100, 40, 400, 62, "Chapter 1")]
    assert cats(lr.layout(lines, PAGE)) == ["Page-header", "Text", "Page-footer"]


def test_ink_measures_letter_height_whatever_the_letters_and_bold_as_heavier():
    font = ImageFont.truetype(FONT, 40)
    bold = ImageFont.truetype(FONT.replace("DejaVuSans.ttf", "DejaVuSans-Bold.ttf"), 40)
    im = Image.new("L", (1200, 300), 255)
    draw = ImageDraw.Draw(im)
    draw.text((20, 20), "mixed Letters and digits 123", font=font, fill=0)
    draw.text((20, 120), "ONLY CAPITALS HERE", font=font, fill=0)
    draw.text((20, 220), "mixed Letters in bold", font=bold, fill=0)
    page = np.asarray(im)
    mixed, caps, heavy = (ink.measure(page, (10, y, 1190, y + 60)) for y in (15, 115, 215))
    assert mixed is not None and caps is not None and heavy is not None
    assert abs(mixed.height - caps.height) <= 0.1 * caps.height
    assert heavy.weight >= 1.3 * mixed.weight and abs(heavy.height - mixed.height) <= 0.1 * mixed.height
    assert ink.measure(page, (10, 15, 12, 17)) is None
