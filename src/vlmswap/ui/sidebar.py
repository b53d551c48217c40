"""The sidebar: gateway status, the models with switch/unload/pull, GPU memory, the resident's log.

Every tab of the browser draws this from the one gateway; nothing here keeps a model or a
manager of its own, so the one-resident rule holds however many tabs are open.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from vlmswap.i18n import num, tr, translate_text
from vlmswap.swap.states import ModelState
from vlmswap.ui import settings
from vlmswap.ui.api import Gateway, GatewayError
from vlmswap.ui.progress import NOTICE_KEY, run_switch, show_notice
from vlmswap.ui.replicas import replicas_caption
from vlmswap.ui.view import (
    STATE_ICONS,
    activity_line,
    badges,
    host_line,
    kept_line,
    memory_bar_html,
    memory_line,
    models,
    needs_pull,
    phase_label,
    pool_line,
    prediction_line,
    pull_fraction,
    pull_line,
    resident_name,
    sleep_line,
    state_label,
    stats_line,
)

REFRESH_S = 3.0
PULL_REFRESH_S = 2.0
PENDING_KEY = "pending_switch"
PULLING_KEY = "pulls_seen_running"


def _ask_switch(name: str) -> None:
    st.session_state[PENDING_KEY] = name


def render(gw: Gateway) -> dict[str, Any] | None:
    """Draw the sidebar; returns the gateway status (None when it is unreachable)."""
    sb = st.sidebar
    sb.title("vlmswap")
    try:
        status = gw.status()
    except GatewayError as exc:
        sb.error(translate_text(exc.message), icon=":material/power_off:")  # the client's own words, too
        sb.button(tr("Retry"), key="retry_gateway")
        return None
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending:
        run_switch(gw, pending, sb)
        st.rerun()
    show_notice(sb)
    with sb:
        _live(gw)
    _models(gw, status)
    settings.render(gw, sb)
    return status


@st.fragment(run_every=REFRESH_S)
def _live(gw: Gateway) -> None:
    """Refreshed every few seconds on its own: resident model, queue, GPU memory, log tail."""
    settings.keep_language()  # a fragment's rerun runs apart from the page: same language
    try:
        status = gw.status()
    except GatewayError as exc:
        st.warning(translate_text(exc.message), icon=":material/power_off:")
        return
    resident = resident_name(status)
    sw = status.get("switch")
    line = tr(
        "Gateway `{url}` · resident: **{resident}** · queued: {queued}",
        url=gw.url,
        resident=resident or tr("none"),
        queued=status.get("queue_length", 0),
    )
    if status.get("profile") not in (None, "anonymous"):
        line += " · " + tr("signed in as **{profile}**", profile=status["profile"])
    if sw:
        line += "  \n" + tr(
            "switching to **{target}**: {phase} ({seconds} s)",
            target=sw.get("target"),
            phase=phase_label(str(sw.get("phase") or "")),
            seconds=num(float(sw.get("elapsed_s") or 0)),
        )
    st.markdown(line)
    if cluster := replicas_caption(status):  # `vlmswap cluster serve`: where each model runs
        st.caption(cluster)
    st.markdown(memory_bar_html(status.get("gpu") or {}), unsafe_allow_html=True)
    if host_line(status.get("host") or {}):
        st.caption(host_line(status.get("host") or {}))
    if pool_line(status):
        st.caption(pool_line(status))
    if prediction_line(status):
        st.caption(prediction_line(status))
    if resident:
        with st.expander(tr("Log of {name}", name=resident)):
            try:
                st.code("\n".join(gw.logs(resident, 40)) or tr("(empty)"), language=None)
            except GatewayError as exc:
                st.caption(exc.message)


def _models(gw: Gateway, status: dict[str, Any]) -> None:
    sb = st.sidebar
    sb.subheader(tr("Models"))
    gpu = status.get("gpu") or {}
    for m in models(status):
        name = m["name"]
        state = ModelState(m.get("state") or ModelState.STOPPED)
        box = sb.container(border=True)
        box.markdown(
            f"**{name}** {STATE_ICONS.get(state, '○')} {state_label(state)}  \n{badges(m.get('capabilities') or [])}"
        )
        box.caption(memory_line(m, gpu))
        if activity_line(m):
            box.caption(activity_line(m))
        if sleep_line(m):
            box.caption(sleep_line(m))
        if kept_line(m, status):
            box.caption(kept_line(m, status))
        if stats_line(m):
            box.caption(stats_line(m))
        pulled = False
        if needs_pull(m):
            with box:
                pulled = _pull_box(gw, name, str(m["unavailable"]))
        elif m.get("unavailable"):
            box.caption(":material/block: " + tr("cannot run here: {why}", why=translate_text(str(m["unavailable"]))))
        elif state == ModelState.FAILED and m.get("last_error"):
            box.caption(tr("last start failed: {why}", why=translate_text(str(m["last_error"]))))
        # One row that wraps: each button as wide as its label, so none is cut ("Sw…"), in any language.
        row = box.container(horizontal=True, wrap=True, gap="small")
        row.button(
            tr("Wake")
            if state == ModelState.SLEEPING
            else tr("Switch")
            if state != ModelState.READY
            else tr("Resident"),
            key=f"switch_{name}",
            icon=":material/swap_horiz:",
            disabled=(bool(m.get("unavailable")) and not pulled)
            or state in (ModelState.READY, ModelState.STARTING, ModelState.WAKING),
            on_click=_ask_switch,
            args=(name,),
            width="content",
        )
        if state == ModelState.READY and m.get("sleep_mode"):
            row.button(
                tr("Sleep"),
                key=f"sleep_{name}",
                icon=":material/bedtime:",
                width="content",
                on_click=_sleep,
                args=(gw, name),
                help=tr("Park the weights in host RAM; the next request wakes it in a moment"),
            )
        if state in (ModelState.READY, ModelState.STARTING, ModelState.SLEEPING):
            row.button(
                tr("Unload"),
                key=f"unload_{name}",
                icon=":material/eject:",
                width="content",
                on_click=_unload,
                args=(gw, name),
            )


def _sleep(gw: Gateway, name: str) -> None:
    """Button callback: the outcome becomes the sidebar's notice, as for Unload."""
    try:
        gw.sleep(name)
        notice = {
            "ok": True,
            "model": name,
            "text": tr("{name} is going to sleep.", name=name),
            "log_tail": [],
            "steps": [],
        }
    except GatewayError as exc:
        notice = {
            "ok": False,
            "model": name,
            "text": tr("Could not put {name} to sleep: {why}", name=name, why=exc.message),
            "log_tail": [],
            "steps": [],
        }
    st.session_state[NOTICE_KEY] = notice


@st.fragment(run_every=PULL_REFRESH_S)
def _pull_box(gw: Gateway, name: str, reason: str) -> bool:
    """A model whose files are missing: its size and a Pull button, then the gateway's progress.

    Refreshed on its own; when a pull it saw running ends, the whole app reruns so the Switch
    button follows. Returns whether the gateway's last pull of the model succeeded.
    """
    settings.keep_language()
    try:
        job = gw.pull_status(name)
    except GatewayError as exc:
        st.caption(exc.message)
        return False
    seen: set[str] = st.session_state.setdefault(PULLING_KEY, set())
    if job.get("pulling"):
        seen.add(name)
        st.progress(pull_fraction(job), text=pull_line(job))
        return False
    if name in seen:  # it ended since the last refresh: redraw everything (Switch, the Chat page)
        seen.discard(name)
        st.rerun(scope="app")
    if job.get("ok"):
        st.caption(f":material/download_done: {pull_line(job)}")
        return True
    if job.get("done"):
        st.caption(f":material/error: {pull_line(job)}")
    st.caption(f":material/cloud_download: {translate_text(reason)}")
    st.button(
        tr("Pull"),
        key=f"pull_{name}",
        icon=":material/download:",
        width="stretch",
        on_click=_pull,
        args=(gw, name),
        help=tr(
            "Download {name}'s files into the gateway's Hugging Face cache (same as `vlmswap pull {name}`).", name=name
        ),
    )
    return False


def _pull(gw: Gateway, name: str) -> None:
    """Button callback: start the pull on the gateway; its progress shows in the model's box."""
    try:
        gw.pull(name, wait=False)
        st.session_state.setdefault(PULLING_KEY, set()).add(name)
    except GatewayError as exc:
        st.session_state[NOTICE_KEY] = {
            "ok": False,
            "model": name,
            "text": tr("Could not pull {name}: {why}", name=name, why=exc.message),
            "log_tail": [],
            "steps": [],
        }


def _unload(gw: Gateway, name: str) -> None:
    """Button callback: the outcome becomes the sidebar's notice, so it survives the rerun."""
    try:
        gw.unload(name)
        notice = {"ok": True, "model": name, "text": tr("{name} unloaded.", name=name), "log_tail": [], "steps": []}
    except GatewayError as exc:
        notice = {
            "ok": False,
            "model": name,
            "text": tr("Could not unload {name}: {why}", name=name, why=exc.message),
            "log_tail": [],
            "steps": [],
        }
    st.session_state[NOTICE_KEY] = notice
