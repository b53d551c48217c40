"""A switch shown live: one status box whose bar and lines follow the gateway's phases.

Used by the sidebar's switch buttons and by the pages that need a model before they can
send work (chat, OCR), so a switch looks the same wherever it starts.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from vlmswap.i18n import num, tr, translate_text
from vlmswap.swap.states import Phase
from vlmswap.ui.api import Gateway, GatewayError, SwitchResult
from vlmswap.ui.view import phase_label, time_bar

NOTICE_KEY = "switch_notice"


def _mark(phase: str, current: str) -> str:
    if phase == "failed":
        return "✗"
    return "…" if phase == current and phase != Phase.READY else "✓"


def run_switch(gw: Gateway, name: str, where: Any = None) -> SwitchResult | None:
    """Switch to `name` with a live status box in `where` (default: the main area).

    Returns the result (also kept as the notice shown afterwards), or None when the gateway
    refused the switch outright (the error is shown instead).
    """
    where = where or st
    st.session_state.pop(NOTICE_KEY, None)
    box = where.status(tr("Switching to {name}…", name=name), expanded=True)
    bar = box.progress(0.0, text=tr("Asking the gateway…"))
    steps = box.empty()
    seen: list[str] = []
    times: dict[str, float] = {}
    last_message = {"phase": "", "text": ""}  # kept while only the clock moves on

    def on_progress(phase: str, elapsed: float, message: str, eta_s: float | None = None) -> None:
        if phase and phase not in seen:
            seen.append(phase)
            times[phase] = elapsed  # when the phase began, since the switch began
        bar.progress(*time_bar(phase, elapsed, eta_s))
        if message or phase != last_message["phase"]:
            last_message.update(phase=phase, text=translate_text(message))
        lines = [f"{_mark(p, phase)} {phase_label(p)}" for p in seen]
        if last_message["text"]:
            lines.append(f"_{last_message['text']}_")
        steps.markdown("  \n".join(lines))

    try:
        result = gw.switch(name, on_progress)
    except GatewayError as exc:
        box.update(label=tr("Could not switch to {name}", name=name), state="error", expanded=True)
        box.error(translate_text(exc.message))
        st.session_state[NOTICE_KEY] = {
            "ok": False,
            "model": name,
            "text": translate_text(exc.message),
            "log_tail": [],
            "steps": [],
        }
        return None
    final = Phase.READY if result.ok else Phase.FAILED
    if final not in seen:
        seen.append(final)
        times[final] = result.elapsed_s
    seconds = num(result.elapsed_s)
    if result.ok:
        bar.progress(1.0, text=tr("Ready · {seconds} s", seconds=seconds))
        box.update(
            label=tr("{name} is ready ({seconds} s)", name=name, seconds=seconds), state="complete", expanded=False
        )
        text = tr("{name} is ready (switch took {seconds} s).", name=name, seconds=seconds)
    else:
        box.update(label=tr("{name} failed to start", name=name), state="error", expanded=True)
        text = tr("{name} failed to start: {why}", name=name, why=translate_text(result.error))
    steps = [tr("{phase} {seconds} s", phase=phase_label(p), seconds=num(times.get(p, 0.0))) for p in seen]
    st.session_state[NOTICE_KEY] = {
        "ok": result.ok,
        "model": name,
        "text": text,
        "log_tail": result.log_tail,
        "steps": steps,
    }
    return result


def show_notice(where: Any = None) -> None:
    """The last switch's outcome: ready, or failed with the backend's last log lines."""
    notice = st.session_state.get(NOTICE_KEY)
    if not notice:
        return
    where = where or st
    if notice["ok"]:
        where.success(notice["text"], icon=":material/check_circle:")
    else:
        where.error(notice["text"], icon=":material/error:")
    if notice.get("steps"):
        where.caption(tr("Switch: {steps}", steps=" → ".join(notice["steps"])))
    if not notice["ok"] and notice.get("log_tail"):
        where.caption(tr("Last log lines of the backend:"))
        where.code("\n".join(notice["log_tail"][-15:]), language=None)
    if where.button(tr("Dismiss"), key="dismiss_notice"):
        st.session_state.pop(NOTICE_KEY, None)
        st.rerun()
