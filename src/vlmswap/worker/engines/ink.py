"""What a text line's ink says about its type: how tall its letters stand and how heavy their strokes are.

A detector's box says little about the size a line is set in: it is padded, and it grows
by a fifth with descenders or a capital. The ink inside it says more. The baseline is the
lowest row that still holds much ink (descenders hold little), the top of the letters the
highest row that holds any, reached alike by ascenders, capitals and digits: between them
stand the letters, whatever their mix. The ink's area over half its outline is the width of
its strokes, and a bold face's are about half as wide again as its regular face's at the
same size. Plain numpy over the page's grey pixels (what it costs is in bench/README.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

#: grey level below which a pixel is ink (pages are dark text on a light ground)
INK = 140


@dataclass(frozen=True)
class Ink:
    """A line's letter height (top of the letters to the baseline, pixels), stroke width (pixels)
    and baseline (y on the page, pixels: the distance between two lines' baselines is their pitch,
    steadier than any gap between their boxes)."""

    height: float
    stroke: float
    base: float = 0.0

    @property
    def weight(self) -> float:
        """Stroke width per pixel of letter height: alike for every size of one face, larger for bold."""
        return self.stroke / max(self.height, 1.0)


def grey(image: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """An RGB (or already grey) page as grey levels."""
    if image.ndim == 2:
        return image
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    return (image[..., :3].astype(np.float32) @ weights).astype(np.uint8)


def measure(page: NDArray[np.uint8], box: tuple[float, float, float, float]) -> Ink | None:
    """The ink of the text in `box` on the grey `page`; None where there is too little to measure."""
    h, w = page.shape[:2]
    x1, y1 = max(int(box[0]), 0), max(int(box[1]), 0)
    x2, y2 = min(int(np.ceil(box[2])), w), min(int(np.ceil(box[3])), h)
    if x2 - x1 < 4 or y2 - y1 < 4:
        return None
    dark = page[y1:y2, x1:x2] < INK
    _drop_rules(dark, 1.5 * (y2 - y1))
    rows = dark.sum(axis=1)
    peak = int(rows.max())
    if peak < 2:
        return None
    # The baseline: the lowest row still holding much ink (descenders hold little). The top of
    # the letters: the highest row holding any real ink, reached by ascenders, capitals and
    # digits alike, so the height does not change with a line's mix of letters.
    full = np.flatnonzero(rows >= 0.4 * peak)
    some = np.flatnonzero(rows >= 0.04 * peak)
    top, bottom = int(some[0]), int(full[-1])
    height = float(bottom - top + 1)
    core = dark[top : bottom + 1]
    # The weight of the lightest third of the line: a heading is heavy from end to end, while a
    # sentence with one word in bold is not.
    thirds = [_stroke(part) for part in np.array_split(core, 3, axis=1)] if core.shape[1] >= 12 else []
    strokes = [v for v in thirds if v is not None] or [v for v in [_stroke(core)] if v is not None]
    if not strokes:
        return None
    return Ink(height, min(strokes), float(y1 + bottom + 1))


def _stroke(core: NDArray[np.bool_]) -> float | None:
    """Stroke width: ink area over half its outline (a stroke w wide and L long has area w*L
    and an outline of about 2*L), the same for vertical and horizontal strokes."""
    area = int(core.sum())
    if area < 8:
        return None
    padded = np.pad(core, 1)
    inner = padded[1:-1, 1:-1] & padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    outline = area - int(inner.sum())
    return 2.0 * area / max(outline, 1)


def _drop_rules(dark: NDArray[np.bool_], longest: float) -> None:
    """Clear horizontal runs of ink longer than `longest` (rules under fields, table lines): no letter has them."""
    padded = np.pad(dark, ((0, 0), (1, 1)))
    edges = np.diff(padded.astype(np.int8), axis=1)
    rows, starts = np.nonzero(edges == 1)
    _, ends = np.nonzero(edges == -1)
    for r, a, b in zip(rows, starts, ends):
        if b - a > longest:
            dark[r, a:b] = False
