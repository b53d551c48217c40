"""OCR page: upload images or PDFs, read them as document jobs, see boxes, Markdown and JSON.

Each upload is one job on the gateway (`/api/jobs`): the gateway checks the file, reads its
pages through the scheduler and keeps them, so a rerun, a closed tab or a restarted gateway
loses nothing. While a job runs this page follows it (progress, ETA, each page as it is
read) and offers Cancel; any click reruns the script, which simply follows again. Recent
jobs can be reopened. Page images come from the gateway, rendered at the job's dpi.

The model, mode, dpi and pages open with the profile's saved preferences, and a change is
saved back (ui/settings.py), so the next visit, in any browser, starts where this one left.
"""

from __future__ import annotations

import io
import json
import os
import re
import time
from typing import Any

import streamlit as st

from vlmswap.client.jobs import DocumentJob
from vlmswap.documents import export
from vlmswap.documents.layout import Document, Page
from vlmswap.i18n import N_, num, tr, translate_text, trn
from vlmswap.ui import settings
from vlmswap.ui.api import Gateway, GatewayError, session_gateway
from vlmswap.ui.progress import run_switch
from vlmswap.ui.view import flags_message, preset_labels, resident_name, with_capability

DOC_TYPES = ["pdf", "png", "jpg", "jpeg", "webp", "tif", "tiff"]
MODES = {  # through tr()
    "layout": N_("Layout + text"),
    "layout-only": N_("Layout only"),
    "text": N_("Text only"),
    "web-parsing": N_("Web page layout"),
    "scene-spotting": N_("Scene text (lines)"),
    "svg": N_("Image to SVG"),
}
MAX_UPLOAD_MB = float(os.environ.get("VLMSWAP_UI_MAX_UPLOAD_MB", "32"))
VIEW_KEY = "ocr_view"  # the jobs on screen: {"jobs": [id, ...]}
CACHE_KEY = "ocr_cache"  # (job id, page) -> entry, so a page is fetched once
RESULT_KEY = "ocr_result"
_COMMENT = re.compile(r"<!--.*?-->", re.S)  # page markers in the Markdown; Streamlit would show them as text
PAGE_KEY = "ocr_page_idx"
POLL_S = 0.5
FINISHED = ("done", "failed", "cancelled")
JOB_STATES = {  # through tr()
    "queued": N_("queued"),
    "running": N_("running"),
    "done": N_("done"),
    "failed": N_("failed"),
    "cancelled": N_("cancelled"),
}


def _png(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _mode_label(mode: str) -> str:
    return tr(MODES[mode]) if mode in MODES else mode


def _submit(
    gw: Gateway,
    files: list[Any],
    model: str,
    mode: str,
    dpi: int,
    pages: str | None = None,
    prompt: str | None = None,
) -> None:
    """One job per upload; a file the gateway refuses is a message, and starts nothing."""
    ids = []
    for f in files:
        size_mb = f.size / (1024 * 1024)
        if size_mb > MAX_UPLOAD_MB:
            st.error(
                tr(
                    "{name} is {size} MB, over the upload limit of {limit} MB.",
                    name=f.name,
                    size=num(size_mb),
                    limit=f"{MAX_UPLOAD_MB:.0f}",
                ),
                icon=":material/block:",
            )
            continue
        try:
            job = gw.submit_job(
                content=f.getvalue(), filename=f.name, model=model, mode=mode, dpi=dpi, pages=pages, prompt=prompt
            )
            ids.append(job.id)
        except GatewayError as exc:
            if exc.status is None or exc.status >= 500 or exc.code == "gateway_unreachable":
                raise
            reason = exc.message[len(f.name) + 2 :] if exc.message.startswith(f"{f.name}: ") else exc.message
            st.error(tr("{name} cannot be used: {why}", name=f.name, why=reason), icon=":material/description:")
    if not ids:
        return
    _open(*ids)
    if model != resident_name(gw.status()):  # the jobs would start it too; this shows the switch as it goes
        result = run_switch(gw, model)
        if result is None or not result.ok:
            notice = st.session_state.get("switch_notice", {})
            st.error(notice.get("text", tr("{name} failed to start", name=model)), icon=":material/error:")
            return
        st.rerun()  # redraw the sidebar, which still shows the model that was resident before


def _entry(gw: Gateway, info: dict[str, Any], rec: dict[str, Any]) -> dict[str, Any]:
    """One page of a job as the viewer shows it (fetched once, then cached)."""
    cache = st.session_state.setdefault(CACHE_KEY, {})
    key = (info["id"], rec["number"], rec["state"])
    if key not in cache:
        job = DocumentJob(gw, info["id"])
        entry: dict[str, Any] = {
            "source": info["source"],
            "number": rec["number"],
            "job": info["id"],
            "image": job.page_image(rec["number"]),
        }
        if rec["state"] == "done":
            page = job.page(rec["number"])
            entry["page"] = page.to_dict()
            entry["markdown"] = export.document_markdown(Document(info["source"], [page]))
        else:
            entry["error"] = rec.get("error") or rec["state"]
        cache[key] = entry
    return cache[key]


def _result(gw: Gateway, infos: list[dict[str, Any]]) -> dict[str, Any]:
    pages = [_entry(gw, info, rec) for info in infos for rec in info["pages"] if rec["state"] in ("done", "failed")]
    first = infos[0]
    return {
        "model": first["model"],
        "mode": first["mode"],
        "pages": pages,
        "jobs": [i["id"] for i in infos],
        "states": [i["state"] for i in infos],
    }


def _cancel(ids: list[str]) -> None:
    gw = session_gateway()
    for job_id in ids:
        try:
            DocumentJob(gw, job_id).cancel()
        except GatewayError as exc:
            st.session_state["ocr_cancel_error"] = exc.message


def _eta(seconds: float | None) -> str:
    if seconds is None:
        return tr("ETA after the first page")
    if seconds < 120:
        return tr("about {n} s left", n=f"{seconds:.0f}")
    return tr("about {n} min left", n=f"{seconds / 60:.0f}")


def _follow(gw: Gateway, ids: list[str]) -> list[dict[str, Any]]:
    """Follow the jobs until they end, showing progress and each page as it is read; their final states.

    A click anywhere (Cancel among them) reruns the script, which stops this loop at its next
    screen update; the new run follows again, so nothing is missed.
    """
    infos = [DocumentJob(gw, i).refresh() for i in ids]
    if all(i["state"] in FINISHED for i in infos):
        return infos
    holder = st.empty()  # cleared once the jobs end: the result view takes its place
    with holder.container():
        st.button(tr("Cancel"), key="ocr_cancel", icon=":material/cancel:", on_click=_cancel, args=(ids,))
        bar = st.progress(0.0, text=tr("Waiting for the first page…"))
        arrived = st.empty()
        latest = st.empty()
    t0 = time.monotonic()
    while True:
        total = sum(i["pages_total"] for i in infos)
        done = sum(i["pages_done"] for i in infos)
        failed = sum(i["pages_failed"] for i in infos)
        running = [i for i in infos if i["state"] not in FINISHED]
        if not running:
            holder.empty()
            return infos
        eta = max((i["eta_s"] for i in running if i.get("eta_s") is not None), default=None)
        state = tr("queued") if all(i["state"] == "queued" for i in running) else tr("running")
        text = (
            trn("{done} of {n} page", "{done} of {n} pages", total, done=done + failed)
            + (" " + tr("({n} failed)", n=failed) if failed else "")
            + f" · {state} · {_eta(eta)} · {time.monotonic() - t0:.0f} "
            + tr("s")
        )
        bar.progress((done + failed) / max(1, total), text=text)
        lines = [
            f"{'✓' if p['state'] == 'done' else '✗'} "
            + tr("{source} page {number}", source=i["source"], number=p["number"])
            + (" (" + tr("{seconds} s", seconds=num(p["seconds"])) + ")" if p.get("seconds") else "")
            + (f": {translate_text(str(p['error']))}" if p["state"] == "failed" else "")
            for i in infos
            for p in sorted(i["pages"], key=_finished_at)
            if p["state"] in ("done", "failed")
        ]
        arrived.markdown("  \n".join(lines[-12:]) or tr("_No page read yet._"))
        newest = max(
            ((i, p) for i in infos for p in i["pages"] if p["state"] == "done"),
            key=lambda ip: _finished_at(ip[1]),
            default=None,
        )
        if newest is not None:
            entry = _entry(gw, *newest)
            latest.markdown(
                "**"
                + tr("Latest: {source} page {number}", source=newest[0]["source"], number=newest[1]["number"])
                + "**\n\n"
                + (_COMMENT.sub("", entry.get("markdown") or "").strip() or tr("_(no text)_"))
            )
        time.sleep(POLL_S)
        infos = [DocumentJob(gw, i["id"]).refresh() if i["state"] not in FINISHED else i for i in infos]


def _finished_at(page: dict[str, Any]) -> float:
    return float(page.get("finished_at") or 0.0)


def _recent(gw: Gateway) -> None:
    """The gateway's recent jobs; Open shows one's pages here."""
    try:
        jobs = gw.jobs(10)
    except GatewayError:
        return
    if not jobs:
        return
    with st.expander(tr("Recent jobs ({n})", n=len(jobs)), expanded=False):
        for j in jobs:
            row = st.columns([5, 2, 2, 1], vertical_alignment="center")
            row[0].markdown(
                f"**{j['source']}** · {j['model']} · {time.strftime('%H:%M:%S', time.localtime(j['created_at']))}"
            )
            row[1].markdown(tr(JOB_STATES[j["state"]]) if j["state"] in JOB_STATES else j["state"])
            row[2].markdown(
                tr("{done}/{total} pages", done=j["pages_done"], total=j["pages_total"])
                + (", " + tr("{n} failed", n=j["pages_failed"]) if j["pages_failed"] else "")
            )
            row[3].button(tr("Open"), key=f"ocr_open_{j['id']}", on_click=_open, args=(j["id"],))


def _open(*job_ids: str) -> None:
    """Show these jobs (the pages of jobs shown before are dropped from the session)."""
    st.session_state[VIEW_KEY] = {"jobs": list(job_ids)}
    for key in (RESULT_KEY, CACHE_KEY):
        st.session_state.pop(key, None)
    st.session_state[PAGE_KEY] = 0


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
        prev.button(tr("◀ Previous"), key="ocr_prev", disabled=idx == 0, on_click=_step, args=(-1, n))
        nxt.button(tr("Next ▶"), key="ocr_next", disabled=idx >= n - 1, on_click=_step, args=(1, n))
        mid.markdown(
            f"<div style='text-align:center'>{tr('Page {i} of {n}', i=idx + 1, n=n)}</div>", unsafe_allow_html=True
        )
    return idx


def _show(result: dict[str, Any]) -> None:
    entries = result["pages"]
    idx = _nav(len(entries))
    entry = entries[idx]
    mode = _mode_label(result["mode"])
    where = tr("{source} · page {number}", source=entry["source"], number=entry["number"])
    st.caption(f"{where} · {result['model']} · {mode}")
    if "error" in entry:
        st.error(
            tr("This page could not be read: {why}", why=translate_text(str(entry["error"]))),
            icon=":material/warning:",
        )
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
    left.image(
        annotated, caption=trn("{n} block", "{n} blocks", len(page.blocks)), width="stretch", output_format="PNG"
    )
    md_tab, blocks_tab, json_tab = right.tabs(["Markdown", tr("Blocks"), "JSON"])
    md_tab.markdown(_COMMENT.sub("", entry.get("markdown") or "").strip() or tr("_(no text)_"))
    blocks_tab.selectbox(
        tr("Highlight block"),
        [None] + [b.index for b in page.blocks],
        key=pick_key,
        format_func={None: tr("none"), **{b.index: f"{b.index}: {_block(page, b.index)}" for b in page.blocks}}.get,
    )
    blocks_tab.dataframe(
        [
            {
                "index": b.index,
                "category": b.category,
                "box": None if b.bbox is None else ", ".join(f"{v:.0f}" for v in b.bbox),
                "text": b.text,
            }
            for b in page.blocks
        ],
        key=table_key,
        on_select="rerun",
        selection_mode="single-row",
        hide_index=True,
        width="stretch",
    )
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
        (tr("Annotated PNG"), _png(annotated), f"{stem}-page{entry['number']}.png", "image/png"),
        (tr("ZIP of all"), result["zip"], f"{stem}.zip", "application/zip"),
    ]
    row = st.container(horizontal=True)
    for i, (label, payload, file_name, mime) in enumerate(downloads):
        row.download_button(
            label, payload, file_name, mime, key=f"dl_{i}", on_click="ignore", icon=":material/download:"
        )


def _default_model(names: list[str], prefs: dict[str, Any], resident: str | None) -> int:
    """The saved OCR model when it can run here, else the resident one, else the first."""
    for wanted in (prefs.get("ocr_model"), resident):
        if wanted in names:
            return names.index(wanted)
    return 0


def main() -> None:
    st.header(tr("OCR documents"))
    status = st.session_state.get("gateway_status")
    if status is None:
        st.error(tr("The gateway is not reachable; see the sidebar for how to start it."), icon=":material/power_off:")
        return
    gw = session_gateway()
    ocr_models = [m for m in with_capability(status, "ocr") if not m.get("unavailable")]
    if not ocr_models:
        st.info(tr("No OCR model can run here; the sidebar says why for each model."))
        return
    names = [m["name"] for m in ocr_models]
    prefs = settings.preferences(gw)
    files = st.file_uploader(tr("Images or a PDF"), type=DOC_TYPES, accept_multiple_files=True, key="ocr_files")
    c = st.columns([2, 2, 1, 1, 1], vertical_alignment="bottom")
    model = c[0].selectbox(
        tr("Model"),
        names,
        index=_default_model(names, prefs, resident_name(status)),
        key="ocr_model",
        on_change=settings.remember,
        args=(gw, "ocr_model", "ocr_model"),
    )
    modes = list(MODES)
    mode = c[1].selectbox(
        tr("Mode"),
        modes,
        index=modes.index(prefs["ocr_mode"]) if prefs.get("ocr_mode") in modes else 0,
        format_func={m: _mode_label(m) for m in modes}.__getitem__,  # labels made now, in this run's language
        key="ocr_mode",
        on_change=settings.remember,
        args=(gw, "ocr_mode", "ocr_mode"),
    )
    saved_dpi = prefs.get("dpi")
    dpi = int(
        c[2].number_input(
            tr("PDF dpi"),
            50,
            600,
            int(saved_dpi) if isinstance(saved_dpi, int) and 50 <= saved_dpi <= 600 else 150,
            step=25,
            key="ocr_dpi",
            on_change=settings.remember,
            args=(gw, "dpi", "ocr_dpi"),
        )
    )
    pages = c[3].text_input(
        tr("Pages"),
        value=prefs.get("pages") or "",
        placeholder=tr("all"),
        help=tr("Pages of a PDF to read, e.g. 1-3,7; empty: all."),
        key="ocr_pages",
        on_change=settings.remember,
        args=(gw, "pages", "ocr_pages"),
    )
    presets = settings.presets(gw, "ocr")
    prompt = None
    if presets:
        chosen = st.selectbox(
            tr("Prompt"),
            [None, *range(len(presets))],
            format_func=preset_labels(presets, tr("the mode's own prompt")).__getitem__,
            key="ocr_preset",
            help=tr("A saved preset (sidebar, Preferences) is sent as the prompt of every page."),
        )
        prompt = None if chosen is None else presets[chosen]["text"]
    try:
        if c[4].button(tr("Run OCR"), type="primary", key="ocr_run", disabled=not files, width="stretch"):
            _submit(gw, list(files or []), model, mode, dpi, pages.strip() or None, prompt)
        view = st.session_state.get(VIEW_KEY)
        if view and RESULT_KEY not in st.session_state:
            infos = _follow(gw, view["jobs"])
            st.session_state[RESULT_KEY] = _result(gw, infos)
        _recent(gw)
    except GatewayError as exc:  # e.g. the gateway went away between two calls
        st.error(translate_text(exc.message), icon=":material/power_off:")
        return
    if msg := st.session_state.pop("ocr_cancel_error", None):
        st.error(msg, icon=":material/error:")
    result = st.session_state.get(RESULT_KEY)
    if result:
        ended = [s for s in result.get("states", []) if s != "done"]
        if ended:
            states = ", ".join(tr(JOB_STATES[s]) if s in JOB_STATES else s for s in ended)
            st.warning(
                tr("Job {states}: showing the {n} pages read.", states=states, n=len(result["pages"])),
                icon=":material/cancel:",
            )
        if result["pages"]:
            _show(result)


main()
