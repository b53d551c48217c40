"""The document model every other part agrees on: Document -> Page -> Block.

Boxes are always in *original page pixels* (the page as loaded: an image's own pixels, a PDF
page rendered at the chosen dpi). The model's input size is kept beside them so anyone can
check the mapping. `to_dict`/`from_dict` are the JSON contract of the CLI, `/api/ocr`, the
Python client and the UI; keep them JSON-safe and backwards compatible.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CATEGORIES = (
    "Caption",
    "Footnote",
    "Formula",
    "List-item",
    "Page-footer",
    "Page-header",
    "Picture",
    "Section-header",
    "Table",
    "Text",
    "Title",
)
#: Kept in the JSON but left out of the Markdown: they repeat on every page.
FURNITURE = frozenset({"Page-header", "Page-footer"})


@dataclass
class Block:
    """One layout element. `bbox` is None for text that came without a location (text mode)."""

    index: int
    category: str
    bbox: list[float] | None
    text: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "category": self.category,
            "bbox": None if self.bbox is None else [float(v) for v in self.bbox],
            "text": self.text,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Block:
        bbox = d.get("bbox")
        return cls(
            index=int(d.get("index", 0)),
            category=str(d.get("category") or "Text"),
            bbox=None if bbox is None else [float(v) for v in bbox],
            text=str(d.get("text") or ""),
        )


@dataclass
class Page:
    """One page's result. `flags` name every repair or fallback, so nothing is silently guessed."""

    number: int  # 1-based, in the source file
    width: int  # original page pixels
    height: int
    input_width: int  # the image the model saw
    input_height: int
    blocks: list[Block] = field(default_factory=list)
    model: str = ""
    mode: str = "layout"
    timings: dict[str, float] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)
    raw_output: str = ""

    @property
    def text(self) -> str:
        """All the page's text in reading order, headers and footers included."""
        return "\n".join(b.text for b in self.blocks if b.text)

    def to_dict(self) -> dict[str, Any]:
        return {
            "number": self.number,
            "width": self.width,
            "height": self.height,
            "input_width": self.input_width,
            "input_height": self.input_height,
            "model": self.model,
            "mode": self.mode,
            "blocks": [b.to_dict() for b in self.blocks],
            "timings": {k: round(float(v), 4) for k, v in self.timings.items()},
            "flags": list(self.flags),
            "raw_output": self.raw_output,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Page:
        return cls(
            number=int(d["number"]),
            width=int(d["width"]),
            height=int(d["height"]),
            input_width=int(d.get("input_width", d["width"])),
            input_height=int(d.get("input_height", d["height"])),
            blocks=[Block.from_dict(b) for b in d.get("blocks", [])],
            model=str(d.get("model", "")),
            mode=str(d.get("mode", "layout")),
            timings={k: float(v) for k, v in (d.get("timings") or {}).items()},
            flags=[str(f) for f in d.get("flags", [])],
            raw_output=str(d.get("raw_output", "")),
        )


@dataclass
class Document:
    source: str  # the file's name as given
    pages: list[Page] = field(default_factory=list)
    model: str = ""
    mode: str = "layout"

    @property
    def flagged_pages(self) -> list[int]:
        return [p.number for p in self.pages if p.flags]

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model": self.model,
            "mode": self.mode,
            "pages": [p.to_dict() for p in self.pages],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Document:
        return cls(
            source=str(d.get("source", "")),
            model=str(d.get("model", "")),
            mode=str(d.get("mode", "layout")),
            pages=[Page.from_dict(p) for p in d.get("pages", [])],
        )


__all__ = ["CATEGORIES", "FURNITURE", "Block", "Document", "Page"]
