"""Text pieces -> dots.ocr-like layout elements, by measured rules checked on a corpus.

A text detector finds lines, not documents. These rules turn its pieces into what dots.ocr
answers: paragraphs, titles, section headers, list items, tables, page headers and footers,
in reading order. Each rule is a measurement on the page itself, scaled by its body text (the
size most of its characters are set in), so the same rules hold at any dpi. Each was chosen
on the layout corpus (bench/layout_corpus.py, bench/layout_eval.py; figures in
bench/README.md), and where a rule is unsure it leaves structure out: plain text in reading
order is never wrong in the way a made-up heading or a scattered table is.

1. tables first, on the detector's pieces: consecutive rows of two or more cells set apart,
   whose columns line up, and that hold what tables hold: a column of numbers, or at least
   three columns and three rows. Label/value lists ("Name: ...") and side-by-side address
   blocks line up too, and are not tables;
2. the other pieces on one baseline join into a line when the gap is small, or when the
   left one is a label ending in a colon (its value belongs to it);
3. short lines in the top or bottom band, apart from the body, are page headers / footers;
4. a line continues the paragraph above it when the gap is within the page's usual line
   gap, the size and weight match and the left edge agrees (a first-line indent, and a list
   item's hanging indent, allowed); a line starting with a bullet or number starts anew;
5. a heading needs evidence in its ink (ink.py): letters standing taller than the body's, or
   strokes heavier at about the body's height. Nothing else makes one: not a short line, not
   a wide box, not a position. The largest heading near the top, set well above the body, is
   the title. Without the page's pixels there is no such evidence and there are no headings;
6. reading order by a recursive XY cut: columns only where a gutter parts running text (a
   paragraph of two or more lines on each side), then bands top to bottom, and inside a band
   rows top to bottom, each left to right, so a label stays before its value.

Pure functions on coordinates (and, for rule 5, measurements of the pixels): no engine.
"""

from __future__ import annotations

import html
import itertools
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

from vlmswap.worker.engines.ink import Ink

Category = Literal["Title", "Section-header", "Text", "List-item", "Table", "Page-header", "Page-footer"]


class Piece(Protocol):
    """What a text detector gives: an axis-aligned box (pixels) and its text (read only: a Line is one too)."""

    @property
    def x1(self) -> float: ...
    @property
    def y1(self) -> float: ...
    @property
    def x2(self) -> float: ...
    @property
    def y2(self) -> float: ...
    @property
    def text(self) -> str: ...


@dataclass(frozen=True)
class Rules:
    """The thresholds, each relative to the body text height `h` or to the page size."""

    join_gap: float = 1.2  # pieces of one line: horizontal gap < join_gap * h
    label_gap: float = 12.0  # a label ending in ":" takes the value up to label_gap * h to its right
    band: float = 0.07  # page header / footer: centre within this fraction of the top / bottom
    furniture_width: float = 0.6  # ... and narrower than this fraction of the page width
    para_gap: float = 0.5  # a paragraph's next line: gap < para_gap * the lower line's height
    # (measured gaps: 1.5 spacing ~0.4, double spacing ~0.7) ...
    para_gap_slack: float = 0.4  # ... and < the page's usual line gap + para_gap_slack * h
    same_size: float = 1.2  # lines of one paragraph: set in sizes within this ratio (size_ratio)
    same_weight: float = 1.15  # ... and in strokes within this ratio, where the ink is measured
    pitch_slack: float = 0.3  # ... and baselines at most the page's usual pitch + pitch_slack * letter height
    left_tolerance: float = 1.0  # left edges agree within left_tolerance * h
    indent: float = 4.0  # a paragraph's first line may be indented up to indent * h
    taller: float = 1.12  # heading: letters at least this much taller than the body's ...
    heavier: float = 1.15  # ... or strokes this much heavier at about the body's height
    about: float = 0.92  # ("about": letters at least this fraction of the body's height)
    title_ratio: float = 1.5  # title: letters at least title_ratio times the body's height
    heading_lines: int = 3  # headings are at most this many lines
    gutter: float = 1.0  # column gutter: at least gutter * h wide
    cell_gap: float = 0.4  # table cells: apart by at least cell_gap * h
    cell_width: float = 0.6  # table cell: narrower than this fraction of the text's width
    numeric: float = 0.6  # a column of numbers: at least this share of its cells numeric
    table_rows: int = 2  # a table has at least this many rows ...
    table_cols: int = 2  # ... and columns


@dataclass(frozen=True)
class Line:
    x1: float
    y1: float
    x2: float
    y2: float
    text: str
    ink: Ink | None = None
    chars: tuple[tuple[float, float], ...] | None = None  # x ranges of the non-space characters, if known
    pair: bool = False  # a label and its value ("Name: Anna"): a line of its own, no paragraph

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
    """The size most of the page's characters are written in: box height, and the ink's letter height and weight."""

    height: float
    advance: float
    ink: Ink | None = None

    def evidence(self, lines: Sequence[Line], rules: Rules = Rules()) -> float:
        """How much these lines stand out from the body in their ink: 0 for no evidence, else the
        ratio of their letter height to the body's (a heavier face at body size counts as 1.0+)."""
        inks = [(ln.ink, len(ln.text)) for ln in lines if ln.ink is not None]
        if self.ink is None or not inks or sum(c.isalpha() for ln in lines for c in ln.text) < 2:
            return 0.0
        height = _weighted_median([(i.height, n) for i, n in inks]) / self.ink.height
        weight = _weighted_median([(i.weight, n) for i, n in inks]) / max(self.ink.weight, 1e-6)
        if height >= rules.taller:
            return height
        if weight >= rules.heavier and height >= rules.about:
            return max(height, 1.0)
        return 0.0


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
#: letters that reach above the x-height: a line without any has no letter height to measure
_TALL = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789bdfhkl")
_BULLET = re.compile(r"^[•·●▪◦‣∙*–—-]\s")
_PAGE_NUMBER = re.compile(r"^(?:page\s*)?[-–]?\s*\d{1,4}\s*[-–]?(?:\s*(?:/|of)\s*\d{1,4})?$", re.I)
_NUMERIC = re.compile(r"^[-+(]?[$€£%]?\s?[\d.,'’:/ -]*\d[\d.,'’:/ -]*\s?(?:%|[$€£]|EUR|USD|GBP|kg|g|l|m|h)?\)?$")


# --- lines -------------------------------------------------------------------------------------


def rows_of(items: Iterable[Line], min_overlap: float = 0.5) -> list[list[Line]]:
    """Items sharing a baseline, top to bottom, each row left to right.

    An item joins a row when it overlaps the row's first item vertically by at least
    `min_overlap` of the smaller height and its centre lies within that item's height. The
    first item, not the row's growing span, is the measure: with tight leading the boxes of
    consecutive lines overlap, and a growing span would chain a column's lines into one row.
    """
    rows: list[tuple[float, float, list[Line]]] = []
    for it in sorted(items, key=lambda b: ((b.y1 + b.y2) / 2, b.x1)):
        centre = (it.y1 + it.y2) / 2
        for top, bottom, members in rows:
            if (
                min(bottom, it.y2) - max(top, it.y1) >= min_overlap * min(bottom - top, it.height)
                and top <= centre <= bottom
            ):
                members.append(it)
                break
        else:
            rows.append((it.y1, it.y2, [it]))
    rows.sort(key=lambda r: (min(b.y1 for b in r[2]), min(b.x1 for b in r[2])))
    return [sorted(members, key=lambda b: b.x1) for _, _, members in rows]


def _join(a: Line, b: Line, pair: bool = False) -> Line:
    return Line(
        a.x1, min(a.y1, b.y1), max(a.x2, b.x2), max(a.y2, b.y2), f"{a.text} {b.text}", pair=pair or a.pair or b.pair
    )


def _as_lines(pieces: Iterable[Piece]) -> list[Line]:
    out = []
    for p in pieces:
        if p.text.strip():
            chars = getattr(p, "chars", None)
            out.append(Line(p.x1, p.y1, p.x2, p.y2, p.text.strip(), chars=None if chars is None else tuple(chars)))
    return out


def lines_of(pieces: Iterable[Piece], rules: Rules = Rules()) -> list[Line]:
    """Detector pieces -> text lines: one row's pieces join while the gap between them is small,
    and a label ending in a colon takes the value beside it."""
    out: list[Line] = []
    for row in rows_of(_as_lines(pieces)):
        current = row[0]
        for it in row[1:]:
            h = min(current.height, it.height)
            gap = it.x1 - current.x2
            label = current.text.endswith(":")
            if gap < rules.join_gap * h or (label and gap < rules.label_gap * h):
                current = _join(current, it, pair=label)
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
    """Box height, per-character width and ink most of the page's characters have (medians weighted by text length)."""
    if not lines:
        return Body(1.0, 1.0)
    inked = [(ln.ink, len(ln.text)) for ln in lines if ln.ink is not None]
    ink = None
    if inked:
        height = _weighted_median([(i.height, n) for i, n in inked])
        ink = Ink(height, height * _weighted_median([(i.weight, n) for i, n in inked]))
    return Body(
        _weighted_median([(ln.height, len(ln.text)) for ln in lines]),
        _weighted_median([(ln.advance, len(ln.text)) for ln in lines]),
        ink,
    )


# --- page headers and footers ------------------------------------------------------------------


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


# --- tables ------------------------------------------------------------------------------------


def _column_spans(cells: Iterable[Line]) -> list[tuple[float, float]]:
    """Cells' x ranges merged where they overlap: one span per aligned column."""
    spans: list[list[float]] = []
    for c in sorted(cells, key=lambda c: c.x1):
        if spans and c.x1 <= spans[-1][1]:
            spans[-1][1] = max(spans[-1][1], c.x2)
        else:
            spans.append([c.x1, c.x2])
    return [(a, b) for a, b in spans]


def _column(spans: Sequence[tuple[float, float]], c: Line) -> int:
    return next((k for k, (a, b) in enumerate(spans) if a <= c.x1 <= b), len(spans) - 1)


def _aligned(rows: Sequence[list[Line]]) -> list[tuple[float, float]] | None:
    """The table's column spans when every row puts each cell in a column of its own, else None."""
    spans = _column_spans(c for row in rows for c in row)
    for row in rows:
        taken = [_column(spans, c) for c in row]
        if len(set(taken)) != len(taken):
            return None
    return spans


def _cells(row: list[Line], h: float, rules: Rules) -> list[Line]:
    """A row's pieces joined across word gaps: its cells."""
    out = [row[0]]
    for it in row[1:]:
        if it.x1 - out[-1].x2 < rules.cell_gap * h:
            out[-1] = _join(out[-1], it)
        else:
            out.append(it)
    return out


def numeric(text: str) -> bool:
    """A number, an amount, a date or a time: what fills a table's columns."""
    return bool(_NUMERIC.match(text.strip()))


def _is_table(rows: Sequence[list[Line]], rules: Rules) -> bool:
    """Aligned rows that hold what tables hold: a column of numbers with a number on every row
    below the header, or three columns filled on three rows or more. Label/value lists and
    two columns of prose line up as well, and are no table."""
    spans = _aligned(rows)
    if spans is None or len(rows) < rules.table_rows or len(spans) < rules.table_cols:
        return False
    labels = sum(1 for row in rows if row[0].text.endswith(":"))
    if labels * 2 >= len(rows):
        return False
    tops = [min(c.y1 for c in row) for row in rows]
    pitches = [b - a for a, b in itertools.pairwise(tops)]
    if max(pitches) > 1.5 * statistics.median(pitches):
        return False  # evenly pitched rows, not a line above set further off
    body = rows[1:] if len(rows) > 2 else rows
    if all(any(numeric(c.text) for c in row if _column(spans, c) > 0) for row in body):
        for k in range(1, len(spans)):
            col = [c for row in body for c in row if _column(spans, c) == k]
            if len(col) >= max(2, len(body) // 2) and sum(numeric(c.text) for c in col) >= rules.numeric * len(col):
                return True
    return len(spans) >= 3 and len(rows) >= 3 and all(len(r) >= 3 for r in rows)


def _best_tables(run: list[list[Line]], rules: Rules) -> list[list[list[Line]]]:
    """The longest stretch of a run of cell rows that is a table, then the same in what is left
    above and below it (a label/value list just above a table lines up with its first rows)."""
    best: tuple[int, int] | None = None
    for i in range(len(run) - rules.table_rows + 1):
        longest = best[1] - best[0] if best else rules.table_rows - 1
        for j in range(len(run), i + longest, -1):
            if _is_table(run[i:j], rules):
                best = (i, j)
                break
    if best is None:
        return []
    i, j = best
    return _best_tables(run[:i], rules) + [run[i:j]] + _best_tables(run[j:], rules)


@dataclass
class Table:
    """A table found among the pieces: its rows of cells, and the pieces it took."""

    rows: list[list[Line]]
    pieces: list[Line]
    spans: list[tuple[float, float]]  # the columns' x ranges, from the rows below any header

    @property
    def html(self) -> str:
        return table_html(self.rows, self.spans)


def tables(pieces: Sequence[Line], h: float, rules: Rules = Rules()) -> list[Table]:
    """Tables among the pieces (see the module's rule 1), each with its header row where the
    detector read that row as one piece."""
    if not pieces:
        return []
    text_width = max(ln.x2 for ln in pieces) - min(ln.x1 for ln in pieces)

    def cell_row(row: list[Line]) -> bool:
        return len(row) >= rules.table_cols and all(c.width < rules.cell_width * text_width for c in row)

    raw = rows_of(pieces)
    cells = [_cells(r, h, rules) for r in raw]
    index = {id(r): k for k, r in enumerate(cells)}
    found: list[list[list[Line]]] = []
    run: list[list[Line]] = []

    def top(row: list[Line]) -> float:
        return min(c.y1 for c in row)

    for row in cells:
        near = bool(run) and top(row) - max(c.y2 for c in run[-1]) < 2.0 * h
        if len(run) >= 2:  # a table's rows are evenly pitched: a row set further off is not one of them
            pitch = statistics.median(top(b) - top(a) for a, b in itertools.pairwise(run))
            near = near and top(row) - top(run[-1]) <= 1.5 * pitch
        if cell_row(row) and (not run or near):
            run.append(row)
            continue
        found += _best_tables(run, rules)
        run = [row] if cell_row(row) else []
    found += _best_tables(run, rules)
    taken = {index[id(r)] for t in found for r in t}
    out = []
    for t in found:
        ks = [index[id(r)] for r in t]
        rows = list(t)
        above = ks[0] - 1
        headless = any(numeric(c.text) for c in rows[0][1:])  # its first row is data: the header is above
        if headless and above >= 0 and above not in taken:
            header = _header(raw[above], rows, h)
            if header is not None:
                rows.insert(0, header)
                ks.insert(0, above)
                taken.add(above)
        spans = _aligned(t) or _column_spans(c for row in t for c in row)
        out.append(Table(rows, [p for k in ks for p in raw[k]], spans))
    return out


def _header(row: list[Line], rows: list[list[Line]], h: float) -> list[Line] | None:
    """The row just above a table as the table's header, cut at its columns: the detector reads
    a header whose words stand a few spaces apart as one piece. Only a row of as many words as
    there are columns or more, within the table's width and close above it."""
    spans = _aligned(rows)
    if spans is None or min(c.y1 for c in rows[0]) - max(c.y2 for c in row) > 1.5 * h:
        return None
    if min(c.x1 for c in row) < spans[0][0] - 2 * h or max(c.x2 for c in row) > spans[-1][1] + 4 * h:
        return None
    if any(c.text.endswith(":") or numeric(c.text) for c in row):
        return None  # a header names its columns: no label, no number
    words: list[tuple[str, float, float]] = []
    for piece in row:
        words += _word_spans(piece)
    if len(words) < len(spans):
        return None
    columns: list[list[tuple[str, float, float]]] = [[] for _ in spans]
    last = 0
    for w in words:
        k = _best_column(spans, Line(w[1], 0, w[2], 1, w[0]))
        if k < last:
            return None
        last = k
        columns[k].append(w)
    if sum(1 for c in columns if c) < 2:
        return None
    y1, y2 = min(c.y1 for c in row), max(c.y2 for c in row)
    return [Line(c[0][1], y1, c[-1][2], y2, " ".join(w[0] for w in c)) for c in columns if c]


def _word_spans(piece: Line) -> list[tuple[str, float, float]]:
    """A piece's words with the x range of each: from the recognizer's character positions where
    they came with it, else spread evenly over the piece's width."""
    words = [(m.group(), m.start(), m.end()) for m in re.finditer(r"\S+", piece.text)]
    if piece.chars is not None and len(piece.chars) == sum(1 for c in piece.text if not c.isspace()):
        where = {i: k for k, i in enumerate(i for i, c in enumerate(piece.text) if not c.isspace())}
        return [(w, piece.chars[where[a]][0], piece.chars[where[b - 1]][1]) for w, a, b in words]
    per = piece.width / max(len(piece.text), 1)
    return [(w, piece.x1 + a * per, piece.x1 + b * per) for w, a, b in words]


def table_html(rows: Sequence[list[Line]], spans: Sequence[tuple[float, float]] | None = None) -> str:
    """HTML as dots.ocr writes tables; a cell missing from a row stays an empty <td>. Each cell
    goes to the column it overlaps most (`spans`: the columns, else those the rows line up in)."""
    if spans is None:
        spans = _aligned(rows) or _column_spans(c for row in rows for c in row)
    out = ["<table>"]
    for row in rows:
        cells = [""] * len(spans)
        for c in row:
            k = _best_column(spans, c)
            cells[k] = (cells[k] + " " + c.text).strip()
        out.append("<tr>" + "".join(f"<td>{html.escape(t, quote=False)}</td>" for t in cells) + "</tr>")
    out.append("</table>")
    return "".join(out)


def _best_column(spans: Sequence[tuple[float, float]], c: Line) -> int:
    return max(
        range(len(spans)),
        key=lambda k: (min(c.x2, spans[k][1]) - max(c.x1, spans[k][0]), -abs(c.x1 + c.x2 - spans[k][0] - spans[k][1])),
    )


# --- paragraphs --------------------------------------------------------------------------------


def size_ratio(a: Line, b: Line) -> float:
    """How much larger the larger of two lines is set (>= 1): by their ink's letter height where
    both are measured, else by their boxes' height."""
    if a.ink is not None and b.ink is not None:
        return max(a.ink.height, b.ink.height) / max(min(a.ink.height, b.ink.height), 1.0)
    return max(a.height, b.height) / min(a.height, b.height)


def weight_ratio(a: Line, b: Line) -> float:
    """How much heavier the heavier of two lines' strokes are (1.0 where the ink is not measured)."""
    if a.ink is None or b.ink is None:
        return 1.0
    return max(a.ink.weight, b.ink.weight) / max(min(a.ink.weight, b.ink.weight), 1e-6)


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


def usual_pitch(lines: Sequence[Line], rules: Rules = Rules()) -> float | None:
    """The median distance between the baselines of a line and the next one under it (same size,
    overlapping), where the ink is measured: a paragraph's lines are set at this pitch."""
    pitches = []
    for a in lines:
        if a.ink is None:
            continue
        under = [
            b.ink.base - a.ink.base
            for b in lines
            if b is not a
            and b.ink is not None
            and b.ink.base - a.ink.base > 0.5 * a.ink.height
            and min(a.x2, b.x2) - max(a.x1, b.x1) > 0.5 * min(a.width, b.width)
            and size_ratio(a, b) <= rules.same_size
        ]
        if under:
            pitches.append(min(under))
    return statistics.median(pitches) if pitches else None


def paragraphs(lines: Sequence[Line], rules: Rules = Rules(), body: Body | None = None) -> list[list[Line]]:
    """Lines -> paragraphs (each top to bottom); see the module's rule 4. With the page's `body`,
    a line that would be a heading by its ink and one that would not never share a paragraph."""
    stands_out = {id(ln): body.evidence([ln], rules) > 0 for ln in lines} if body is not None else {}
    usual = usual_gap(lines, rules)
    pitch = usual_pitch(lines, rules)
    paras: list[list[Line]] = []
    for ln in sorted(lines, key=lambda ln: (ln.y1, ln.x1)):
        best, best_gap = None, None
        if not _LIST_MARK.match(ln.text) and not ln.pair:
            for para in paras:
                last = para[-1]
                if last.pair:
                    continue
                h = min(last.height, ln.height)
                gap = _below(last, ln)
                limit = rules.para_gap * h
                if usual is not None:
                    limit = min(limit, max(usual, 0.0) + rules.para_gap_slack * h)
                if not -0.3 * h <= gap <= limit:
                    continue
                if size_ratio(last, ln) > rules.same_size or weight_ratio(last, ln) > rules.same_weight:
                    continue
                if stands_out.get(id(last), False) != stands_out.get(id(ln), False):
                    continue
                if (
                    pitch is not None
                    and last.ink is not None
                    and ln.ink is not None
                    and (ln.ink.base - last.ink.base > pitch + rules.pitch_slack * min(last.ink.height, ln.ink.height))
                ):
                    continue  # set further apart than its lines
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
    """Paragraphs -> elements: headings where the ink says so (rule 5), one Title at most, lists, text."""
    out = [Element("Text", list(p)) for p in paras]
    evidence = {id(e): body.evidence(e.lines, rules) for e in out}
    headings = [
        e
        for e in out
        if len(e.lines) <= rules.heading_lines and evidence[id(e)] > 0 and not _BULLET.match(e.lines[0].text)
    ]
    for e in headings:
        e.category = "Section-header"
    titles = [e for e in headings if evidence[id(e)] >= rules.title_ratio and e.bbox[1] < page[1] / 3]
    if titles:
        max(titles, key=lambda e: (evidence[id(e)], -e.bbox[1])).category = "Title"
    for e in out:
        if e.category == "Text" and _LIST_MARK.match(e.lines[0].text):
            e.category = "List-item"
    return out


# --- reading order -----------------------------------------------------------------------------

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


def _running_text(group: Sequence[Element]) -> bool:
    """A paragraph of two lines or more, of ten characters a line or more: prose, an address,
    not a stack of short terms or labels."""
    return any(
        e.category != "Table" and len(e.lines) >= 2 and sum(len(ln.text) for ln in e.lines) >= 10 * len(e.lines)
        for e in group
    )


def _columns(elements: Sequence[Element], gutter: float) -> tuple[list[list[Element]], list[Span]]:
    """Columns at gutters that part running text on both sides; ([elements], []) where there are none."""
    groups, gaps = _split(elements, 0, gutter)
    if len(groups) > 1 and sum(_running_text(g) for g in groups) >= 2:
        return groups, gaps
    return [list(elements)], []


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    return min(a[3], b[3]) - max(a[1], b[1])


def _rows(elements: Sequence[Element]) -> list[Element]:
    """Elements of one band in rows, top to bottom, each row left to right.

    A paragraph of several lines beside other elements on the same rows (short lines stacked
    in a code listing or a list of labels, with their values to the right) is no paragraph the
    rules can be sure of: its lines go back to being lines, read row by row with the rest.
    """
    elements = list(elements)
    unsure = [
        e
        for e in elements
        if len(e.lines) > 1
        and e.category in ("Text", "List-item")
        and any(o is not e and _overlap(e.bbox, o.bbox) > 0.5 * min(ln.height for ln in o.lines) for o in elements)
    ]
    for e in unsure:
        elements.remove(e)
        elements += [Element("Text", [ln]) for ln in e.lines]
    rows: list[tuple[float, float, list[Element]]] = []
    for e in sorted(elements, key=lambda e: (e.bbox[1], e.bbox[0])):
        x1, y1, x2, y2 = e.bbox
        for i, (top, bottom, members) in enumerate(rows):
            if min(bottom, y2) - max(top, y1) >= 0.5 * min(bottom - top, y2 - y1):
                members.append(e)
                rows[i] = (min(top, y1), max(bottom, y2), members)
                break
        else:
            rows.append((y1, y2, [e]))
    return [e for _, _, members in rows for e in sorted(members, key=lambda e: e.bbox[0])]


def _runs_on(part: Sequence[Element], band: Sequence[Element], gutter: float) -> bool:
    """Whether the band continues the longest column of the part above it: it lies within that
    column, which already reaches lower than the others (a column longer than its neighbour
    runs on below it; text under the shorter column, or across, starts a new part)."""
    columns = _columns(part, gutter)[0]
    if len(columns) < 2:
        return False
    x1, x2 = min(e.bbox[0] for e in band), max(e.bbox[2] for e in band)
    ends = [max(e.bbox[3] for e in col) for col in columns]
    for col, end in zip(columns, ends):
        cx1, cx2 = min(e.bbox[0] for e in col), max(e.bbox[2] for e in col)
        others = [c for c in columns if c is not col]
        clear = all(x2 < min(e.bbox[0] for e in o) or x1 > max(e.bbox[2] for e in o) for o in others)
        if cx1 - gutter <= x1 and x2 <= cx2 + gutter and clear:
            return end >= max(ends)
    return False


def _common(a: Sequence[Span], b: Sequence[Span], min_gap: float) -> list[Span]:
    out = []
    for a1, a2 in a:
        for b1, b2 in b:
            lo, hi = max(a1, b1), min(a2, b2)
            if hi - lo >= min_gap:
                out.append((lo, hi))
    return out


def reading_order(elements: Sequence[Element], gutter: float) -> list[Element]:
    """Columns left to right, each read top to bottom; bands that share a gutter stay one part;
    inside a band, rows top to bottom, each left to right."""
    if len(elements) <= 1:
        return list(elements)
    columns, _ = _columns(elements, gutter)
    if len(columns) > 1:
        return [e for col in columns for e in reading_order(col, gutter)]
    bands, _ = _split(elements, 1, 0.0)
    if len(bands) == 1:
        return _rows(elements)
    parts: list[list[Element]] = []
    shared: list[Span] = []
    for band in bands:
        gutters = _columns(band, gutter)[1] if len(band) > 1 else []
        common = _common(shared, gutters, gutter) if parts else []
        if common:
            parts[-1].extend(band)
            shared = common
        elif shared and not gutters and _runs_on(parts[-1], band, gutter):
            parts[-1].extend(band)  # a column running on below the other one's end
        else:
            parts.append(list(band))
            shared = gutters
    if len(parts) == 1:
        return (
            _rows(parts[0])
            if not shared
            else [e for col in _columns(parts[0], gutter)[0] for e in reading_order(col, gutter)]
        )
    return [e for part in parts for e in reading_order(part, gutter)]


# --- all together ------------------------------------------------------------------------------

Measure = Callable[[tuple[float, float, float, float]], Ink | None]


def layout(
    pieces: Iterable[Piece], page: tuple[int, int], rules: Rules = Rules(), measure: Measure | None = None
) -> list[Element]:
    """The page's elements in reading order: headers first, then the body, then footers.

    `measure` gives the ink of a box on the page (ink.measure bound to the page's pixels);
    without it the rules find no headings (rule 5).
    """
    raw = _as_lines(pieces)
    if not raw:
        return []
    h = body_size(lines_of(raw, rules)).height
    found = tables(raw, h, rules)
    in_tables = {id(piece) for t in found for piece in t.pieces}
    lines = lines_of([p for p in raw if id(p) not in in_tables], rules)
    if measure is not None:
        lines = [replace(ln, ink=measure(_own_box(ln, lines)) if _TALL.intersection(ln.text) else None) for ln in lines]
    body_text = body_size(lines) if lines else Body(h, 1.0)
    marks = furniture(lines, page, h, rules)
    body = [ln for i, ln in enumerate(lines) if i not in marks]
    elements = classify(paragraphs(body, rules, body_text), page, body_text, rules)
    elements += [Element("Table", [c for row in t.rows for c in row], t.html) for t in found]
    headers = sorted(
        (Element(cat, [lines[i]]) for i, cat in marks.items() if cat == "Page-header"), key=lambda e: e.bbox[0]
    )
    footers = sorted(
        (Element(cat, [lines[i]]) for i, cat in marks.items() if cat == "Page-footer"), key=lambda e: e.bbox[0]
    )
    return headers + reading_order(elements, rules.gutter * h) + footers


def _own_box(ln: Line, lines: Sequence[Line]) -> tuple[float, float, float, float]:
    """The line's box less what it shares with the lines above and below (tight leading makes
    boxes overlap, and a neighbour's descenders or capitals would count as this line's ink)."""
    y1, y2 = ln.y1, ln.y2
    mid = (ln.y1 + ln.y2) / 2
    for o in lines:
        if o is ln or min(o.x2, ln.x2) <= max(o.x1, ln.x1):
            continue
        if (o.y1 + o.y2) / 2 < mid and o.y2 > y1:
            y1 = max(y1, (o.y2 + ln.y1) / 2)
        elif (o.y1 + o.y2) / 2 > mid and o.y1 < y2:
            y2 = min(y2, (o.y1 + ln.y2) / 2)
    return (ln.x1, y1, ln.x2, y2)
