"""The layout corpus: pages of the kinds people scan, each with its truth, made on the spot.

Business pages (letters, invoices, reports with small tables, two-column articles, forms,
receipts, slides) are drawn with Pillow from a seeded description in Debian's fonts
(scripts/system-deps.sh installs them), so each page's truth is known exactly: its blocks in
reading order, each with a dots.ocr category (Title, Section-header, Text, List-item, Table
with its rows of cells, Page-header, Page-footer) and the box it was drawn in. Typeset
manuals are pages of PDFs that Debian ships, rendered with pypdfium2; their truth is the
PDF's own text layer, a line a heading when its characters are set 1.15x the page's body
size or more, most of them in a bold face.

Nothing is committed but this script: the pages come out the same on every run (fixed
seeds, fixed fonts), and a test renders the one page it needs in milliseconds. Some kinds
are held out (HELD_OUT): the engine's thresholds were never looked at on them, so their
figures say how the engine does on pages nobody tuned it for.

Write the pages to look at them: python bench/layout_corpus.py OUT_DIR [--kinds letter,...]
(a PNG and a truth JSON per page).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import random
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = "/usr/share/fonts/truetype"
#: family -> (regular, bold): the Debian packages fonts-dejavu-core, fonts-liberation2, fonts-crosextra-carlito,
#: fonts-crosextra-caladea and fonts-freefont-ttf.
FONTS: dict[str, tuple[str, str]] = {
    "DejaVuSans": ("dejavu/DejaVuSans.ttf", "dejavu/DejaVuSans-Bold.ttf"),
    "LiberationSerif": ("liberation2/LiberationSerif-Regular.ttf", "liberation2/LiberationSerif-Bold.ttf"),
    "Carlito": ("crosextra/Carlito-Regular.ttf", "crosextra/Carlito-Bold.ttf"),
    "LiberationSans": ("liberation2/LiberationSans-Regular.ttf", "liberation2/LiberationSans-Bold.ttf"),
    "FreeSerif": ("freefont/FreeSerif.ttf", "freefont/FreeSerifBold.ttf"),
    "Caladea": ("crosextra/Caladea-Regular.ttf", "crosextra/Caladea-Bold.ttf"),
    "DejaVuSerif": ("dejavu/DejaVuSerif.ttf", "dejavu/DejaVuSerif-Bold.ttf"),
    "FreeSans": ("freefont/FreeSans.ttf", "freefont/FreeSansBold.ttf"),
    "LiberationMono": ("liberation2/LiberationMono-Regular.ttf", "liberation2/LiberationMono-Bold.ttf"),
    "DejaVuSansMono": ("dejavu/DejaVuSansMono.ttf", "dejavu/DejaVuSansMono-Bold.ttf"),
}
PROPORTIONAL = [f for f in FONTS if "Mono" not in f]
#: body sizes in pixels at 150 dpi: 10, 11, 12 and 13 pt.
BODY_SIZES = [21, 23, 25, 27]
A4 = (1240, 1754)
DPI = 150

#: Kinds the engine's rules were never tuned on; reported apart.
HELD_OUT = frozenset({"receipt", "slide", "manual-heldout"})

#: Typeset manuals Debian ships (scripts/system-deps.sh): (kind, path, 0-based page numbers).
MANUALS = [
    ("manual", "/usr/share/doc/libtasn1-doc/libtasn1.pdf", [3, 4, 5]),
    ("manual", "/usr/share/doc/shared-mime-info/shared-mime-info-spec.pdf", [2, 3, 4]),
    ("manual-heldout", "/usr/share/doc/libidn2-doc/libidn2.pdf", [4, 5]),
    ("manual-heldout", "/usr/share/doc/bash/bashref.pdf", [12, 30]),
]


@dataclass
class Block:
    """One truth block: its category, text, box (page pixels) and, for a table, its rows of cells."""

    category: str
    text: str
    bbox: tuple[float, float, float, float]
    rows: list[list[str]] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"category": self.category, "text": self.text, "bbox": [round(v, 1) for v in self.bbox]}
        if self.rows is not None:
            d["rows"] = self.rows
        return d


@dataclass
class Page:
    name: str
    kind: str
    image: Image.Image
    blocks: list[Block] = field(default_factory=list)
    #: False where the truth has no paragraph grouping (manuals: one block per text-layer line).
    paragraphs: bool = True
    font: str = ""
    body_px: int = 0

    @property
    def held_out(self) -> bool:
        return self.kind in HELD_OUT

    @property
    def text(self) -> str:
        """The page's text in reading order: blocks one per line, a table row by row."""
        return "\n".join(block_text(b) for b in self.blocks)

    def truth(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "held_out": self.held_out,
            "size": list(self.image.size),
            "font": self.font,
            "body_px": self.body_px,
            "paragraphs": self.paragraphs,
            "blocks": [b.to_dict() for b in self.blocks],
        }


def block_text(b: Block) -> str:
    if b.rows is not None:
        return "\n".join(" ".join(c for c in row if c) for row in b.rows)
    return b.text


# --- drawing -------------------------------------------------------------------------------------


@cache
def font(family: str, px: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(os.path.join(FONT_DIR, FONTS[family][int(bold)]), px)


class Sheet:
    """A white page that records every block drawn on it, in the order drawn (the reading order)."""

    def __init__(self, size: tuple[int, int], family: str, body: int):
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        self.family, self.body = family, body
        self.blocks: list[Block] = []

    def f(self, scale: float = 1.0, bold: bool = False, family: str | None = None) -> ImageFont.FreeTypeFont:
        return font(family or self.family, round(self.body * scale), bold)

    def wrap(self, text: str, fnt: ImageFont.FreeTypeFont, width: float) -> list[str]:
        lines: list[str] = []
        for word in text.split():
            if lines and fnt.getlength(lines[-1] + " " + word) <= width:
                lines[-1] += " " + word
            else:
                lines.append(word)
        return lines

    def lines(
        self,
        texts: Sequence[str],
        fnt: ImageFont.FreeTypeFont,
        x: float,
        y: float,
        *,
        width: float = 0,
        align: str = "left",
        leading: float = 1.35,
    ) -> tuple[tuple[float, float, float, float], float]:
        """Draw lines one under the other; (their ink box, the y below them)."""
        pitch = fnt.size * leading
        box = [1e9, 1e9, -1e9, -1e9]
        for i, t in enumerate(texts):
            w = fnt.getlength(t)
            lx = x + (width - w if align == "right" else (width - w) / 2 if align == "center" else 0)
            ly = y + i * pitch
            self.draw.text((lx, ly), t, font=fnt, fill="black")
            b = self.draw.textbbox((lx, ly), t, font=fnt)
            box = [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
        return (box[0], box[1], box[2], box[3]), y + len(texts) * pitch

    def block(
        self,
        category: str,
        text: str | Sequence[str],
        x: float,
        y: float,
        width: float,
        *,
        scale: float = 1.0,
        bold: bool = False,
        align: str = "left",
        leading: float = 1.35,
        family: str | None = None,
    ) -> float:
        """One block: `text` wrapped to `width` (a list: lines kept as given); returns the y below it."""
        fnt = self.f(scale, bold, family)
        texts = self.wrap(text, fnt, width) if isinstance(text, str) else list(text)
        box, bottom = self.lines(texts, fnt, x, y, width=width, align=align, leading=leading)
        self.blocks.append(Block(category, " ".join(texts), box))
        return bottom

    def pair(self, label: str, value: str, x: float, y: float, value_x: float, *, underline: bool = False) -> None:
        """A label and its value set apart on one line, as forms and invoices have; one truth block "label value"."""
        fnt = self.f()
        self.draw.text((x, y), label, font=fnt, fill="black")
        self.draw.text((value_x, y), value, font=fnt, fill="black")
        lb, vb = self.draw.textbbox((x, y), label, font=fnt), self.draw.textbbox((value_x, y), value, font=fnt)
        if underline:  # the field's rule, as printed forms have
            ly = y + self.body * 1.25
            self.draw.line([(value_x - 4, ly), (value_x + 9 * self.body, ly)], fill="black")
        self.blocks.append(Block("Text", f"{label} {value}", (lb[0], min(lb[1], vb[1]), vb[2], max(lb[3], vb[3]))))

    def table(
        self,
        rows: Sequence[Sequence[str]],
        x: float,
        y: float,
        columns: Sequence[float],
        *,
        right: Sequence[bool] = (),
        header_bold: bool = True,
        leading: float = 1.5,
        rule: bool = False,
        family: str | None = None,
    ) -> float:
        """A table: cell k of each row at columns[k] (its right edge there when right[k]); returns the y below."""
        box = [1e9, 1e9, -1e9, -1e9]
        pitch = self.body * leading
        for r, row in enumerate(rows):
            fnt = self.f(bold=header_bold and r == 0, family=family)
            for k, cell in enumerate(row):
                if not cell:
                    continue
                w = fnt.getlength(cell)
                cx = columns[k] - w if k < len(right) and right[k] else columns[k]
                self.draw.text((cx, y + r * pitch), cell, font=fnt, fill="black")
                b = self.draw.textbbox((cx, y + r * pitch), cell, font=fnt)
                box = [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
            if rule and r == 0:
                ry = y + pitch - 0.12 * self.body
                self.draw.line([(x, ry), (box[2], ry)], fill="black", width=2)
        self.blocks.append(Block("Table", "", (box[0], box[1], box[2], box[3]), [list(r) for r in rows]))
        return y + len(rows) * pitch

    def page(self, name: str, kind: str) -> Page:
        return Page(name, kind, self.image, self.blocks, font=self.family, body_px=self.body)


# --- text ----------------------------------------------------------------------------------------

SENTENCES = [
    "The delivery arrived on time and all parcels were checked against the order.",
    "Please find enclosed the documents you asked for in your letter of last week.",
    "Our records show that the second instalment has not yet been received.",
    "The committee met twice in the spring to review the results of the survey.",
    "Measurements were taken at the same hour each morning to limit the effect of daylight.",
    "Most of the samples stayed within the limits set by the regional authority.",
    "A short summary of the changes is given in the table below.",
    "We would be grateful if you could confirm the new address by the end of the month.",
    "The old pumping station will be replaced by two smaller units next year.",
    "Staff who joined after the first of May will receive their training in September.",
    "The figures for the third quarter include the two stores that opened in July.",
    "Any questions about this notice can be sent to the office during opening hours.",
    "Costs rose slightly because of higher prices for energy and transport.",
    "The new software keeps a log of every change, so mistakes can be traced and undone.",
    "Visitors are asked to register at the front desk and to wear their badge at all times.",
    "The results suggest that smaller classes help pupils who are new to the language.",
    "Each team chose one project for the year and reported on it every quarter.",
    "Two of the older machines failed during the tests and were sent back for repair.",
    "The contract may be ended by either side with three months of written notice.",
    "Our aim is to answer every request within five working days of receiving it.",
    "The survey covered 412 households in eleven villages along the river valley.",
    "Rainfall in March was almost twice the average of the last ten years.",
    "The library will close at noon on Fridays while the building is being repaired.",
    "In the second phase the same method was applied to the northern districts.",
    "Prices are given in euros and include the value added tax where it applies.",
    "A copy of the signed agreement will be kept on file for seven years.",
    "The route through the old town is shorter but closed to heavy vehicles.",
    "Readers who want more detail will find the full data set in the appendix.",
    "The board thanked the volunteers who ran the spring market for the fourth time.",
    "Orders placed before two o'clock are shipped on the same working day.",
]
PEOPLE = [
    "Anna Novak",
    "Peter Lindqvist",
    "Maria Fernandes",
    "Jonas Becker",
    "Claire Dubois",
    "Tomasz Wojcik",
    "Elena Rossi",
    "David Okafor",
    "Sofia Karlsson",
    "Martin Hughes",
]
COMPANIES = [
    "Northwind Supplies Ltd",
    "Bluewater Engineering",
    "Alder & Finch Printing",
    "Riverside Dairy Co.",
    "Meridian Office Services",
    "Harbour Lane Books",
    "Greenfield Tools GmbH",
    "Oakridge Consulting",
]
STREETS = [
    "12 Mill Road",
    "45 Harbour Street",
    "7 Station Lane",
    "230 Park Avenue",
    "18 Church Walk",
    "3 Linden Square",
    "91 Bridge Road",
    "56 Orchard Close",
]
TOWNS = [
    "Cambridge CB2 1TN",
    "1010 Vienna",
    "Leeds LS1 4AP",
    "80331 Munich",
    "Bristol BS1 5TR",
    "Utrecht 3511 AB",
    "Lyon 69002",
    "Galway H91 E2K3",
]
MONTHS = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
]
ITEMS = [
    "Printer paper A4, 500 sheets",
    "Toner cartridge black",
    "Desk lamp LED",
    "Office chair, grey",
    "Cable ties, pack of 100",
    "Whiteboard markers, set of 4",
    "Archive box",
    "USB-C charger 65 W",
    "Stapler, heavy duty",
    "Monitor stand",
    "Envelopes C5, box of 500",
    "Label printer tape",
]


def paragraph(rng: random.Random, n: int) -> str:
    return " ".join(rng.sample(SENTENCES, n))


def money(v: float) -> str:
    return f"{v:,.2f}"


def date(rng: random.Random) -> str:
    return f"{rng.randint(1, 28)} {rng.choice(MONTHS)} 2025"


def style(i: int, kind: str) -> tuple[str, int]:
    """(font family, body px) for page i of a kind: every kind cycles through fonts and sizes."""
    offset = sum(map(ord, kind))
    return PROPORTIONAL[(i + offset) % len(PROPORTIONAL)], BODY_SIZES[(i + offset // 3) % len(BODY_SIZES)]


# --- the kinds -----------------------------------------------------------------------------------


def letter(i: int) -> Page:
    rng = random.Random(f"letter{i}")
    family, body = style(i, "letter")
    s = Sheet(A4, family, body)
    left, width = 150, A4[0] - 300
    company = rng.choice(COMPANIES)
    if i % 2 == 0:  # a letterhead set large and bold: the page's title
        y = s.block("Title", company, left, 110, width, scale=1.7, bold=True)
    else:  # a plain letterhead at body size: text, nothing more
        y = s.block("Text", company, left, 110, width)
    y = s.block(
        "Text",
        [rng.choice(STREETS), rng.choice(TOWNS), f"Phone +44 20 7946 0{rng.randint(100, 999)}"],
        left,
        y + 0.3 * body,
        width,
        scale=0.9,
        leading=1.3,
    )
    y = s.block(
        "Text",
        [rng.choice(PEOPLE), rng.choice(COMPANIES), rng.choice(STREETS), rng.choice(TOWNS)],
        left,
        y + 3 * body,
        width * 0.5,
    )
    y = s.block("Text", date(rng), left, y + 1.5 * body, width, align="right")
    if i % 3 != 2:  # a subject line in bold: a heading by weight, at body size
        y = s.block(
            "Section-header", f"Delivery note {rng.randint(1000, 9999)}", left, y + 1.5 * body, width, bold=True
        )
    name = rng.choice(PEOPLE)
    y = s.block("Text", f"Dear {name.split()[0]},", left, y + 1.5 * body, width)
    for n in (3, 2, 3)[: 2 + i % 2]:
        y = s.block("Text", paragraph(rng, n), left, y + 0.9 * body, width)
    amount = money(rng.randint(100, 900) + rng.choice([0, 0.5, 0.25]))
    y = s.block("Text", f"We will credit {amount} EUR within 30 days.", left, y + 0.9 * body, width)
    y = s.block("Text", "Kind regards,", left, y + 1.5 * body, width)
    y = s.block("Text", [rng.choice(PEOPLE), "Customer Service"], left, y + 2.5 * body, width)
    s.block(
        "Page-footer",
        f"{company} · Registered in England No. {rng.randint(1000000, 9999999)}",
        left,
        A4[1] - 90,
        width,
        scale=0.75,
        align="center",
    )
    return s.page(f"letter-{i}", "letter")


def invoice(i: int) -> Page:
    rng = random.Random(f"invoice{i}")
    family, body = style(i, "invoice")
    s = Sheet(A4, family, body)
    left, width = 130, A4[0] - 260
    y = s.block("Title", "INVOICE", left, 110, width, scale=2.0, bold=True)
    seller, buyer = rng.sample(COMPANIES, 2)
    top = y + body
    s.block("Text", [seller, rng.choice(STREETS), rng.choice(TOWNS)], left, top, width * 0.45)
    y = s.block(
        "Text", ["Bill to:", buyer, rng.choice(STREETS), rng.choice(TOWNS)], left + width * 0.55, top, width * 0.45
    )
    y += body
    for label, value in (
        ("Invoice no.:", f"2025-{rng.randint(100, 999)}"),
        ("Date:", date(rng)),
        ("Due date:", date(rng)),
    ):
        s.pair(label, value, left, y, left + 8 * body)
        y += body * 1.4
    y += body
    n = 3 + i % 5
    items = rng.sample(ITEMS, n)
    rows = [["Description", "Qty", "Unit price", "Amount"]]
    total = 0.0
    for it in items:
        q, p = rng.randint(1, 12), rng.randint(2, 120) + rng.choice([0.0, 0.5, 0.99])
        total += q * p
        rows.append([it, str(q), money(p), money(q * p)])
    vat = total * 0.2
    rows += [
        ["", "", "Subtotal", money(total)],
        ["", "", "VAT 20%", money(vat)],
        ["", "", "Total EUR", money(total + vat)],
    ]
    cols = [left, left + width * 0.62, left + width * 0.80, left + width]
    y = s.table(rows, left, y, cols, right=[False, True, True, True], rule=i % 2 == 0)
    y = s.block("Text", "Payment within 30 days by bank transfer. " + paragraph(rng, 1), left, y + 1.5 * body, width)
    s.block("Page-footer", "Page 1 of 1", left, A4[1] - 90, width, scale=0.8, align="right")
    return s.page(f"invoice-{i}", "invoice")


def report(i: int) -> Page:
    rng = random.Random(f"report{i}")
    family, body = style(i, "report")
    s = Sheet(A4, family, body)
    left, width = 140, A4[0] - 280
    topic = rng.choice(["Water Quality", "Energy Use", "Visitor Numbers", "Road Maintenance", "Air Quality"])
    s.block("Page-header", f"{topic} Report 2025", left, 60, width, scale=0.8, align="right")
    y = s.block("Title", f"{topic}: Quarterly Review", left, 160, width, scale=1.8, bold=True)
    y = s.block("Section-header", "1. Summary", left, y + body, width, scale=1.3, bold=True)
    y = s.block("Text", paragraph(rng, 3), left, y + 0.5 * body, width)
    # the small table: columns a few spaces apart (narrow gaps on odd pages)
    params = rng.sample(["pH", "Chlorine", "Nitrate", "Turbidity", "Iron", "Lead", "Hardness"], 2 + i % 3)
    months = MONTHS[(i * 3) % 12 : (i * 3) % 12 + 3]
    rows = [["Parameter", *months]] + [[p] + [f"{rng.uniform(0.1, 9.9):.1f}" for _ in months] for p in params]
    fnt = s.f()
    gap = body * (0.9 if i % 2 else 2.5)
    first = max(fnt.getlength(r[0]) for r in rows) + gap
    colw = max(fnt.getlength(c) for r in rows for c in r[1:]) + gap
    cols = [left] + [left + first + k * colw for k in range(len(months))]
    y = s.table(rows, left, y + body, cols, header_bold=i % 3 == 0, leading=1.45)
    y = s.block("Section-header", "2. Findings", left, y + body, width, scale=1.3, bold=True)
    for _ in range(2 + i % 2):
        y = s.block("List-item", "• " + paragraph(rng, 1), left + body, y + 0.3 * body, width - body)
    y = s.block("Text", paragraph(rng, 2 + i % 2), left, y + 0.8 * body, width)
    if i % 2 == 0:
        y = s.block("Section-header", "3. Next steps", left, y + body, width, scale=1.3, bold=True)
        y = s.block("Text", paragraph(rng, 2), left, y + 0.5 * body, width)
    s.block("Page-footer", str(2 + i), left, A4[1] - 90, width, scale=0.85, align="center")
    return s.page(f"report-{i}", "report")


def article(i: int) -> Page:
    rng = random.Random(f"article{i}")
    family, body = style(i, "article")
    body = min(body, 23)
    s = Sheet(A4, family, body)
    left, width = 110, A4[0] - 220
    gutter = 2.2 * body
    colw = (width - gutter) / 2
    title = rng.choice(
        [
            "Smaller Classes and Language Learning",
            "Rainfall and River Levels in the Valley",
            "Maintaining Old Pumping Stations",
            "A Survey of Rural Households",
        ]
    )
    y = s.block("Title", title, left, 120, width, scale=1.9, bold=True, align="center")
    author = rng.choice(PEOPLE)
    y = s.block(
        "Text",
        [f"{author}, Department of Applied Studies", f"{author.split()[1].lower()}@example.org"],
        left,
        y + 0.5 * body,
        width,
        align="center",
    )
    y = s.block("Text", "Abstract. " + paragraph(rng, 3), left + 2 * body, y + body, width - 4 * body)
    top = y + body
    heads = ["1 Introduction", "2 Method", "3 Results", "4 Discussion"]
    x, y, col = left, top, 0
    bottom = A4[1] - 160
    for h, head in enumerate(heads):
        for part in ("head", "p1", "p2"):
            if part == "head":
                text, kw = head, {"scale": 1.15, "bold": True}
            else:
                text, kw = paragraph(rng, 3 + (h + i) % 2), {}
            fnt = s.f(kw.get("scale", 1.0), bool(kw.get("bold", False)))
            need = len(s.wrap(text, fnt, colw)) * fnt.size * 1.35
            if y + need > bottom and col == 0:
                x, y, col = left + colw + gutter, top, 1
            if y + need > bottom:
                break
            cat = "Section-header" if part == "head" else "Text"
            y = s.block(cat, text, x, y + (0.6 * body if part == "head" and y > top else 0), colw, **kw)
            y += 0.5 * body
    s.block("Page-footer", str(11 + i), left, A4[1] - 90, width, scale=0.85, align="center")
    return s.page(f"article-{i}", "article")


def form(i: int) -> Page:
    rng = random.Random(f"form{i}")
    family, body = style(i, "form")
    s = Sheet(A4, family, body)
    left, width = 130, A4[0] - 260
    y = s.block(
        "Title",
        rng.choice(
            [
                "Application for a Parking Permit",
                "Change of Address",
                "Equipment Loan Request",
                "Membership Application",
            ]
        ),
        left,
        120,
        width,
        scale=1.6,
        bold=True,
    )
    person = rng.choice(PEOPLE)

    sections = [
        (
            "Applicant",
            [
                ("Surname:", person.split()[1]),
                ("First name:", person.split()[0]),
                ("Date of birth:", f"{rng.randint(1, 28)}.{rng.randint(1, 12)}.19{rng.randint(50, 99)}"),
                ("Phone:", f"0{rng.randint(100, 999)} {rng.randint(100000, 999999)}"),
            ],
        ),
        ("Address", [("Street:", rng.choice(STREETS)), ("Town:", rng.choice(TOWNS)), ("Since:", date(rng))]),
    ]
    for title, pairs in sections:
        y = s.block("Section-header", title, left, y + body, width, scale=1.0 + 0.25 * (i % 2), bold=True)
        y += 0.5 * body
        two = i % 3 == 1
        for k, (label, value) in enumerate(pairs):
            if two and k % 2 == 1:
                s.pair(
                    label, value, left + width / 2, y - body * 1.8, left + width / 2 + 7 * body, underline=i % 2 == 0
                )
                continue
            s.pair(label, value, left, y, left + 7 * body, underline=i % 2 == 0)
            y += body * 1.8
    y = s.block("Section-header", "Declaration", left, y + body, width, scale=1.0 + 0.25 * (i % 2), bold=True)
    y = s.block(
        "Text",
        "I confirm that the information given on this form is correct. " + paragraph(rng, 1),
        left,
        y + 0.5 * body,
        width,
    )
    y += body
    s.pair("Signature:", person, left, y, left + 7 * body, underline=i % 2 == 0)
    s.block("Page-footer", f"Form A-{10 + i} (2025)", left, A4[1] - 90, width, scale=0.75)
    return s.page(f"form-{i}", "form")


def receipt(i: int) -> Page:
    rng = random.Random(f"receipt{i}")
    family = ["LiberationMono", "DejaVuSansMono", "DejaVuSans", "LiberationSans", "FreeSans"][i % 5]
    body = [24, 26, 25, 27, 23][i % 5]
    size = (620, 1500)
    s = Sheet(size, family, body)
    left, width = 50, size[0] - 100
    y = s.block(
        "Title",
        rng.choice(["CORNER MARKET", "CAFE LINDEN", "HARDWARE PLUS", "BAKERY NOVAK"]),
        left,
        60,
        width,
        scale=1.5,
        bold=True,
        align="center",
    )
    y = s.block("Text", [rng.choice(STREETS), rng.choice(TOWNS)], left, y + 0.3 * body, width, align="center")
    y = s.block(
        "Text",
        f"{rng.randint(1, 28):02d}.{rng.randint(1, 12):02d}.2025 {rng.randint(7, 20):02d}:{rng.randint(0, 59):02d}",
        left,
        y + body,
        width,
        align="center",
    )
    goods = rng.sample(
        [
            "Milk 1 l",
            "Bread",
            "Apples 1 kg",
            "Coffee beans",
            "Butter",
            "Eggs x6",
            "Screws M4",
            "Tape 25 m",
            "Croissant",
            "Tea",
            "Orange juice",
            "Cheese",
        ],
        4 + i % 4,
    )
    rows = []
    total = 0.0
    for g in goods:
        p = rng.randint(1, 12) + rng.choice([0.0, 0.49, 0.99])
        total += p
        rows.append([g, money(p)])
    rows.append(["TOTAL", money(total)])
    y = s.table(rows, left, y + body, [left, left + width], right=[False, True], header_bold=False, leading=1.4)
    y = s.block("Text", f"Card payment {money(total)}", left, y + body, width)
    s.block("Text", "Thank you for your visit!", left, y + body, width, align="center")
    return s.page(f"receipt-{i}", "receipt")


def slide(i: int) -> Page:
    rng = random.Random(f"slide{i}")
    family, body = style(i, "slide")
    body = int(body * 1.6)
    size = (1600, 900)
    s = Sheet(size, family, body)
    left, width = 100, size[0] - 200
    y = s.block(
        "Title",
        rng.choice(
            [
                "Quarterly Results",
                "Project Timeline",
                "What Changed This Year",
                "Next Steps for the Team",
                "Survey Highlights",
            ]
        ),
        left,
        70,
        width,
        scale=1.7,
        bold=True,
    )
    y += body
    if i % 3 == 2:  # a slide with a small table
        rows = [["Region", "2024", "2025"]] + [
            [r, str(rng.randint(100, 900)), str(rng.randint(100, 900))]
            for r in rng.sample(["North", "South", "East", "West"], 3)
        ]
        y = s.table(rows, left, y, [left, left + 8 * body, left + 13 * body], right=[False, True, True])
    else:
        for _ in range(3 + i % 2):
            text = rng.choice(SENTENCES).split(",")[0].rstrip(".")
            y = s.block("List-item", "• " + text, left, y + 0.4 * body, width)
    s.block("Page-footer", f"{rng.choice(COMPANIES)}  |  {i + 2}", left, size[1] - 70, width, scale=0.55, align="right")
    return s.page(f"slide-{i}", "slide")


SYNTHETIC: dict[str, Callable[[int], Page]] = {
    "letter": letter,
    "invoice": invoice,
    "report": report,
    "article": article,
    "form": form,
    "receipt": receipt,
    "slide": slide,
}
PER_KIND = 5


# --- typeset manuals -----------------------------------------------------------------------------


def _font_info(tp: Any, i: int, buf: Any, flags: Any) -> str:
    import pypdfium2.raw as raw

    raw.FPDFText_GetFontInfo(tp, i, buf, len(buf), ctypes.byref(flags))
    return str(buf.value.decode("latin-1"))


def manual_page(kind: str, path: str, number: int) -> Page:
    """A PDF page at 150 dpi; truth from its text layer, one block per line, headings by font."""
    import pypdfium2 as pdfium
    import pypdfium2.raw as raw

    doc = pdfium.PdfDocument(path)
    page = doc[number]
    scale = DPI / 72
    image = page.render(scale=scale).to_pil().convert("RGB")
    tp = page.get_textpage()
    width_pt, height_pt = page.get_size()
    buf, flags = ctypes.create_string_buffer(128), ctypes.c_int()
    lines: list[list[tuple[str, float, str, tuple[float, float, float, float]]]] = [[]]
    for i in range(raw.FPDFText_CountChars(tp)):
        ch = chr(raw.FPDFText_GetUnicode(tp, i))
        if ch in "\r\n":
            if lines[-1]:
                lines.append([])
            continue
        ch = "-" if ch == "\x02" else ch
        left, right, bottom, top = (ctypes.c_double() for _ in range(4))
        raw.FPDFText_GetCharBox(tp, i, *(ctypes.byref(v) for v in (left, right, bottom, top)))
        box = (
            left.value * scale,
            (height_pt - top.value) * scale,
            right.value * scale,
            (height_pt - bottom.value) * scale,
        )
        lines[-1].append((ch, raw.FPDFText_GetFontSize(tp, i), _font_info(tp, i, buf, flags), box))
    lines = [ln for ln in lines if "".join(c[0] for c in ln).strip()]
    ink = [c for ln in lines for c in ln if c[0].strip()]
    sizes: dict[float, int] = {}
    for c in ink:
        sizes[round(c[1], 1)] = sizes.get(round(c[1], 1), 0) + 1
    body = max(sizes, key=lambda k: sizes[k])
    blocks = []
    for ln in lines:
        chars = [c for c in ln if c[0].strip()]
        text = " ".join("".join(c[0] for c in ln).split())
        box = (
            min(c[3][0] for c in chars),
            min(c[3][1] for c in chars),
            max(c[3][2] for c in chars),
            max(c[3][3] for c in chars),
        )
        bold = sum(1 for c in chars if any(k in c[2] for k in ("Bold", "BX"))) >= 0.5 * len(chars)
        large = sum(1 for c in chars if c[1] >= 1.15 * body) >= 0.9 * len(chars)
        centre = (box[1] + box[3]) / 2 / (height_pt * scale)
        if centre < 0.08:
            cat = "Page-header"
        elif centre > 0.92:
            cat = "Page-footer"
        elif bold and large:
            cat = "Section-header"
        elif text.startswith("•"):
            cat = "List-item"
        else:
            cat = "Text"
        blocks.append(Block(cat, text, box))
    name = f"{Path(path).stem}-p{number + 1}"
    return Page(name, kind, image, blocks, paragraphs=False, font="pdf", body_px=round(body * scale))


# --- the corpus ----------------------------------------------------------------------------------


def names(kinds: Sequence[str] | None = None) -> list[str]:
    """Every page name, kind by kind (manuals only where Debian's package is installed)."""
    out = [f"{k}-{i}" for k in SYNTHETIC for i in range(PER_KIND) if kinds is None or k in kinds]
    for kind, path, numbers in MANUALS:
        if (kinds is None or kind in kinds) and os.path.exists(path):
            out += [f"{Path(path).stem}-p{n + 1}" for n in numbers]
    return out


def page(name: str) -> Page:
    """One page by name: `letter-0` ... or a manual's `libtasn1-p4`."""
    kind, _, number = name.rpartition("-")
    if kind in SYNTHETIC:
        return SYNTHETIC[kind](int(number))
    for k, path, _numbers in MANUALS:
        if Path(path).stem == kind:
            return manual_page(k, path, int(number.lstrip("p")) - 1)
    raise KeyError(name)


def pages(kinds: Sequence[str] | None = None) -> Iterator[Page]:
    for n in names(kinds):
        yield page(n)


def main() -> None:
    ap = argparse.ArgumentParser(description="Write the layout corpus: a PNG and a truth JSON per page.")
    ap.add_argument("out", type=Path)
    ap.add_argument("--kinds", default="", help="comma-separated kinds (default: all)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    kinds = [k for k in args.kinds.split(",") if k] or None
    for p in pages(kinds):
        p.image.save(args.out / f"{p.name}.png")
        (args.out / f"{p.name}.json").write_text(json.dumps(p.truth(), indent=1, ensure_ascii=False))
        print(p.name, p.kind, len(p.blocks), "blocks")


if __name__ == "__main__":
    main()
