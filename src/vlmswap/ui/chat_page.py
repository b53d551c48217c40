"""Chat page: talk about images with any chat model; tokens appear as the gateway streams them.

A message for a model that is not resident first switches it, with the switch's progress
shown in the conversation, so the wait is visible instead of a silent pause. The model opens
with the profile's saved chat model (and a change is saved back); a saved chat preset is put
before what is typed (ui/settings.py).
"""

from __future__ import annotations

import base64
import io
from typing import Any

import streamlit as st

from vlmswap.api.images import ImageError, open_image
from vlmswap.i18n import tr, translate_text
from vlmswap.ui import settings
from vlmswap.ui.api import Gateway, GatewayError, session_gateway
from vlmswap.ui.progress import run_switch
from vlmswap.ui.view import no_chat_hint, preset_labels, resident_name, with_capability

HISTORY_KEY = "chat_history"
IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "gif", "bmp", "tif", "tiff"]
MAX_SIDE = 1280  # images are scaled down before sending: smaller requests, same answers


def _data_url(content: bytes) -> str:
    """PNG data URL of an attached image, refused when it is not an image or over the caps."""
    im = open_image(content)
    im.thumbnail((MAX_SIDE, MAX_SIDE))
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _api_messages(history: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for turn in history:
        if turn.get("images"):
            parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": u}} for u in turn["images"]]
            parts.append({"type": "text", "text": turn["content"]})
            out.append({"role": turn["role"], "content": parts})
        else:
            out.append({"role": turn["role"], "content": turn["content"]})
    return out


def _show_turn(turn: dict[str, Any]) -> None:
    with st.chat_message(turn["role"]):
        for u in turn.get("images") or []:
            st.image(base64.b64decode(u.split(",", 1)[1]), width=240)
        if turn.get("error"):
            st.error(turn["content"])
        else:
            st.markdown(turn["content"])


def with_preset(text: str, preset: str | None) -> str:
    """What is sent: the preset's text, then what was typed (either may be empty)."""
    return "\n\n".join(part for part in (preset or "", text) if part.strip())


def main() -> None:
    st.header(tr("Chat about images"))
    status = st.session_state.get("gateway_status")
    if status is None:
        st.error(tr("The gateway is not reachable; see the sidebar for how to start it."), icon=":material/power_off:")
        return
    gw = session_gateway()
    chat_models = [m for m in with_capability(status, "chat") if not m.get("unavailable")]
    if not chat_models:
        st.info(no_chat_hint(status), icon=":material/cloud_download:")
        return
    names = [m["name"] for m in chat_models]
    resident = resident_name(status)
    saved = settings.preferences(gw).get("chat_model")
    default = saved if saved in names else resident
    presets = settings.presets(gw, "chat")
    top = st.columns([3, 2, 1] if presets else [3, 1], vertical_alignment="bottom")
    model = top[0].selectbox(
        tr("Model"),
        names,
        index=names.index(default) if default in names else 0,
        key="chat_model",
        help=tr("Sending to a model that is not resident switches to it first."),
        on_change=settings.remember,
        args=(gw, "chat_model", "chat_model"),
    )
    preset = None
    if presets:
        chosen = top[1].selectbox(
            tr("Prompt preset"),
            [None, *range(len(presets))],
            format_func=preset_labels(presets, tr("none")).__getitem__,
            key="chat_preset",
            help=tr("Its text goes before what you type (presets: sidebar, Preferences)."),
        )
        preset = None if chosen is None else presets[chosen]["text"]
    if top[-1].button(tr("Clear history"), key="chat_clear", icon=":material/delete_sweep:", width="stretch"):
        st.session_state[HISTORY_KEY] = []
    history: list[dict[str, Any]] = st.session_state.setdefault(HISTORY_KEY, [])
    for turn in history:
        _show_turn(turn)

    prompt = st.chat_input(
        tr("Ask about the attached images…"), accept_file="multiple", file_type=IMAGE_TYPES, key="chat_input"
    )
    if not prompt:
        return
    text = with_preset(prompt.text if hasattr(prompt, "text") else str(prompt), preset)
    files = list(getattr(prompt, "files", []) or [])
    try:
        images = [_data_url(f.getvalue()) for f in files]
    except ImageError as exc:
        st.error(tr("Could not attach the image: {why}", why=exc), icon=":material/image_not_supported:")
        return
    user = {"role": "user", "content": text or tr("(image)"), "images": images}
    history.append(user)
    _show_turn(user)
    try:
        _answer(gw, model, history)
    except GatewayError as exc:  # e.g. the gateway went away between two calls
        msg = translate_text(exc.message)  # a GatewayUnreachable is the client's own words
        history.append({"role": "assistant", "content": msg, "error": True})
        st.error(msg, icon=":material/power_off:")


def _answer(gw: Gateway, model: str, history: list[dict[str, Any]]) -> None:
    """Switch to `model` when it is not resident (progress in the conversation), then stream."""
    switched = model != resident_name(gw.status())
    with st.chat_message("assistant"):
        if switched:
            result = run_switch(gw, model)
            if result is None or not result.ok:
                msg = st.session_state.get("switch_notice", {}).get("text", tr("{name} failed to start", name=model))
                history.append({"role": "assistant", "content": msg, "error": True})
                st.error(msg)
                if result is not None and result.log_tail:
                    st.code("\n".join(result.log_tail[-15:]), language=None)
                return
        try:
            answer = st.write_stream(
                gw.chat_stream(
                    model,
                    _api_messages([t for t in history if not t.get("error")]),
                    timeout=900.0,
                    max_tokens=512,
                    temperature=0.2,
                )
            )
        except GatewayError as exc:
            msg = tr("The model could not answer: {why}", why=exc.message)
            history.append({"role": "assistant", "content": msg, "error": True})
            st.error(msg)
            return
    history.append({"role": "assistant", "content": answer if isinstance(answer, str) else str(answer)})
    if switched:  # redraw the sidebar, which still shows the model that was resident before
        st.rerun()


main()
