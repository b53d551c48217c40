"""Choosing the language, plurals, numbers, and the gateway's messages rendered on request."""

from __future__ import annotations

import pytest

from vlmswap import i18n
from vlmswap.i18n import negotiate, num, russian_plural, tr, translate_text, trn, use


def test_accept_language_picks_the_best_we_have_by_q():
    assert negotiate("ru-RU,ru;q=0.9,en-US;q=0.8,en;q=0.7") == "ru"
    assert negotiate("de-DE,de;q=0.9,en;q=0.5,ru;q=0.4") == "en"
    assert negotiate("fr, ru;q=0") is None
    assert negotiate("en;q=0.2, ru;q=0.8") == "ru"
    assert negotiate("") is None and negotiate(None) is None


def test_choice_order_is_the_first_known_candidate():
    assert i18n.choose(None, "ru_RU.UTF-8", "en") == "ru"
    assert i18n.choose("fr", "C.UTF-8", None) == "en"


def test_cli_language_is_vlmswap_lang_then_the_posix_locale(monkeypatch):
    for var in ("VLMSWAP_LANG", "LC_ALL", "LC_MESSAGES", "LANG"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LANG", "ru_RU.UTF-8")
    assert i18n.cli_language() == "ru"
    monkeypatch.setenv("VLMSWAP_LANG", "en")
    assert i18n.cli_language() == "en"


@pytest.mark.parametrize(
    ("n", "form"),
    [(1, 0), (21, 0), (101, 0), (2, 1), (4, 1), (23, 1), (0, 2), (5, 2), (11, 2), (12, 2), (14, 2), (111, 2)],
)
def test_russian_plural_forms(n, form):
    assert russian_plural(n) == form


def test_messages_in_each_language():
    with use("en"):
        assert tr("Switching to {name}…", name="ocr-b") == "Switching to ocr-b…"
        assert trn("{n} block", "{n} blocks", 3) == "3 blocks" and num(1.25, 2) == "1.25"
    with use("ru"):
        assert tr("Switching to {name}…", name="ocr-b") == "Переключение на ocr-b…"
        assert [trn("{n} block", "{n} blocks", n) for n in (1, 3, 5)] == ["1 блок", "3 блока", "5 блоков"]
        assert num(1.25, 2) == "1,25"
        assert tr("not a message we have") == "not a message we have"


def test_gateway_messages_render_with_their_values_translated_too():
    assert translate_text("no GPU found: CPU only", "ru") == "GPU не найден: работаем только на CPU"
    said = "no GPU reading, skipped (no NVIDIA GPU found: CPU only)"
    assert translate_text(said, "ru") == "нет данных GPU, шаг пропущен (GPU NVIDIA не найден: работаем только на CPU)"
    assert translate_text("chat_model: unknown model 'nope'", "ru") == "chat_model: неизвестная модель 'nope'"
    assert translate_text("something new", "ru") == "something new"
    assert translate_text("no GPU found: CPU only", "en") == "no GPU found: CPU only"
