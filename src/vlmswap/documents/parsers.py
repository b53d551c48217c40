"""Model answers -> boxes in model-input pixels, with a flag for every repair.

Each family answers in its own format:
- dots.ocr / rapidocr: a JSON array `[{"bbox": [x1,y1,x2,y2], "category": ..., "text": ...}]`
  in input pixels; long answers are often malformed (`}{` between elements, the last element
  cut off by max_tokens, repeated elements, prose or code fences around the array);
- Qwen2-VL: `<|object_ref_start|>label<|object_ref_end|><|box_start|>(x1,y1),(x2,y2)<|box_end|>`,
  or the bare `label(x1,y1),(x2,y2)` once vLLM has stripped the special tokens; relative 0-1000;
- Qwen2.5-VL: JSON `[{"bbox_2d": [...], "label"/"text_content": ...}]` in input pixels;
- Qwen3-VL: the same JSON with relative 0-1000 coordinates (`point_2d` for points).

Repair is layered: parse strictly; else walk the array object by object (which heals
missing commas and cuts a truncated tail); an object that still does not parse is salvaged
field by field; when nothing at all can be read, the text is kept and the page flagged.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from vlmswap.documents.coords import relative_to_input
from vlmswap.documents.layout import CATEGORIES


@dataclass
class RawBlock:
    """A parsed element, box in model-input pixels (None: no location)."""

    category: str
    bbox: list[float] | None
    text: str = ""
    point: bool = False


@dataclass
class ParseResult:
    blocks: list[RawBlock] = field(default_factory=list)
    flags: list[str] = field(default_factory=list)


# --- categories -------------------------------------------------------------------------

_CANON = {c.lower(): c for c in CATEGORIES}
_SYNONYMS = {
    "paragraph": "Text",
    "plain text": "Text",
    "text block": "Text",
    "line": "Text",
    "text line": "Text",
    "heading": "Section-header",
    "header": "Section-header",
    "section header": "Section-header",
    "section_header": "Section-header",
    "subtitle": "Section-header",
    "doc title": "Title",
    "figure": "Picture",
    "image": "Picture",
    "photo": "Picture",
    "chart": "Picture",
    "logo": "Picture",
    "list": "List-item",
    "list item": "List-item",
    "list_item": "List-item",
    "equation": "Formula",
    "math": "Formula",
    "page header": "Page-header",
    "page_header": "Page-header",
    "page footer": "Page-footer",
    "page_footer": "Page-footer",
    "footer": "Page-footer",
    "page number": "Page-footer",
    "note": "Footnote",
    "figure caption": "Caption",
    "table caption": "Caption",
}


def category_of(label: Any) -> str | None:
    """A dots.ocr category for a model's label, or None when the label is no category."""
    if not isinstance(label, str):
        return None
    key = label.strip().lower()
    return _CANON.get(key) or _SYNONYMS.get(key) or _CANON.get(key.replace("_", "-").replace(" ", "-"))


# --- JSON array repair (shared by dots.ocr and the Qwen JSON formats) --------------------------

_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)(?:```|\Z)", re.S)
_DECODER = json.JSONDecoder()


def _strip_fence(text: str, flags: list[str]) -> str:
    m = _FENCE.search(text)
    if not m:
        return text
    flags.append("repair:code_fence")
    return m.group(1)


def _coerce_list(value: Any) -> list[Any] | None:
    if isinstance(value, list):
        return value
    if isinstance(value, dict):
        # A single element, or the array wrapped in an object ({"layout": [...]}).
        lists = [v for v in value.values() if isinstance(v, list) and v and all(isinstance(e, dict) for e in v)]
        return lists[0] if len(lists) == 1 and len(value) == 1 else [value]
    return None


def _flag(flags: list[str], flag: str) -> None:
    if flag not in flags:
        flags.append(flag)


def _salvage_object(chunk: str, keys: tuple[str, ...]) -> dict[str, Any] | None:
    """Fields of one broken object, read with regexes; None when no box can be read."""
    obj: dict[str, Any] = {}
    for key in keys:
        m = re.search(rf'"{key}"\s*:\s*\[([^\]\[]*)\]', chunk)
        if m:
            nums = re.findall(r"-?\d+(?:\.\d+)?", m.group(1))
            if len(nums) in (2, 4):
                obj[key] = [float(n) for n in nums]
    if not obj:
        return None
    for key in ("category", "label"):
        m = re.search(rf'"{key}"\s*:\s*"([^"]*)"', chunk)
        if m:
            obj[key] = m.group(1)
    for key in ("text", "text_content", "content"):
        m = re.search(rf'"{key}"\s*:\s*"', chunk)
        if m:
            rest = chunk[m.end() :]
            end = re.search(r'"\s*(?:,\s*"[A-Za-z_0-9]+"\s*:|}\s*,?\s*\]?\s*$|}\s*$)', rest)
            raw = rest[: end.start()] if end else rest.rstrip().rstrip("}]").rstrip().rstrip('"')
            obj[key] = _unescape(raw)
            break
    return obj


def _unescape(raw: str) -> str:
    try:
        return str(json.loads('"' + raw + '"'))
    except ValueError:
        # Invalid escapes mean the model wrote raw backslashes (LaTeX: \alpha, \neq): keep them.
        return raw.replace('\\"', '"')


def parse_json_array(text: str, keys: tuple[str, ...]) -> tuple[list[dict[str, Any]], list[str], bool]:
    """Objects of a (possibly broken) JSON array whose elements carry one of `keys` as their box.

    Returns (objects, flags, found): `found` says whether anything array-like was there at all.
    """
    flags: list[str] = []
    body = text.strip()
    for attempt in (0, 1):
        if attempt:  # only when the bare text is not JSON: a fence inside a JSON string is text
            body = _strip_fence(body, flags).strip()
        if not body:
            return [], flags, False
        try:
            items = _coerce_list(json.loads(body))
            if items is not None:
                return [o for o in items if isinstance(o, dict)], flags, True
        except ValueError:
            pass
    start_re = re.compile(r'\{\s*"(?:' + "|".join(keys) + r'|category|label|text|text_content)"\s*:')
    first = start_re.search(body)
    if first is None:
        return [], flags, False
    before = body[: first.start()].strip()
    if before.rstrip("[").strip():
        _flag(flags, "repair:text_around_json")
    objects: list[dict[str, Any]] = []
    i = first.start()
    expect_comma = False
    joined = salvaged = skipped = 0
    while i < len(body):
        while i < len(body) and body[i] in " \t\r\n":
            i += 1
        if i >= len(body):
            break
        ch = body[i]
        if ch == ",":
            expect_comma, i = False, i + 1
            continue
        if ch == "]":
            tail = body[i + 1 :].strip()
            if tail:
                _flag(flags, "repair:text_around_json")
            break
        if ch == "{":
            if expect_comma:
                joined += 1
            try:
                obj, end = _DECODER.raw_decode(body, i)
            except ValueError:
                nxt = start_re.search(body, i + 1)
                chunk = body[i : nxt.start() if nxt else len(body)]
                fixed = _salvage_object(chunk, keys)
                cut_off = nxt is None and not re.search(r"}\s*\]?\s*(?:```)?\s*$", chunk)
                if cut_off:
                    flags.append("repair:truncated_last_element")
                if fixed is not None:
                    objects.append(fixed)
                    salvaged += not cut_off
                else:
                    skipped += 1
                if nxt is None:
                    break
                i, expect_comma = nxt.start(), False
                continue
            if isinstance(obj, dict):
                objects.append(obj)
            i, expect_comma = end, True
            continue
        # Stray characters between elements: resync at the next element.
        nxt = start_re.search(body, i + 1)
        if nxt is None:
            if body[i:].strip():
                _flag(flags, "repair:text_around_json")
            break
        skipped += 1
        i, expect_comma = nxt.start(), False
    if joined:
        flags.append(f"repair:joined_elements:{joined}")
    if salvaged:
        flags.append(f"repair:salvaged_elements:{salvaged}")
    if skipped:
        flags.append(f"repair:skipped_unreadable:{skipped}")
    return objects, flags, True


def _dedupe(blocks: list[RawBlock], flags: list[str]) -> list[RawBlock]:
    seen: set[tuple[Any, ...]] = set()
    out = []
    for b in blocks:
        key = (b.category, tuple(round(v) for v in b.bbox) if b.bbox else None, b.text)
        if key in seen:
            continue
        seen.add(key)
        out.append(b)
    if len(out) < len(blocks):
        flags.append(f"repair:duplicates_removed:{len(blocks) - len(out)}")
    return out


def _box(value: Any) -> tuple[list[float] | None, bool]:
    """(box, is_point) from a list of 4 (box) or 2 (point) numbers; (None, False) otherwise."""
    if not isinstance(value, (list, tuple)) or len(value) not in (2, 4):
        return None, False
    try:
        nums = [float(v) for v in value]
    except (TypeError, ValueError):
        return None, False
    if len(nums) == 2:
        return [nums[0], nums[1], nums[0], nums[1]], True
    return nums, False


def _fallback(text: str, flags: list[str], why: str) -> ParseResult:
    text = text.strip()
    if not text:
        return ParseResult([], [*flags, "empty_output"])
    return ParseResult([RawBlock("Text", None, text)], [*flags, f"fallback_text: {why}"])


# --- per format ----------------------------------------------------------------------------------


def parse_dots(text: str, *, text_expected: bool = True) -> ParseResult:
    """dots.ocr's layout JSON (bbox in input pixels)."""
    objects, flags, found = parse_json_array(text, ("bbox",))
    if not found:
        return _fallback(text, flags, "the answer held no layout JSON")
    blocks: list[RawBlock] = []
    bad = 0
    for obj in objects:
        box, _ = _box(obj.get("bbox"))
        cat = category_of(obj.get("category")) or "Text"
        body = obj.get("text")
        body = body if isinstance(body, str) else ("" if body is None else json.dumps(body))
        if box is None or len(obj.get("bbox") or []) != 4:
            bad += 1
            if body:
                blocks.append(RawBlock(cat, None, body))
            continue
        blocks.append(RawBlock(cat, box, "" if cat == "Picture" and not body else body))
    if bad:
        flags.append(f"bad_bbox:{bad}")
    if not blocks and (objects or any(f.startswith("repair:") for f in flags)):
        return _fallback(text, flags, "no element of the layout JSON could be used")
    return ParseResult(_dedupe(blocks, flags), flags)


def parse_qwen_json(text: str, input_size: tuple[int, int], *, relative: bool) -> ParseResult:
    """Qwen2.5-VL (absolute input pixels) and Qwen3-VL (relative 0-1000) grounding JSON."""
    objects, flags, found = parse_json_array(text, ("bbox_2d", "point_2d", "bbox"))
    if not found:
        return _fallback(text, flags, "the answer held no grounding JSON")
    iw, ih = input_size
    blocks: list[RawBlock] = []
    for obj in objects:
        box, point = _box(obj.get("bbox_2d", obj.get("point_2d", obj.get("bbox"))))
        label = obj.get("label")
        body = next((obj[k] for k in ("text_content", "text", "content") if isinstance(obj.get(k), str)), "")
        cat = category_of(label)
        if cat is None:
            cat = "Text"
            if not body and isinstance(label, str):
                body = label
        if box is None:
            if body:
                blocks.append(RawBlock(cat, None, body))
            continue
        if relative:
            box = relative_to_input(box, iw, ih)
        blocks.append(RawBlock(cat, box, body, point))
    if not blocks:
        return _fallback(text, flags, "no element of the grounding JSON could be used")
    return ParseResult(_dedupe(blocks, flags), flags)


_SPECIAL = re.compile(
    r"<\|(?:object_ref_start|object_ref_end|box_start|box_end|quad_start|quad_end|im_end|endoftext)\|>"
)
_NUM = r"\s*(-?\d+(?:\.\d+)?)\s*"
_QWEN2_BOX = re.compile(r"\(" + _NUM + "," + _NUM + r"\)\s*,\s*\(" + _NUM + "," + _NUM + r"\)")
_LIST_MARK = re.compile(r"^(?:[-*•]\s+|\d+[.)]\s+)")


_QWEN2_TOKEN_BOX = re.compile(
    r"(?:<\|object_ref_start\|>(.*?)<\|object_ref_end\|>)?\s*<\|box_start\|>\s*"
    + _QWEN2_BOX.pattern
    + r"\s*(?:<\|box_end\|>|$)",
    re.S,
)


def parse_qwen2(text: str, input_size: tuple[int, int]) -> ParseResult:
    """Qwen2-VL box tokens, with or without the special tokens (relative 0-1000).

    With tokens, a box without its own object reference belongs to the previous one (Qwen2-VL
    lists several boxes for one reference that way). Without them (vLLM's default
    skip_special_tokens), the label is the text on the line before the box.
    """
    flags: list[str] = []
    iw, ih = input_size
    found: list[tuple[str, list[float]]] = []
    if "<|box_start|>" in text:
        last = ""
        for m in _QWEN2_TOKEN_BOX.finditer(text):
            label = last if m.group(1) is None else m.group(1).strip()
            last = label
            found.append((label, [float(m.group(k)) for k in range(2, 6)]))
    else:
        plain = _SPECIAL.sub("", text)
        pos, last = 0, ""
        for m in _QWEN2_BOX.finditer(plain):
            seg = plain[pos : m.start()]
            label = _LIST_MARK.sub("", seg.splitlines()[-1].strip()).rstrip(":").strip() if seg.strip() else ""
            label = label or last
            last, pos = label, m.end()
            found.append((label, [float(m.group(k)) for k in range(1, 5)]))
        if found:
            flags.append("qwen2:bare_boxes")
    if not found:
        return _fallback(text, flags, "the answer held no boxes")
    blocks = []
    for label, box in found:
        cat = category_of(label)
        blocks.append(RawBlock(cat or "Text", relative_to_input(box, iw, ih), "" if cat else label))
    return ParseResult(_dedupe(blocks, flags), flags)


def parse_text(text: str) -> ParseResult:
    """Plain text: one block per paragraph, no locations."""
    flags: list[str] = []
    body = text.strip()
    if body.startswith("```"):
        body = _strip_fence(body, flags).strip()
    if not body:
        return ParseResult([], ["empty_output"])
    paras = [p.strip() for p in re.split(r"\n\s*\n", body) if p.strip()]
    return ParseResult([RawBlock("Text", None, p) for p in paras], flags)


_SVG = re.compile(r"<svg\b.*?</svg>", re.S | re.I)


def parse_svg(text: str) -> ParseResult:
    """An image-to-SVG answer: the SVG code as one block without a location (the whole image)."""
    m = _SVG.search(text)
    if m is None:
        return _fallback(text, [], "the answer held no <svg> element")
    flags = [] if m.group(0).strip() == text.strip() else ["repair:text_around_svg"]
    return ParseResult([RawBlock("Picture", None, m.group(0))], flags)


def parse_output(fmt: str, text: str, input_size: tuple[int, int]) -> ParseResult:
    """Dispatch on the format a PromptPlan named."""
    if fmt == "dots_json":
        return parse_dots(text)
    if fmt == "qwen2_boxes":
        return parse_qwen2(text, input_size)
    if fmt == "qwen25_json":
        return parse_qwen_json(text, input_size, relative=False)
    if fmt == "qwen3_json":
        return parse_qwen_json(text, input_size, relative=True)
    if fmt == "text":
        return parse_text(text)
    if fmt == "svg":
        return parse_svg(text)
    raise ValueError(f"unknown answer format {fmt!r}")
