"""A switch shown live: one status box whose bar and lines follow the gateway's phases.

Used by the sidebar's switch buttons and by the pages that need a model before they can
send work (chat, OCR), so a switch looks the same wherever it starts.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

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
    box = where.status(f"Switching to {name}…", expanded=True)
    bar = box.progress(0.0, text="Asking the gateway…")
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
            last_message.update(phase=phase, text=message)
        lines = [f"{_mark(p, phase)} {phase_label(p)}" for p in seen]
        if last_message["text"]:
            lines.append(f"_{last_message['text']}_")
        steps.markdown("  \n".join(lines))

    try:
        result = gw.switch(name, on_progress)
    except GatewayError as exc:
        box.update(label=f"Could not switch to {name}", state="error", expanded=True)
        box.error(exc.message)
        st.session_state[NOTICE_KEY] = {"ok": False, "model": name, "text": exc.message, "log_tail": [], "steps": []}
        return None
    final = Phase.READY if result.ok else Phase.FAILED
    if final not in seen:
        seen.append(final)
        times[final] = result.elapsed_s
    if result.ok:
        bar.progress(1.0, text=f"Ready · {result.elapsed_s:.1f} s")
        box.update(label=f"{name} is ready ({result.elapsed_s:.1f} s)", state="complete", expanded=False)
        text = f"{name} is ready (switch took {result.elapsed_s:.1f} s)."
    else:
        box.update(label=f"{name} failed to start", state="error", expanded=True)
        text = f"{name} failed to start: {result.error}"
    steps = [f"{phase_label(p)} {times.get(p, 0.0):.1f} s" for p in seen]
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
        where.caption("Switch: " + " → ".join(notice["steps"]))
    if not notice["ok"] and notice.get("log_tail"):
        where.caption("Last log lines of the backend:")
        where.code("\n".join(notice["log_tail"][-15:]), language=None)
    if where.button("Dismiss", key="dismiss_notice"):
        st.session_state.pop(NOTICE_KEY, None)
        st.rerun()
