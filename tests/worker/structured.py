"""A page the layout tests render themselves, with a known structure.

An A4 page at 150 dpi (1240 x 1754) set in DejaVu Sans like a typeset report: a running
header, a title, a section header, paragraphs of two or three lines, a bulleted list, a
two-column part whose paragraph breaks fall at the same height in both columns, a table of
short cells, a paragraph under it, and a page number in the footer. `Block`s record what a
layout model should find, in reading order, with the ink box of each.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from PIL import Image, ImageDraw, ImageFont

from tests.support import FONT

SIZE = (1240, 1754)
BODY = 22  # 10.5 pt at 150 dpi
LEADING = 1.3  # line pitch / font size inside a paragraph
MARGIN = 120


@dataclass
class Block:
    category: str
    lines: list[str]
    box: tuple[int, int, int, int] = (0, 0, 0, 0)
    cells: list[list[str]] = field(default_factory=list)  # tables only

    @property
    def text(self) -> str:
        if self.cells:
            return " ".join(c for row in self.cells for c in row)
        return " ".join(self.lines)


@dataclass
class StructuredPage:
    image: Image.Image
    blocks: list[Block]  # in reading order

    def of(self, category: str) -> list[Block]:
        return [b for b in self.blocks if b.category == category]


class _Pen:
    def __init__(self, image: Image.Image):
        self.draw = ImageDraw.Draw(image)
        self.fonts: dict[int, ImageFont.FreeTypeFont] = {}

    def font(self, px: int) -> ImageFont.FreeTypeFont:
        return self.fonts.setdefault(px, ImageFont.truetype(FONT, px))

    def lines(self, x: int, y: int, lines: list[str], px: int) -> tuple[tuple[int, int, int, int], int]:
        """Draw lines at (x, y); their joint ink box and the y below the last line."""
        boxes = []
        for i, text in enumerate(lines):
            xy = (x, y + int(i * px * LEADING))
            self.draw.text(xy, text, font=self.font(px), fill="black")
            boxes.append(self.draw.textbbox(xy, text, font=self.font(px)))
        box = (min(b[0] for b in boxes), min(b[1] for b in boxes), max(b[2] for b in boxes), max(b[3] for b in boxes))
        return box, y + int(len(lines) * px * LEADING)  # type: ignore[return-value]


def render_structured() -> StructuredPage:
    im = Image.new("RGB", SIZE, "white")
    pen = _Pen(im)
    blocks: list[Block] = []
    gap = BODY  # space between paragraphs: one body line
    full = SIZE[0] - 2 * MARGIN

    def put(category: str, lines: list[str], px: int, x: int, y: int) -> int:
        box, below = pen.lines(x, y, lines, px)
        blocks.append(Block(category, lines, box))
        return below

    put("Page-header", ["Annual report 2026, internal"], 18, MARGIN, 50)
    y = put("Title", ["Measured rules for page layout"], 44, MARGIN, 170) + gap
    y = (
        put(
            "Text",
            [
                "This report shows how text lines found on a page become paragraphs, headings,",
                "lists and tables without a layout model, using only the geometry of the lines.",
            ],
            BODY,
            MARGIN,
            y,
        )
        + gap
    )
    y = put("Section-header", ["Method and results"], 30, MARGIN, y + gap) + gap
    y = (
        put(
            "Text",
            [
                "Lines that sit close together, share a left edge and have the same height",
                "are read as one paragraph. A wider gap or a new left edge starts another.",
            ],
            BODY,
            MARGIN,
            y,
        )
        + gap
    )
    y = put("List-item", ["• Paragraphs are merged by gap, left edge and height."], BODY, MARGIN, y) + 6
    y = put("List-item", ["• Headings are found by their height against the body."], BODY, MARGIN, y) + gap
    col_w = (full - 60) // 2
    right = MARGIN + col_w + 60
    top = y
    y_left = (
        put(
            "Text",
            ["The left column opens with a", "paragraph of three short lines", "set in a narrow measure."],
            BODY,
            MARGIN,
            top,
        )
        + gap
    )
    y_left = put("Text", ["Its second paragraph follows", "after one blank line."], BODY, MARGIN, y_left) + gap
    # the right column's paragraphs break at the same height as the left's
    y_right = (
        put(
            "Text",
            ["The right column is read only", "after the whole left column,", "as a reader would."],
            BODY,
            right,
            top,
        )
        + gap
    )
    y_right = put("Text", ["Its last paragraph closes the", "two-column part of the page."], BODY, right, y_right) + gap
    # the list above and the columns must be told apart from a table: their cells are wide
    y = max(y_left, y_right) + gap
    cells = [
        ["Engine", "Pages/s", "CER"],
        ["rapidocr", "0.31", "0.8%"],
        ["tesseract", "0.22", "1.1%"],
        ["dots.ocr", "1.90", "0.4%"],
    ]
    x_cols = [MARGIN, MARGIN + 330, MARGIN + 600]
    row_boxes = []
    for r, row in enumerate(cells):
        for c, text in enumerate(row):
            xy = (x_cols[c], y + r * int(BODY * 1.8))
            pen.draw.text(xy, text, font=pen.font(BODY), fill="black")
            row_boxes.append(pen.draw.textbbox(xy, text, font=pen.font(BODY)))
    table_box = (
        min(b[0] for b in row_boxes),
        min(b[1] for b in row_boxes),
        max(b[2] for b in row_boxes),
        max(b[3] for b in row_boxes),
    )
    blocks.append(Block("Table", [], table_box, cells))  # type: ignore[arg-type]
    y = table_box[3] + 2 * gap
    put(
        "Text",
        [
            "A closing paragraph under the table ends the body of the page, and the",
            "page number sits alone at the bottom, where running footers go.",
        ],
        BODY,
        MARGIN,
        y,
    )
    put("Page-footer", ["7"], 18, SIZE[0] // 2, SIZE[1] - 70)
    return StructuredPage(im, blocks)
