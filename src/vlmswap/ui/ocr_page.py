"""OCR page: upload images or a PDF, run a model page by page, see boxes, Markdown and JSON.

Each page is its own /api/ocr call (the `pages` field), so the progress bar is real and a
bad page fails alone. Pages are rendered here too, at the same dpi, only to draw the boxes.
"""

from __future__ import annotations

import io
import json
import os
import re
from typing import Any

import streamlit as st

from vlmswap.documents import export
from vlmswap.documents.inputs import DocumentError, open_bytes
from vlmswap.documents.layout import Document, Page
from vlmswap.ui.api import Gateway, GatewayError, session_gateway
from vlmswap.ui.progress import run_switch
from vlmswap.ui.view import flags_message, resident_name, with_capability

DOC_TYPES = ["pdf", "png", "jpg", "jpeg", "webp", "tif", "tiff"]
MODES = {"layout": "Layout + text", "layout-only": "Layout only", "text": "Text only",
         "web-parsing": "Web page layout", "scene-spotting": "Scene text (lines)", "svg": "Image to SVG"}
MAX_UPLOAD_MB = float(os.environ.get("VLMSWAP_UI_MAX_UPLOAD_MB", "32"))
RESULT_KEY = "ocr_result"
_COMMENT = re.compile(r"<!--.*?-->", re.S)  # page markers in the Markdown; Streamlit would show them as text
PAGE_KEY = "ocr_page_idx"


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _open_uploads(files: list[Any], dpi: int) -> list[tuple[Any, Any]] | None:
    """(upload, SourceFile) for each file, or None after showing why one cannot be used."""
    opened = []
    for f in files:
        size_mb = f.size / (1024 * 1024)
        if size_mb > MAX_UPLOAD_MB:
            st.error(f"{f.name} is {size_mb:.1f} MB, over the upload limit of {MAX_UPLOAD_MB:.0f} MB.",
                     icon=":material/block:")
            return None
        try:
            opened.append((f, open_bytes(f.getvalue(), f.name, dpi=dpi)))
        except DocumentError as exc:
            st.error(f"{exc.path} cannot be used: {exc.reason}.", icon=":material/description:")
            return None
    return opened


def _run(gw: Gateway, files: list[Any], model: str, mode: str, dpi: int) -> None:
    opened = _open_uploads(files, dpi)
    if opened is None:
        return
    switched = model != resident_name(gw.status())
    if switched:
        result = run_switch(gw, model)
        if result is None or not result.ok:
            notice = st.session_state.get("switch_notice", {})
            st.error(notice.get("text", f"{model} failed to start"), icon=":material/error:")
            return
    jobs = [(f, src, n) for f, src in opened for n in src.selected]
    bar = st.progress(0.0, text=f"0 of {len(jobs)} pages")
    pages: list[dict[str, Any]] = []
    for i, (f, src, n) in enumerate(jobs):
        bar.progress(i / len(jobs), text=f"Page {i + 1} of {len(jobs)} ({f.name}, page {n})…")
        image = src.page(n).image
        entry: dict[str, Any] = {"source": f.name, "number": n, "image": _png(image)}
        try:
            body = gw.ocr_page(f.name, f.getvalue(), f.type, model=model, mode=mode, page=n, dpi=dpi)
            doc = Document.from_dict(body["document"])
            entry["page"] = doc.pages[0].to_dict()
            entry["markdown"] = body.get("markdown") or doc.markdown()
        except GatewayError as exc:
            entry["error"] = exc.message
        except (KeyError, IndexError, ValueError) as exc:
            entry["error"] = f"the gateway's answer could not be read ({type(exc).__name__})"
        pages.append(entry)
    for src in opened:
        src[1].close()
    bar.progress(1.0, text=f"{len(jobs)} of {len(jobs)} pages done")
    st.session_state[RESULT_KEY] = {"model": model, "mode": mode, "pages": pages}
    st.session_state[PAGE_KEY] = 0
    if switched:  # redraw the sidebar, which still shows the model that was resident before
        st.rerun()


def _documents(result: dict[str, Any]) -> list[Document]:
    """One Document per uploaded file, from the pages that came back."""
    docs: dict[str, Document] = {}
    for e in result["pages"]:
        if "page" in e:
            doc = docs.setdefault(e["source"], Document(source=e["source"], model=result["model"], mode=result["mode"]))
            doc.pages.append(Page.from_dict(e["page"]))
    return list(docs.values())


def _image(entry: dict[str, Any]) -> Any:
    from PIL import Image

    return Image.open(io.BytesIO(entry["image"])).convert("RGB")


def _step(delta: int, n: int) -> None:
    st.session_state[PAGE_KEY] = max(0, min(n - 1, st.session_state.get(PAGE_KEY, 0) + delta))


def _nav(n: int) -> int:
    idx = max(0, min(st.session_state.get(PAGE_KEY, 0), n - 1))
    if n > 1:
        prev, mid, nxt = st.columns([1, 3, 1])
        prev.button("◀ Previous", key="ocr_prev", disabled=idx == 0, on_click=_step, args=(-1, n))
        nxt.button("Next ▶", key="ocr_next", disabled=idx >= n - 1, on_click=_step, args=(1, n))
        mid.markdown(f"<div style='text-align:center'>Page {idx + 1} of {n}</div>", unsafe_allow_html=True)
    return idx


def _show(result: dict[str, Any]) -> None:
    entries = result["pages"]
    idx = _nav(len(entries))
    entry = entries[idx]
    mode = MODES.get(result["mode"], result["mode"])
    st.caption(f"{entry['source']} · page {entry['number']} · {result['model']} · {mode}")
    if "error" in entry:
        st.error(f"This page could not be read: {entry['error']}", icon=":material/warning:")
        st.image(entry["image"], width="stretch")
        return
    page = Page.from_dict(entry["page"])
    if page.flags:
        st.warning(flags_message(page.flags), icon=":material/healing:")
    table_key, pick_key = f"ocr_blocks_{idx}", f"ocr_pick_{idx}"
    picked = st.session_state.get(pick_key)
    selection = st.session_state.get(table_key)
    rows = getattr(getattr(selection, "selection", None), "rows", None) or []
    highlight = page.blocks[rows[0]].index if rows and rows[0] < len(page.blocks) else picked
    annotated = export.annotate(_image(entry), page.blocks, highlight=highlight, page_size=(page.width, page.height))
    left, right = st.columns([3, 2])
    left.image(annotated, caption=f"{len(page.blocks)} blocks", width="stretch", output_format="PNG")
    md_tab, blocks_tab, json_tab = right.tabs(["Markdown", "Blocks", "JSON"])
    md_tab.markdown(_COMMENT.sub("", entry.get("markdown") or "").strip() or "_(no text)_")
    blocks_tab.selectbox("Highlight block", [None] + [b.index for b in page.blocks], key=pick_key,
                         format_func=lambda i: "none" if i is None else f"{i}: {_block(page, i)}")
    blocks_tab.dataframe(
        [{"index": b.index, "category": b.category,
          "box": None if b.bbox is None else ", ".join(f"{v:.0f}" for v in b.bbox), "text": b.text}
         for b in page.blocks],
        key=table_key, on_select="rerun", selection_mode="single-row", hide_index=True, width="stretch")
    json_tab.json(entry["page"], expanded=1)
    _downloads(result, annotated, entry)


def _block(page: Page, index: int) -> str:
    for b in page.blocks:
        if b.index == index:
            text = b.text.replace("\n", " ")
            return f"{b.category} {text[:40]}"
    return ""


def _downloads(result: dict[str, Any], annotated: Any, entry: dict[str, Any]) -> None:
    docs = _documents(result)
    stem = export.source_stem(docs[0].source) if docs else "document"
    markdown = "\n\n---\n\n".join(export.document_markdown(d) for d in docs)
    data = docs[0].to_dict() if len(docs) == 1 else {"documents": [d.to_dict() for d in docs]}
    if "zip" not in result:  # built once per run of OCR, not on every rerun
        files: dict[str, bytes] = {}
        for d in docs:
            images = {e["number"]: _image(e) for e in result["pages"] if "page" in e and e["source"] == d.source}
            files.update(export.bundle(d, images, export.source_stem(d.source)))
        result["zip"] = export.zip_bytes(files)
    downloads = [
        ("Markdown", markdown, f"{stem}.md", "text/markdown"),
        ("JSON", json.dumps(data, ensure_ascii=False, indent=2), f"{stem}.json", "application/json"),
        ("Annotated PNG", _png(annotated), f"{stem}-page{entry['number']}.png", "image/png"),
        ("ZIP of all", result["zip"], f"{stem}.zip", "application/zip"),
    ]
    row = st.container(horizontal=True)
    for i, (label, payload, file_name, mime) in enumerate(downloads):
        row.download_button(label, payload, file_name, mime, key=f"dl_{i}", on_click="ignore",
                            icon=":material/download:")


def main() -> None:
    st.header("OCR documents")
    status = st.session_state.get("gateway_status")
    if status is None:
        st.error("The gateway is not reachable; see the sidebar for how to start it.", icon=":material/power_off:")
        return
    gw = session_gateway()
    ocr_models = [m for m in with_capability(status, "ocr") if not m.get("unavailable")]
    if not ocr_models:
        st.info("No OCR model can run here; the sidebar says why for each model.")
        return
    names = [m["name"] for m in ocr_models]
    resident = resident_name(status)
    files = st.file_uploader("Images or a PDF", type=DOC_TYPES, accept_multiple_files=True, key="ocr_files")
    c = st.columns([2, 2, 1, 1], vertical_alignment="bottom")
    model = c[0].selectbox("Model", names, index=names.index(resident) if resident in names else 0, key="ocr_model")
    mode = c[1].selectbox("Mode", list(MODES), format_func=MODES.__getitem__, key="ocr_mode")
    dpi = int(c[2].number_input("PDF dpi", 72, 400, 150, step=25, key="ocr_dpi"))
    if c[3].button("Run OCR", type="primary", key="ocr_run", disabled=not files, width="stretch"):
        try:
            _run(gw, list(files or []), model, mode, dpi)
        except GatewayError as exc:  # e.g. the gateway went away between two calls
            st.error(exc.message, icon=":material/power_off:")
    result = st.session_state.get(RESULT_KEY)
    if result and result["pages"]:
        _show(result)


main()
