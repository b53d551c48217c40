"""The layout rules on line geometry alone: each rule, and the whole page, without an engine."""

from __future__ import annotations

from vlmswap.worker.engines import layout_rules as lr
from vlmswap.worker.engines.layout_rules import Line

PAGE = (1240, 1754)
H = 28  # body line height in these pages
ADVANCE = 15  # body pixels per character


def body(x: float, y: float, text: str | None = None, w: float = 800, h: float = H) -> Line:
    """A body-size line; its text is as long as the width holds at the body's size unless given."""
    if text is None:
        text = ("body text of the page " * 20)[: round(w / ADVANCE)]
    return Line(x, y, x + w, y + h, text)


def para(x: float, y: float, n: int, w: float = 800, pitch: float = 32, tag: str = "p") -> list[Line]:
    filler = " of a paragraph written in the body size, long enough to fill its line " * 3
    return [body(x, y + i * pitch, (f"{tag} line {i}" + filler)[: round(w / ADVANCE)], w) for i in range(n)]


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


def test_body_size_is_the_size_most_characters_are_written_in():
    lines = [Line(0, 0, 900, 60, "Big title"), *para(0, 100, 5)]
    body = lr.body_size(lines)
    assert body.height == H and body.advance == lines[1].advance
    assert body.scale(lines[:1]) > 2 and body.scale(lines[1:3]) == 1.0


def test_lines_with_the_usual_gap_and_left_edge_merge_and_a_wider_gap_starts_a_paragraph():
    lines = para(100, 100, 3, tag="a") + para(100, 100 + 3 * 32 + 30, 2, tag="b")  # 30 px extra gap
    paras = lr.paragraphs(lines)
    assert [len(p) for p in paras] == [3, 2]
    assert paras[1][0].text.startswith("b line 0")


def test_a_first_line_indent_stays_in_its_paragraph_but_a_new_left_edge_does_not():
    indented = [body(140, 100, w=760)] + para(100, 132, 2)
    assert [len(p) for p in lr.paragraphs(indented)] == [3]
    shifted = para(100, 100, 2) + [body(500, 164, w=400)]
    assert [len(p) for p in lr.paragraphs(shifted)] == [2, 1]


def test_lines_of_another_height_do_not_join_a_paragraph():
    lines = [Line(100, 100, 700, 150, "A heading set large")] + para(100, 160, 2)
    assert [len(p) for p in lr.paragraphs(lines)] == [1, 2]


def test_large_text_near_the_top_is_the_title_and_other_large_text_section_headers():
    # body: 28 px high, 15 px per character
    lines = (
        [Line(100, 150, 900, 210, "The title set large")]
        + para(100, 260, 3)
        + [Line(100, 400, 420, 434, "A section header")]
        + para(100, 460, 3)
        + [Line(100, 1300, 1000, 1360, "Large but low on the page")]
        + para(100, 1400, 2)
        + [Line(100, 1600, 400, 1634, "Tall, narrow letters set in body size")]
    )
    elements = lr.classify(lr.paragraphs(lines), PAGE, lr.body_size(lines))
    assert cats(elements) == ["Title", "Text", "Section-header", "Text", "Section-header", "Text", "Text"]


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


def test_short_lines_in_the_top_and_bottom_bands_are_page_header_and_footer():
    lines = [Line(100, 40, 400, 62, "Running head"), *para(100, 200, 10), Line(600, 1690, 630, 1712, "12")]
    marks = lr.furniture(lines, PAGE, H)
    assert marks == {0: "Page-header", len(lines) - 1: "Page-footer"}


def test_a_full_width_line_at_the_top_is_body_text_not_a_header():
    lines = [Line(100, 40, 1150, 68, "a long first line of text that runs across the page"), *para(100, 76, 5)]
    assert lr.furniture(lines, PAGE, H) == {}


def test_aligned_rows_of_short_cells_are_a_table_and_its_html_keeps_empty_cells():
    rows = [("Name", "Qty", "Price"), ("apple", "3", "1.20"), ("pear", None, "0.80")]
    lines = para(100, 100, 2, w=1000)
    for r, row in enumerate(rows):
        for c, text in enumerate(row):
            if text is not None:
                lines.append(Line(100 + 350 * c, 200 + 45 * r, 100 + 350 * c + 20 * len(text), 228 + 45 * r, text))
    found = lr.tables(lines, H)
    assert len(found) == 1 and len(found[0]) == 3
    assert lr.table_html(found[0]) == (
        "<table><tr><td>Name</td><td>Qty</td><td>Price</td></tr>"
        "<tr><td>apple</td><td>3</td><td>1.20</td></tr>"
        "<tr><td>pear</td><td></td><td>0.80</td></tr></table>"
    )


def test_two_columns_of_text_are_no_table():
    left, right = para(100, 100, 6, w=480, tag="L"), para(660, 100, 6, w=480, tag="R")
    assert lr.tables(left + right, H) == []


def test_misaligned_short_lines_are_no_table():
    lines = [
        Line(100, 100, 200, 128, "a"),
        Line(500, 100, 600, 128, "b"),
        Line(150, 145, 540, 173, "c spans both"),
        Line(700, 145, 780, 173, "d"),
    ]
    assert lr.tables(lines, H) == []


def test_two_columns_are_read_column_by_column_even_when_their_breaks_align():
    title = [Line(100, 100, 1000, 160, "Title across both columns")]
    left = para(100, 200, 3, w=480, tag="L1") + para(100, 330, 2, w=480, tag="L2")
    right = para(660, 200, 3, w=480, tag="R1") + para(660, 330, 2, w=480, tag="R2")  # same breaks
    after = para(100, 450, 2, w=1040, tag="F")
    elements = lr.layout(title + left + right + after, PAGE)
    assert [e.lines[0].text.split()[0] for e in elements] == ["Title", "L1", "L2", "R1", "R2", "F"]


def test_layout_puts_headers_first_and_footers_last():
    lines = [Line(600, 1690, 630, 1712, "3"), *para(100, 300, 3), Line(100, 40, 400, 62, "Chapter 1")]
    assert cats(lr.layout(lines, PAGE)) == ["Page-header", "Text", "Page-footer"]
