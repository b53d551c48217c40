"""The profile's preferences in the UI: the language of this session, the pages' defaults, the editor.

Preferences live on the gateway (`/api/me/preferences`), so the UI opens with them in any
browser and after a reload; this module reads them once per browser session, writes back what
the user changes (a page's model, mode, dpi, pages; the language; the prompt presets), and
keeps the session's language for the fragments, which rerun apart from the page.

The language: the saved preference, else `VLMSWAP_LANG`, else the browser's (Accept-Language).
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from vlmswap import i18n
from vlmswap.i18n import N_, tr
from vlmswap.ui.api import Gateway, GatewayError

PREFS_KEY = "_vlmswap_preferences"
LANG_KEY = "_vlmswap_language"
ERROR_KEY = "_vlmswap_preferences_error"
TASKS = ("chat", "ocr")
TASK_LABELS = {"chat": N_("Chat"), "ocr": N_("OCR")}


def preferences(gw: Gateway) -> dict[str, Any]:
    """The profile's preferences, read once per session ({} while the gateway cannot say)."""
    prefs = st.session_state.get(PREFS_KEY)
    if prefs is None:
        try:
            prefs = gw.preferences()
        except GatewayError:  # not reachable (the sidebar says so), or a gateway without preferences
            return {}
        st.session_state[PREFS_KEY] = prefs
    return dict(prefs)


def save(gw: Gateway, **fields: Any) -> bool:
    """Change these fields on the gateway (the rest stays); a refusal becomes a message, not an exception."""
    try:
        st.session_state[PREFS_KEY] = gw.set_preferences({**preferences(gw), **fields}, replace=True)
        return True
    except GatewayError as exc:
        st.session_state[ERROR_KEY] = tr("Could not save the preferences: {why}", why=exc.message)
        return False


def remember(gw: Gateway, field: str, widget_key: str) -> None:
    """Widget callback: the value now in `widget_key` becomes the profile's `field` preference."""
    value = st.session_state.get(widget_key)
    if isinstance(value, str) and not value.strip():
        value = None
    if preferences(gw).get(field) != value:
        save(gw, **{field: value})


def browser_language() -> str | None:
    headers = getattr(st.context, "headers", None) or {}
    lang = i18n.negotiate(headers.get("Accept-Language") if hasattr(headers, "get") else None)
    return lang or i18n.normalize(getattr(st.context, "locale", None))


def apply_language(gw: Gateway) -> str:
    """This run's language, chosen and set (for the pages, and for the gateway's error messages)."""
    lang = i18n.choose(preferences(gw).get("language"), i18n.env_language(), browser_language())
    st.session_state[LANG_KEY] = lang
    gw.language = lang
    return i18n.set_language(lang)


def keep_language() -> None:
    """In a fragment's rerun: the language the page chose."""
    i18n.set_language(st.session_state.get(LANG_KEY))


def presets(gw: Gateway, task: str) -> list[dict[str, Any]]:
    return [p for p in preferences(gw).get("prompt_presets") or [] if p.get("task", "chat") == task]


def _set_language(gw: Gateway) -> None:
    value = st.session_state.get("pref_language")
    save(gw, language=value or None)


def _add_preset(gw: Gateway) -> None:
    name = str(st.session_state.get("preset_name") or "").strip()
    text = str(st.session_state.get("preset_text") or "").strip()
    task = st.session_state.get("preset_task") or "chat"
    if not name or not text:
        st.session_state[ERROR_KEY] = tr("A preset needs a name and a text.")
        return
    kept = [p for p in preferences(gw).get("prompt_presets") or [] if (p["task"], p["name"]) != (task, name)]
    if save(gw, prompt_presets=[*kept, {"name": name, "text": text, "task": task}]):
        st.session_state["preset_name"] = st.session_state["preset_text"] = ""


def _remove_preset(gw: Gateway, task: str, name: str) -> None:
    kept = [p for p in preferences(gw).get("prompt_presets") or [] if (p["task"], p["name"]) != (task, name)]
    save(gw, prompt_presets=kept)


def render(gw: Gateway, where: Any) -> None:
    """The sidebar's Preferences: the language and the prompt presets (saved on the gateway, per profile)."""
    prefs = preferences(gw)
    if msg := st.session_state.pop(ERROR_KEY, None):  # above the expander: seen even when it is closed
        where.error(msg, icon=":material/error:")
    with where.expander(tr("Preferences"), icon=":material/tune:"):
        options = ["", *i18n.LANGUAGES]  # "": none saved, the browser's (None would read as "nothing picked")
        current = prefs.get("language") or ""
        st.selectbox(
            tr("Language"),
            options,
            index=options.index(current) if current in options else 0,
            format_func={"": tr("The browser's"), **i18n.NAMES}.__getitem__,
            key="pref_language",
            on_change=_set_language,
            args=(gw,),
        )
        st.caption(tr("Prompt presets"))
        for p in prefs.get("prompt_presets") or []:
            row = st.container(horizontal=True, vertical_alignment="center", gap="small")
            row.markdown(f"**{p['name']}** · {tr(TASK_LABELS.get(p['task'], 'Chat'))}")
            row.button(
                tr("Remove"),
                key=f"preset_remove_{p['task']}_{p['name']}",
                icon=":material/delete:",
                type="tertiary",
                on_click=_remove_preset,
                args=(gw, p["task"], p["name"]),
            )
        st.text_input(tr("Name"), key="preset_name", max_chars=60)
        st.text_area(tr("Prompt"), key="preset_text", max_chars=4000, height=80)
        st.radio(
            tr("For"),
            TASKS,
            format_func={t: tr(TASK_LABELS[t]) for t in TASKS}.__getitem__,
            horizontal=True,
            key="preset_task",
        )
        st.button(tr("Add preset"), key="preset_add", icon=":material/add:", on_click=_add_preset, args=(gw,))
