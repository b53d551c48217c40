"""The sidebar: gateway status, the models with switch/unload, GPU memory, the resident's log.

Every tab of the browser draws this from the one gateway; nothing here keeps a model or a
manager of its own, so the one-resident rule holds however many tabs are open.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from vlmswap.ui.api import Gateway, GatewayError
from vlmswap.ui.progress import NOTICE_KEY, run_switch, show_notice
from vlmswap.ui.view import (
    STATE_ICONS,
    activity_line,
    badges,
    host_line,
    memory_bar_html,
    memory_line,
    models,
    resident_name,
)

REFRESH_S = 3.0
PENDING_KEY = "pending_switch"


def _ask_switch(name: str) -> None:
    st.session_state[PENDING_KEY] = name


def render(gw: Gateway) -> dict[str, Any] | None:
    """Draw the sidebar; returns the gateway status (None when it is unreachable)."""
    sb = st.sidebar
    sb.title("vlmswap")
    try:
        status = gw.status()
    except GatewayError as exc:
        sb.error(exc.message, icon=":material/power_off:")
        sb.button("Retry", key="retry_gateway")
        return None
    pending = st.session_state.pop(PENDING_KEY, None)
    if pending:
        run_switch(gw, pending, sb)
        st.rerun()
    show_notice(sb)
    with sb:
        _live(gw)
    _models(gw, status)
    return status


@st.fragment(run_every=REFRESH_S)
def _live(gw: Gateway) -> None:
    """Refreshed every few seconds on its own: resident model, queue, GPU memory, log tail."""
    try:
        status = gw.status()
    except GatewayError as exc:
        st.warning(exc.message, icon=":material/power_off:")
        return
    resident = resident_name(status)
    sw = status.get("switch")
    line = f"Gateway `{gw.url}` · resident: **{resident or 'none'}** · queued: {status.get('queue_length', 0)}"
    if sw:
        line += f"  \nswitching to **{sw.get('target')}**: {sw.get('phase')} ({float(sw.get('elapsed_s') or 0):.1f} s)"
    st.markdown(line)
    st.markdown(memory_bar_html(status.get("gpu") or {}), unsafe_allow_html=True)
    if host_line(status.get("host") or {}):
        st.caption(host_line(status.get("host") or {}))
    if resident:
        with st.expander(f"Log of {resident}"):
            try:
                st.code("\n".join(gw.logs(resident, 40)) or "(empty)", language=None)
            except GatewayError as exc:
                st.caption(exc.message)


def _models(gw: Gateway, status: dict[str, Any]) -> None:
    sb = st.sidebar
    sb.subheader("Models")
    gpu = status.get("gpu") or {}
    for m in models(status):
        name = m["name"]
        state = str(m.get("state") or "stopped")
        box = sb.container(border=True)
        box.markdown(f"**{name}** {STATE_ICONS.get(state, '○')} {state}  \n{badges(m.get('capabilities') or [])}")
        box.caption(memory_line(m, gpu))
        if activity_line(m):
            box.caption(activity_line(m))
        if m.get("unavailable"):
            box.caption(f":material/block: cannot run here: {m['unavailable']}")
        elif state == "failed" and m.get("last_error"):
            box.caption(f"last start failed: {m['last_error']}")
        left, right = box.columns(2)
        left.button("Switch" if state != "ready" else "Resident", key=f"switch_{name}",
                    disabled=bool(m.get("unavailable")) or state in ("ready", "starting", "loading"),
                    on_click=_ask_switch, args=(name,), width="stretch")
        if state in ("ready", "starting", "loading", "sleeping"):
            right.button("Unload", key=f"unload_{name}", width="stretch", on_click=_unload, args=(gw, name))


def _unload(gw: Gateway, name: str) -> None:
    """Button callback: the outcome becomes the sidebar's notice, so it survives the rerun."""
    try:
        gw.unload(name)
        notice = {"ok": True, "model": name, "text": f"{name} unloaded.", "log_tail": [], "steps": []}
    except GatewayError as exc:
        notice = {"ok": False, "model": name, "text": f"Could not unload {name}: {exc.message}", "log_tail": [],
                  "steps": []}
    st.session_state[NOTICE_KEY] = notice
