"""Document -> Markdown, annotated PNGs, per-page JSON, and a ZIP of all of them.

Markdown rules (dots.ocr's own conventions): tables stay HTML, formulas become `$$...$$`
blocks, pictures are cropped from the page and linked (an image-to-SVG answer is inlined),
page headers and footers are left out (they repeat on every page and break the text flow)
but stay in the JSON.
Everything here is a pure function of the Document and the page images, so the CLI, the
gateway and the UI produce the same files.
"""

from __future__ import annotations

import io
import json
import re
import zipfile
from collections.abc import Iterable, Mapping

from PIL import Image, ImageDraw, ImageFont

from vlmswap.documents.layout import FURNITURE, Block, Document, Page

FORMATS = ("json", "md", "png", "zip")

#: One colour per category (RGB), chosen to stay apart on white paper.
COLORS: dict[str, tuple[int, int, int]] = {
    "Caption": (230, 126, 34),
    "Footnote": (127, 140, 141),
    "Formula": (142, 68, 173),
    "List-item": (39, 174, 96),
    "Page-footer": (149, 165, 166),
    "Page-header": (149, 165, 166),
    "Picture": (211, 84, 0),
    "Section-header": (192, 57, 43),
    "Table": (41, 128, 185),
    "Text": (22, 160, 133),
    "Title": (231, 76, 60),
}
_DEFAULT_COLOR = (52, 73, 94)


def picture_path(stem: str, page: int, index: int) -> str:
    """Where a picture block's crop lives, relative to the Markdown file."""
    return f"images/{stem}.page{page:04d}.block{index:03d}.png"


def source_stem(source: str) -> str:
    """A file-name-safe stem for a document's outputs."""
    name = re.split(r"[\\/]", source)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.strip(".") else name
    return re.sub(r"[^A-Za-z0-9._-]+", "_", stem).strip("._") or "document"


def _formula(text: str) -> str:
    t = text.strip()
    for open_, close in (("$$", "$$"), ("\\[", "\\]"), ("$", "$")):
        if t.startswith(open_) and t.endswith(close) and len(t) >= len(open_) + len(close):
            t = t[len(open_) : len(t) - len(close)].strip()
            break
    return f"$$\n{t}\n$$"


def block_markdown(
    block: Block, page: int, picture_links: Mapping[tuple[int, int], str] | None = None, stem: str = "document"
) -> str:
    """One block as Markdown ('' for blocks that have none)."""
    cat, text = block.category, block.text.strip()
    if cat in FURNITURE:
        return ""
    if cat == "Picture":
        if text.startswith("<svg"):
            return text  # an image-to-SVG answer: the drawing itself
        link = (picture_links or {}).get((page, block.index), picture_path(stem, page, block.index))
        return f"![Picture {page}.{block.index}]({link})" if block.bbox is not None else ""
    if not text:
        return ""
    if cat == "Formula":
        return _formula(text)
    if cat == "Table":
        return text  # HTML, as dots.ocr writes it
    if cat == "Title":
        return text if text.startswith("#") else f"# {text}"
    if cat == "Section-header":
        return text if text.startswith("#") else f"## {text}"
    if cat == "List-item":
        return text if re.match(r"^([-*+•]|\d+[.)])\s", text) else f"- {text}"
    if cat == "Caption":
        return f"*{text}*"
    return text


def page_markdown(
    page: Page, picture_links: Mapping[tuple[int, int], str] | None = None, stem: str = "document"
) -> str:
    parts = [block_markdown(b, page.number, picture_links, stem) for b in page.blocks]
    return "\n\n".join(p for p in parts if p)


def document_markdown(
    doc: Document, picture_links: Mapping[tuple[int, int], str] | None = None, stem: str | None = None
) -> str:
    """The whole document; pages separated by an HTML comment naming the page.

    Pictures link to `picture_path(stem, ...)` unless `picture_links` says otherwise; `stem`
    defaults to the source's file name.
    """
    out = []
    stem = stem or source_stem(doc.source)
    for page in doc.pages:
        body = page_markdown(page, picture_links, stem)
        out.append(f"<!-- page {page.number} -->\n\n{body}" if body else f"<!-- page {page.number} -->")
    return "\n\n".join(out) + "\n"


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()


def annotate(
    image: Image.Image, blocks: Iterable[Block], highlight: int | None = None, page_size: tuple[int, int] | None = None
) -> Image.Image:
    """A copy of the page with each block's box in its category's colour and its index.

    `highlight` (a block index) is drawn thick and the rest thin. `page_size` is the size the
    boxes refer to, when `image` is a scaled copy of the page (the UI shows thumbnails).
    """
    out = image.convert("RGB").copy()
    sx = sy = 1.0
    if page_size and page_size != out.size:
        sx, sy = out.width / page_size[0], out.height / page_size[1]
    draw = ImageDraw.Draw(out, "RGBA")
    base = max(1, round(min(out.size) / 400))
    font = _font(max(10, 6 * base + 4))
    for b in blocks:
        if b.bbox is None:
            continue
        x1, y1, x2, y2 = b.bbox[0] * sx, b.bbox[1] * sy, b.bbox[2] * sx, b.bbox[3] * sy
        color = COLORS.get(b.category, _DEFAULT_COLOR)
        hl = highlight is not None and b.index == highlight
        width = base * 3 if hl else base
        if hl:
            draw.rectangle([x1, y1, x2, y2], fill=(*color, 50))
        draw.rectangle([x1, y1, x2, y2], outline=(*color, 255), width=width)
        label = str(b.index)
        tx1, ty1, tx2, ty2 = draw.textbbox((0, 0), label, font=font)
        lw, lh = tx2 - tx1 + 2 * base + 2, ty2 - ty1 + 2 * base + 2
        ly = y1 - lh if y1 - lh >= 0 else y1
        draw.rectangle([x1, ly, x1 + lw, ly + lh], fill=(*color, 255))
        draw.text((x1 + base + 1 - tx1, ly + base + 1 - ty1), label, fill=(255, 255, 255, 255), font=font)
    return out


def crop_picture(image: Image.Image, block: Block) -> Image.Image | None:
    if block.bbox is None:
        return None
    x1, y1, x2, y2 = (round(v) for v in block.bbox)
    if x2 - x1 < 1 or y2 - y1 < 1:
        return None
    return image.crop((x1, y1, x2, y2))


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG", optimize=False)
    return buf.getvalue()


def page_json(page: Page, source: str) -> bytes:
    return json.dumps({"source": source, **page.to_dict()}, ensure_ascii=False, indent=2).encode("utf-8")


def page_files(page: Page, image: Image.Image, stem: str) -> dict[str, bytes]:
    """The files one page image gives: its annotated PNG and its pictures' crops."""
    drawn = annotate(image, page.blocks, page_size=(page.width, page.height))
    files = {f"{stem}.page{page.number:04d}.png": _png(drawn)}
    for b in page.blocks:
        if b.category == "Picture":
            crop = crop_picture(image, b)
            if crop is not None:
                files[picture_path(stem, page.number, b.index)] = _png(crop)
    return files


def bundle(
    doc: Document, images: Mapping[int, Image.Image], stem: str, rendered: Mapping[str, bytes] | None = None
) -> dict[str, bytes]:
    """Every output file of one document, by relative path (what the ZIP holds).

    `images` maps page numbers to the page images the boxes refer to; `rendered` holds
    `page_files` made earlier (the CLI makes them page by page, so it need not keep images).
    Pages with neither get no PNG and no picture crops.
    """
    files: dict[str, bytes] = dict(rendered or {})
    for page in doc.pages:
        files[f"{stem}.page{page.number:04d}.json"] = page_json(page, doc.source)
        im = images.get(page.number)
        if im is not None:
            files.update(page_files(page, im, stem))
    files[f"{stem}.json"] = json.dumps(doc.to_dict(), ensure_ascii=False, indent=2).encode("utf-8")
    files[f"{stem}.md"] = document_markdown(doc, stem=stem).encode("utf-8")
    return files


def zip_bytes(files: Mapping[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            zf.writestr(name, files[name])
    return buf.getvalue()


def select(files: Mapping[str, bytes], formats: Iterable[str], stem: str) -> dict[str, bytes]:
    """The files to write for the formats asked for (`zip` adds `<stem>.zip` with everything)."""
    wanted = set(formats)
    unknown = wanted - set(FORMATS)
    if unknown:
        raise ValueError(f"unknown format(s) {', '.join(sorted(unknown))}; choose from {', '.join(FORMATS)}")
    out: dict[str, bytes] = {}
    for name, data in files.items():
        if (
            (name.endswith(".json") and "json" in wanted)
            or (name.endswith(".md") and "md" in wanted)
            or (name.startswith("images/") and "md" in wanted)
            or (name.endswith(".png") and not name.startswith("images/") and "png" in wanted)
        ):
            out[name] = data
    if "zip" in wanted:
        out[f"{stem}.zip"] = zip_bytes(files)
    return out
