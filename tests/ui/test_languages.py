"""The UI once per language (AppTest against the real gateway), and the profile's preferences in it:
the language chosen by preference, VLMSWAP_LANG or the browser, the pages opening with the saved
defaults, and what the user changes saved back on the gateway."""

from __future__ import annotations

import httpx
import pytest
from streamlit.testing.v1 import AppTest

from tests.ui.helpers import APP_FILE

TEXT = {
    "en": {
        "header": "OCR documents",
        "models": "Models",
        "switch": "Switch",
        "stopped": ":gray[○] stopped",
        "gpu": "GPU: no GPU found: CPU only",
        "unavailable": "cannot run here: vllm not installed",
        "ready": "ocr-a is ready (switch took",
        "steps": "Switch: Starting",
        "unload": "Unload",
        "unloaded": "ocr-a unloaded.",
        "mode": "Layout + text",
        "run": "Run OCR",
        "bad_file": "notes.png cannot be used: not an image or PDF",
        "chat_header": "Chat about images",
        "failed": "broken failed to start",
    },
    "ru": {
        "header": "Распознавание документов",
        "models": "Модели",
        "switch": "Переключить",
        "stopped": ":gray[○] остановлена",
        "gpu": "GPU: GPU не найден: работаем только на CPU",
        "unavailable": "здесь не запустится: vllm не установлен",
        "ready": "Модель ocr-a готова (переключение заняло",
        "steps": "Переключение: Запуск",
        "unload": "Выгрузить",
        "unloaded": "Модель ocr-a выгружена.",
        "mode": "Разметка и текст",
        "run": "Распознать",
        "bad_file": "Файл notes.png не подходит: это не изображение и не PDF",  # the gateway's message, localised
        "chat_header": "Чат об изображениях",
        "failed": "Модель broken не запустилась",
    },
}


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def run_ok(target) -> AppTest:
    at = target.run()
    assert not at.exception, at.exception
    return at


def put_preferences(gateway, **prefs) -> dict:
    r = httpx.put(f"{gateway.url}/api/me/preferences", json=prefs, timeout=10, trust_env=False)
    assert r.status_code == 200, r.text
    return r.json()


def saved(gateway) -> dict:
    return httpx.get(f"{gateway.url}/api/me/preferences", timeout=10, trust_env=False).json()


@pytest.mark.parametrize("lang", ["en", "ru"])
def test_the_ui_reads_in_each_language(lang, gateway, monkeypatch):
    t = TEXT[lang]
    monkeypatch.setenv("VLMSWAP_LANG", lang)
    app = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=240))
    assert t["header"] in [h.value for h in app.header]
    assert t["models"] in [s.value for s in app.sidebar.subheader]
    side = texts(app.sidebar.markdown)
    assert f"**ocr-a** {t['stopped']}" in side and t["gpu"] in side
    assert t["unavailable"] in texts(app.sidebar.caption)
    assert app.sidebar.button(key="switch_ocr-a").label == t["switch"]
    assert t["mode"] in app.selectbox(key="ocr_mode").options and app.button(key="ocr_run").label == t["run"]

    run_ok(app.sidebar.button(key="switch_ocr-a").click())
    assert gateway.resident() == "ocr-a"
    assert t["ready"] in texts(app.sidebar.success) and t["steps"] in texts(app.sidebar.caption)
    assert app.sidebar.button(key="unload_ocr-a").label == t["unload"]
    run_ok(app.sidebar.button(key="unload_ocr-a").click())
    assert t["unloaded"] in texts(app.sidebar.success)

    app.file_uploader(key="ocr_files").set_value(("notes.png", b"just some text, not an image", "image/png"))
    run_ok(app)
    run_ok(app.button(key="ocr_run").click())
    assert t["bad_file"] in texts(app.main.error)

    app.switch_page("chat_page.py")
    run_ok(app)
    assert t["chat_header"] in [h.value for h in app.header]
    run_ok(app.selectbox(key="chat_model").set_value("broken"))
    app.chat_input(key="chat_input").set_value("Hello?")
    run_ok(app)
    assert t["failed"] in texts(app.main.error)


def test_the_saved_language_wins_over_vlmswap_lang_and_the_picker_saves_it(gateway, monkeypatch):
    monkeypatch.setenv("VLMSWAP_LANG", "en")
    put_preferences(gateway, language="ru")
    app = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=240))
    assert "Распознавание документов" in [h.value for h in app.header]
    run_ok(app.sidebar.selectbox(key="pref_language").set_value(""))  # back to "the browser's"
    assert saved(gateway)["language"] is None
    assert "OCR documents" in [h.value for h in app.header]  # no browser language in AppTest: VLMSWAP_LANG


def test_the_pages_open_with_the_saved_preferences_and_save_what_changes(gateway):
    put_preferences(
        gateway,
        ocr_model="ocr-b",
        ocr_mode="text",
        dpi=300,
        pages="2-3",
        chat_model="tiny-chat",
        prompt_presets=[
            {"name": "tables", "text": "Read only the tables.", "task": "ocr"},
            {"name": "describe", "text": "Describe the picture.", "task": "chat"},
        ],
    )
    app = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=240))  # a new session: a reload, another browser
    assert app.selectbox(key="ocr_model").value == "ocr-b"
    assert app.selectbox(key="ocr_mode").value == "text"
    assert app.number_input(key="ocr_dpi").value == 300
    assert app.text_input(key="ocr_pages").value == "2-3"
    assert app.selectbox(key="ocr_preset").options == ["the mode's own prompt", "tables"]

    run_ok(app.selectbox(key="ocr_mode").set_value("layout-only"))
    run_ok(app.text_input(key="ocr_pages").set_value(""))
    after = saved(gateway)
    assert after["ocr_mode"] == "layout-only" and after["pages"] is None and after["dpi"] == 300

    run_ok(app.text_input(key="ocr_pages").set_value("seven"))  # refused by the gateway: said, not stored
    assert "Could not save the preferences: pages: bad page range 'seven'" in texts(app.sidebar.error)
    assert saved(gateway)["pages"] is None

    app.switch_page("chat_page.py")
    run_ok(app)
    assert app.selectbox(key="chat_model").value == "tiny-chat"
    assert app.selectbox(key="chat_preset").options == ["none", "describe"]
    again = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=240))
    assert again.selectbox(key="ocr_mode").value == "layout-only"  # remembered, across sessions


def test_prompt_presets_are_added_and_removed_in_the_sidebar(gateway):
    app = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=240))
    app.sidebar.text_input(key="preset_name").set_value("invoice")
    app.sidebar.text_area(key="preset_text").set_value("List the invoice's line items.")
    app.sidebar.radio(key="preset_task").set_value("chat")
    run_ok(app.sidebar.button(key="preset_add").click())
    assert saved(gateway)["prompt_presets"] == [
        {"name": "invoice", "text": "List the invoice's line items.", "task": "chat"}
    ]
    run_ok(app.sidebar.button(key="preset_remove_chat_invoice").click())
    assert saved(gateway)["prompt_presets"] == []
    run_ok(app.sidebar.button(key="preset_add").click())  # empty name and text: a message, nothing saved
    assert "A preset needs a name and a text." in texts(app.sidebar.error)


def test_gateway_down_in_russian_says_how_to_start_it(monkeypatch):
    from tests.support import free_port

    monkeypatch.setenv("VLMSWAP_LANG", "ru")
    monkeypatch.setenv("VLMSWAP_GATEWAY_URL", f"http://127.0.0.1:{free_port()}")
    at = run_ok(AppTest.from_file(str(APP_FILE), default_timeout=30))
    side = texts(at.sidebar.error)
    assert "недоступен" in side and "Запустите его командой `vlmswap serve`" in side
    assert "Шлюз недоступен; как его запустить, сказано на боковой панели." in texts(at.main.error)
    assert at.sidebar.button(key="retry_gateway").label == "Повторить"
