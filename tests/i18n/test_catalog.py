"""The Russian table against the source: every message the code says has its Russian, with the same
placeholders; plurals have three forms; nothing in the table is left over; the Russian is Russian."""

from __future__ import annotations

import re
import string

import pytest

from tests.i18n.catalog import scan
from vlmswap.i18n import ru, translate_text

SINGLES, PLURALS, _ = scan()
# Values that are the same in both languages: names, abbreviations, units without words.
SAME = {"GPU", "OCR", "id", "dpi {dpi}", "{n} s"}


def fields(text: str) -> set[str]:
    return {f for _, f, _, _ in string.Formatter().parse(text) if f}


def test_the_source_says_messages_and_the_scan_finds_them():
    assert len(SINGLES) > 200 and "Switching to {name}…" in SINGLES and "Sleeping pool: {n} model" in PLURALS


@pytest.mark.parametrize("message", sorted(SINGLES))
def test_every_message_has_its_russian_with_the_same_placeholders(message):
    assert message in ru.MESSAGES, f"no Russian for {message!r} ({', '.join(SINGLES[message])})"
    text = ru.MESSAGES[message]
    assert isinstance(text, str)
    assert fields(text) == fields(message), (message, text)
    assert re.search("[а-яА-ЯёЁ]", text) or text in SAME or text == message.replace("GB", "ГБ"), text


@pytest.mark.parametrize("one", sorted(PLURALS))
def test_every_plural_has_three_russian_forms(one):
    forms = ru.MESSAGES.get(one)
    assert isinstance(forms, tuple) and len(forms) == 3, forms
    english = fields(PLURALS[one][0]) | fields(PLURALS[one][1])
    assert all(fields(f) == english for f in forms), forms


def test_nothing_in_the_table_is_left_over():
    used = set(SINGLES) | set(PLURALS)
    assert [k for k in ru.MESSAGES if k not in used] == []


@pytest.mark.parametrize("template", sorted(ru.GATEWAY))
def test_gateway_templates_keep_their_placeholders_and_render(template):
    text = ru.GATEWAY[template]
    assert fields(text) == fields(template) and re.search("[а-яА-ЯёЁ]", text), (template, text)
    sample = template.format(**{f: f"<{f}>" for f in fields(template)})
    assert translate_text(sample, "ru") == text.format(**{f: f"<{f}>" for f in fields(template)})
