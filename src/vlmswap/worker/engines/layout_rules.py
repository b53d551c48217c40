"""Text pieces -> dots.ocr-like layout elements, by measured rules instead of a layout model.

A text detector finds lines, not documents. These rules turn its pieces into what dots.ocr
answers: paragraphs, titles, section headers, list items, tables, page headers and footers,
in reading order across columns. Every rule is a measurement on the page itself, scaled by
its body text height (the height most of its characters are written in), so the same rules
hold at any dpi:

1. pieces on one baseline with a small gap join into a line (a wide gap keeps columns and
   table cells apart);
2. short lines in the top or bottom band, apart from the body, are page headers / footers;
3. consecutive rows of short cells whose columns line up are a table (HTML);
4. a line continues the paragraph above it when the gap is within the page's usual line
   gap, the size matches and the left edge agrees (a first-line indent, and a list
   item's hanging indent, allowed); a line starting with a bullet or number starts anew;
5. a short paragraph set much larger than the body (line height and width per character)
   is a title (the largest, near the top) or a section header; one starting with a bullet or a number is a list item;
6. reading order by a recursive XY cut: columns (vertical gutters) first, then bands top
   to bottom, bands that share a gutter kept together so a two-column part reads column
   by column even where both columns break at the same height.

Pure functions on coordinates: no image, no engine, so each rule is tested on geometry.
"""

from __future__ import annotations

import html
import itertools
import re
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Category = Literal["Title", "Section-header", "Text", "List-item", "Table", "Page-header", "Page-footer"]


class Piece(Protocol):
    """What a text detector gives: an axis-aligned box (pixels) and its text."""

    x1: float
    y1: float
    x2: float
    y2: float
    text: str


@dataclass(frozen=True)
class Rules:
    """The thresholds, each relative to the body text height `h` or to the page size."""

    join_gap: float = 1.2  # pieces of one line: horizontal gap < join_gap * h
    band: float = 0.07  # page header / footer: centre within this fraction of the top / bottom
    furniture_width: float = 0.6  # ... and narrower than this fraction of the page width
    para_gap: float = 0.5  # a paragraph's next line: gap < para_gap * the lower line's height
    # (measured gaps: 1.5 spacing ~0.4, double spacing ~0.7) ...
    para_gap_slack: float = 0.4  # ... and < the page's usual line gap + para_gap_slack * h
    same_size: float = 1.2  # lines of one paragraph: set in sizes within this ratio (size_ratio)
    left_tolerance: float = 1.0  # left edges agree within left_tolerance * h
    indent: float = 4.0  # a paragraph's first line may be indented up to indent * h
    title_ratio: float = 1.5  # title: set at least title_ratio times the body size (Body.scale)
    header_ratio: float = 1.1  # section header: at least header_ratio times (body lines: 0.9-1.05)
    heading_lines: int = 3  # headings are at most this many lines
    gutter: float = 1.0  # column gutter: at least gutter * h wide
    cell_width: float = 0.35  # table cell: narrower than this fraction of the text's width
    table_rows: int = 2  # a table has at least this many rows ...
    table_cols: int = 2  # ... and columns


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    text: str

    @property
    def height(self) -> float:
        return max(self.y2 - self.y1, 1.0)

    @property
    def width(self) -> float:
        return max(self.x2 - self.x1, 1.0)

    @property
    def advance(self) -> float:
        """Pixels per character: grows with the font size, whatever the letters' ascenders and descenders."""
        return self.width / max(len(self.text), 1)


@dataclass(frozen=True)
class Body:
    """The size most of the page's characters are written in."""

    height: float
    advance: float

    def scale(self, lines: Sequence[Line]) -> float:
        """How much larger than the body these lines are set: the geometric mean of the height
        ratio and the per-character width ratio (a box's height alone says little: padding,
        and whether the words have descenders, move it by a fifth)."""
        h = statistics.median(ln.height for ln in lines) / self.height
        a = statistics.median(ln.advance for ln in lines) / self.advance
        return float((h * a) ** 0.5)


@dataclass
class Element:
    """One layout element; `lines` are the text lines it was built from, top to bottom."""

    category: Category
    lines: list[Line] = field(default_factory=list)
    html: str = ""  # tables only

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        return (
            min(ln.x1 for ln in self.lines),
            min(ln.y1 for ln in self.lines),
            max(ln.x2 for ln in self.lines),
            max(ln.y2 for ln in self.lines),
        )

    @property
    def text(self) -> str:
        if self.category == "Table":
            return self.html
        return " ".join(ln.text for ln in self.lines)

    @property
    def height(self) -> float:
        return statistics.median(ln.height for ln in self.lines)


_LIST_MARK = re.compile(r"^(?:[•·●▪◦‣∙*–—-]|\(?\d{1,3}[.)]|\(?[a-z][.)])\s")
_PAGE_NUMBER = re.compile(r"^(?:page\s*)?[-–]?\s*\d{1,4}\s*[-–]?(?:\s*(?:/|of)\s*\d{1,4})?$", re.I)


# --- 1. lines ----------------------------------------------------------------------------------


def rows_of(items: Iterable[Line], min_overlap: float = 0.5) -> list[list[Line]]:
    """Items sharing a baseline, top to bottom, each row left to right.

    An item joins a row when its vertical overlap with the row's span is at least
    `min_overlap` of the smaller height.
    """
    rows: list[tuple[float, float, list[Line]]] = []
    for it in sorted(items, key=lambda b: ((b.y1 + b.y2) / 2, b.x1)):
        for i, (top, bottom, members) in enumerate(rows):
            if min(bottom, it.y2) - max(top, it.y1) >= min_overlap * min(bottom - top, it.height):
                members.append(it)
                rows[i] = (min(top, it.y1), max(bottom, it.y2), members)
                break
        else:
            rows.append((it.y1, it.y2, [it]))
    rows.sort(key=lambda r: (r[0], min(b.x1 for b in r[2])))
    return [sorted(members, key=lambda b: b.x1) for _, _, members in rows]


def lines_of(pieces: Iterable[Piece], rules: Rules = Rules()) -> list[Line]:
    """Detector pieces -> text lines: one row's pieces join while the gap between them is small."""
    items = [Line(p.x1, p.y1, p.x2, p.y2, p.text.strip()) for p in pieces if p.text.strip()]
    out: list[Line] = []
    for row in rows_of(items):
        current = row[0]
        for it in row[1:]:
            if it.x1 - current.x2 < rules.join_gap * min(current.height, it.height):
                current = Line(
                    current.x1,
                    min(current.y1, it.y1),
                    max(current.x2, it.x2),
                    max(current.y2, it.y2),
                    f"{current.text} {it.text}",
                )
            else:
                out.append(current)
                current = it
        out.append(current)
    return out


def _weighted_median(values: Sequence[tuple[float, int]]) -> float:
    ordered = sorted(values)
    half = sum(w for _, w in ordered) / 2
    seen = 0
    for v, w in ordered:
        seen += w
        if seen >= half:
            return v
    return ordered[-1][0] if ordered else 1.0


def body_size(lines: Sequence[Line]) -> Body:
    """Height and per-character width most of the page's characters have (medians weighted by text length)."""
    if not lines:
        return Body(1.0, 1.0)
    return Body(
        _weighted_median([(ln.height, len(ln.text)) for ln in lines]),
        _weighted_median([(ln.advance, len(ln.text)) for ln in lines]),
    )


# --- 2. page headers and footers ---------------------------------------------------------------


def furniture(lines: Sequence[Line], page: tuple[int, int], h: float, rules: Rules = Rules()) -> dict[int, Category]:
    """Index -> Page-header / Page-footer for short lines in the top / bottom band, apart from the body."""
    width, height = page
    out: dict[int, Category] = {}
    for i, ln in enumerate(lines):
        centre = (ln.y1 + ln.y2) / 2
        short = ln.width < rules.furniture_width * width or bool(_PAGE_NUMBER.match(ln.text))
        if not short:
            continue
        if centre < rules.band * height:
            others = [o.y1 - ln.y2 for j, o in enumerate(lines) if j != i and o.y1 >= ln.y2 - 1]
            if others and min(others) > h:
                out[i] = "Page-header"
        elif centre > (1 - rules.band) * height:
            others = [ln.y1 - o.y2 for j, o in enumerate(lines) if j != i and o.y2 <= ln.y1 + 1]
            if others and min(others) > h:
                out[i] = "Page-footer"
    return out


# --- 3. tables ---------------------------------------------------------------------------------


def _column_spans(cells: Iterable[Line]) -> list[tuple[float, float]]:
    """Cells' x ranges merged where they overlap: one span per aligned column."""
    spans: list[list[float]] = []
    for c in sorted(cells, key=lambda c: c.x1):
        if spans and c.x1 <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], c.x2)
        else:
            spans.append([c.x1, c.x2])
    return [(a, b) for a, b in spans]


def _aligned(rows: Sequence[list[Line]]) -> list[tuple[float, float]] | None:
    """The table's column spans when every row puts each cell in a column of its own, else None."""
    spans = _column_spans(c for row in rows for c in row)
    for row in rows:
        taken = [next(k for k, (a, b) in enumerate(spans) if a <= c.x1 <= b) for c in row]
        if len(set(taken)) != len(taken):
            return None
    return spans


def tables(lines: Sequence[Line], h: float, rules: Rules = Rules()) -> list[list[list[Line]]]:
    """Runs of consecutive rows of short, separated cells whose columns line up: each a list of rows."""
    if not lines:
        return []
    text_width = max(ln.x2 for ln in lines) - min(ln.x1 for ln in lines)

    def cell_row(row: list[Line]) -> bool:
        return (
            len(row) >= rules.table_cols
            and all(c.width < rules.cell_width * text_width for c in row)
            and all(b.x1 - a.x2 >= rules.gutter * h for a, b in itertools.pairwise(row))
        )

    found: list[list[list[Line]]] = []
    run: list[list[Line]] = []

    def close() -> None:
        # Trim rows off the end until the rest line up (a caption row below a table, say).
        while len(run) >= rules.table_rows and _aligned(run) is None:
            run.pop()
        if len(run) >= rules.table_rows and len(_aligned(run) or []) >= rules.table_cols:
            found.append(list(run))

    for row in rows_of(lines):
        top = min(c.y1 for c in row)
        near = bool(run) and top - max(c.y2 for c in run[-1]) < 2.0 * h
        if cell_row(row) and (not run or near) and _aligned(run + [row]) is not None:
            run.append(row)
            continue
        close()
        run = [row] if cell_row(row) else []
    close()
    return found


def table_html(rows: Sequence[list[Line]]) -> str:
    """HTML as dots.ocr writes tables; a cell missing from a row stays an empty <td>."""
    spans = _aligned(rows) or _column_spans(c for row in rows for c in row)
    out = ["<table>"]
    for row in rows:
        cells = [""] * len(spans)
        for c in row:
            k = next((k for k, (a, b) in enumerate(spans) if a <= c.x1 <= b), len(spans) - 1)
            cells[k] = (cells[k] + " " + c.text).strip()
        out.append("<tr>" + "".join(f"<td>{html.escape(t, quote=False)}</td>" for t in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


# --- 4. paragraphs -----------------------------------------------------------------------------


def size_ratio(a: Line, b: Line) -> float:
    """How much larger the larger of two lines is set (>= 1; heights and widths per character, as Body.scale)."""
    h = max(a.height, b.height) / min(a.height, b.height)
    w = max(a.advance, b.advance) / min(a.advance, b.advance)
    return float((h * w) ** 0.5)


def _below(upper: Line, lower: Line) -> float:
    return lower.y1 - upper.y2


def usual_gap(lines: Sequence[Line], rules: Rules = Rules()) -> float | None:
    """The median vertical gap between a line and the next one under it of the same height."""
    gaps = []
    for a in lines:
        under = [
            b
            for b in lines
            if b is not a
            and _below(a, b) > -0.3 * a.height
            and min(a.x2, b.x2) - max(a.x1, b.x1) > 0.5 * min(a.width, b.width)
            and size_ratio(a, b) <= rules.same_size
        ]
        if under:
            gaps.append(min(_below(a, b) for b in under))
    return statistics.median(gaps) if gaps else None


def paragraphs(lines: Sequence[Line], rules: Rules = Rules()) -> list[list[Line]]:
    """Lines -> paragraphs (each top to bottom); see the module's rule 4."""
    usual = usual_gap(lines, rules)
    paras: list[list[Line]] = []
    for ln in sorted(lines, key=lambda ln: (ln.y1, ln.x1)):
        best, best_gap = None, None
        if not _LIST_MARK.match(ln.text):
            for para in paras:
                last = para[-1]
                h = min(last.height, ln.height)
                gap = _below(last, ln)
                limit = rules.para_gap * h
                if usual is not None:
                    limit = min(limit, max(usual, 0.0) + rules.para_gap_slack * h)
                if not -0.3 * h <= gap <= limit:
                    continue
                if size_ratio(last, ln) > rules.same_size:
                    continue
                if min(last.x2, ln.x2) <= max(last.x1, ln.x1):
                    continue  # no horizontal overlap
                tol = rules.left_tolerance * h
                left = para[1].x1 if len(para) > 1 else last.x1
                first_indent = len(para) == 1 and 0 <= last.x1 - ln.x1 <= rules.indent * h
                hanging = bool(_LIST_MARK.match(para[0].text)) and 0 <= ln.x1 - para[0].x1 <= rules.indent * h
                aligned = abs(ln.x1 - left) <= tol or first_indent or hanging
                centred = abs((ln.x1 + ln.x2) - (last.x1 + last.x2)) / 2 <= tol
                if not (aligned or centred):
                    continue
                if best_gap is None or gap < best_gap:
                    best, best_gap = para, gap
        if best is None:
            paras.append([ln])
        else:
            best.append(ln)
    return paras


def classify(paras: Sequence[list[Line]], page: tuple[int, int], body: Body, rules: Rules = Rules()) -> list[Element]:
    """Paragraphs -> elements: one Title at most (the largest heading in the top third), headers, lists, text."""
    out = [Element("Text", list(p)) for p in paras]
    scale = {id(e): body.scale(e.lines) for e in out}
    headings = [e for e in out if len(e.lines) <= rules.heading_lines and scale[id(e)] >= rules.header_ratio]
    for e in headings:
        e.category = "Section-header"
    titles = [e for e in headings if scale[id(e)] >= rules.title_ratio and e.bbox[1] < page[1] / 3]
    if titles:
        max(titles, key=lambda e: (scale[id(e)], -e.bbox[1])).category = "Title"
    for e in out:
        if e.category == "Text" and _LIST_MARK.match(e.lines[0].text):
            e.category = "List-item"
    return out


# --- 6. reading order --------------------------------------------------------------------------

Span = tuple[float, float]


def _split(elements: Sequence[Element], axis: int, min_gap: float) -> tuple[list[list[Element]], list[Span]]:
    """Elements grouped along one axis (0: x, 1: y) at empty gaps of at least min_gap; the gaps."""
    items = sorted(elements, key=lambda e: e.bbox[axis])
    groups: list[list[Element]] = [[items[0]]]
    gaps: list[Span] = []
    end = items[0].bbox[axis + 2]
    for e in items[1:]:
        start = e.bbox[axis]
        if start - end >= min_gap and start > end:
            gaps.append((end, start))
            groups.append([])
        groups[-1].append(e)
        end = max(end, e.bbox[axis + 2])
    return groups, gaps


def _common(a: Sequence[Span], b: Sequence[Span], min_gap: float) -> list[Span]:
    out = []
    for a1, a2 in a:
        for b1, b2 in b:
            lo, hi = max(a1, b1), min(a2, b2)
            if hi - lo >= min_gap:
                out.append((lo, hi))
    return out


def reading_order(elements: Sequence[Element], gutter: float) -> list[Element]:
    """Columns left to right, each read top to bottom; bands that share a gutter stay one part."""
    if len(elements) <= 1:
        return list(elements)
    columns, _ = _split(elements, 0, gutter)
    if len(columns) > 1:
        return [e for col in columns for e in reading_order(col, gutter)]
    bands, _ = _split(elements, 1, 0.0)
    if len(bands) == 1:
        return sorted(elements, key=lambda e: (e.bbox[1], e.bbox[0]))
    parts: list[list[Element]] = []
    shared: list[Span] = []
    for band in bands:
        gutters = _split(band, 0, gutter)[1]
        common = _common(shared, gutters, gutter) if parts else []
        if common:
            parts[-1].extend(band)
            shared = common
        else:
            parts.append(list(band))
            shared = gutters
    return [e for part in parts for e in reading_order(part, gutter)]


# --- all together ------------------------------------------------------------------------------


def layout(pieces: Iterable[Piece], page: tuple[int, int], rules: Rules = Rules()) -> list[Element]:
    """The page's elements in reading order: headers first, then the body, then footers."""
    lines = lines_of(pieces, rules)
    if not lines:
        return []
    body_text = body_size(lines)
    h = body_text.height
    marks = furniture(lines, page, h, rules)
    body = [ln for i, ln in enumerate(lines) if i not in marks]
    found = tables(body, h, rules)
    in_tables = {id(c) for t in found for row in t for c in row}
    elements = classify(paragraphs([ln for ln in body if id(ln) not in in_tables], rules), page, body_text, rules)
    elements += [Element("Table", [c for row in t for c in row], table_html(t)) for t in found]
    headers = sorted(
        (Element(cat, [lines[i]]) for i, cat in marks.items() if cat == "Page-header"), key=lambda e: e.bbox[0]
    )
    footers = sorted(
        (Element(cat, [lines[i]]) for i, cat in marks.items() if cat == "Page-footer"), key=lambda e: e.bbox[0]
    )
    return headers + reading_order(elements, rules.gutter * h) + footers
