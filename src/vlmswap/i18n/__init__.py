"""The interface in English and Russian: one message table per language, keyed by the English text.

`tr("Switching to {name}…", name=n)` gives the message in the current language, then fills
it in. English is the source (no table); `ru.py` holds the Russian, written and reviewed by
hand. A test walks the source for every `tr(...)`/`trn(...)` literal and checks the table has
it with the same placeholders, so a new English message without its Russian fails the build.

Which language: the UI sets it per browser session (the profile's saved preference, else
`VLMSWAP_LANG`, else the browser's Accept-Language); the CLI takes `VLMSWAP_LANG`, else the
POSIX locale (LC_ALL, LC_MESSAGES, LANG). The gateway's API stays English, but `translate_text`
renders a known message of the gateway (an error, a GPU reason) in the asked-for language:
`Accept-Language: ru` localises error bodies' `message` (never their `code`).

A message table and not gettext catalogs: no build step (a fresh clone runs as it is), the
table is plain Python that mypy and the tests read, and Russian plurals are three forms of one
entry (`trn`).
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Iterator
from contextvars import ContextVar
from functools import cache
from typing import Any

LANGUAGES = ("en", "ru")
NAMES = {"en": "English", "ru": "Русский"}
ENV = "VLMSWAP_LANG"
DEFAULT = "en"

_current: ContextVar[str | None] = ContextVar("vlmswap_language", default=None)


def normalize(tag: str | None) -> str | None:
    """'ru-RU', 'ru_RU.UTF-8', 'RU' -> 'ru'; a language we have no table for -> None."""
    if not tag:
        return None
    base = re.split(r"[-_.@]", tag.strip().lower(), maxsplit=1)[0]
    return base if base in LANGUAGES else None


def negotiate(accept_language: str | None) -> str | None:
    """The best language we have from an Accept-Language header (q-values honoured), or None."""
    if not accept_language:
        return None
    ranked: list[tuple[float, int, str]] = []
    for i, part in enumerate(accept_language.split(",")):
        tag, _, params = part.strip().partition(";")
        q = 1.0
        m = re.search(r"q\s*=\s*([0-9.]+)", params)
        if m:
            try:
                q = float(m.group(1))
            except ValueError:
                q = 0.0
        lang = normalize(tag)
        if lang is not None and q > 0:
            ranked.append((-q, i, lang))
    return min(ranked)[2] if ranked else None


def choose(*candidates: str | None) -> str:
    """The first candidate we have a table for (each normalised), else English."""
    for c in candidates:
        lang = normalize(c)
        if lang is not None:
            return lang
    return DEFAULT


def env_language() -> str | None:
    return normalize(os.environ.get(ENV))


def cli_language() -> str:
    """The CLI's language: VLMSWAP_LANG, else the POSIX locale, else English."""
    return choose(os.environ.get(ENV), os.environ.get("LC_ALL"), os.environ.get("LC_MESSAGES"), os.environ.get("LANG"))


def language() -> str:
    """The current language: what `use`/`set_language` set in this context, else the CLI's."""
    return _current.get() or cli_language()


def set_language(lang: str | None) -> str:
    """Make `lang` (normalised; None or unknown: English) this context's language; returns it."""
    chosen = choose(lang)
    _current.set(chosen)
    return chosen


@contextlib.contextmanager
def use(lang: str | None) -> Iterator[str]:
    token = _current.set(choose(lang))
    try:
        yield _current.get() or DEFAULT
    finally:
        _current.reset(token)


Entry = str | tuple[str, str, str]  # a message, or a plural's three Russian forms


def _table(lang: str) -> dict[str, Entry]:
    if lang == "ru":
        from vlmswap.i18n import ru

        return ru.MESSAGES
    return {}


def N_(message: str) -> str:
    """Marks a message said later through `tr` (a label table): returns it as it is."""
    return message


def tr(message: str, /, **params: Any) -> str:
    """`message` in the current language, with `params` filled in (`str.format`) when given."""
    return render(message, language(), **params)


def render(message: str, lang: str, /, **params: Any) -> str:
    entry = _table(lang).get(message, message)
    text = entry[-1] if isinstance(entry, tuple) else entry  # a plural used without a count: its "many" form
    return text.format(**params) if params else text


def trn(one: str, other: str, n: int, /, **params: Any) -> str:
    """A message with a count: `one` or `other` in English; Russian's three forms from the table."""
    lang = language()
    forms = _table(lang).get(one)
    text = forms[russian_plural(n)] if isinstance(forms, tuple) else (one if n == 1 else other)
    return text.format(n=n, **params)


def russian_plural(n: int) -> int:
    """0: 1, 21, 31... (модель); 1: 2-4, 22-24... (модели); 2: 0, 5-20, 25-30... (моделей)."""
    n = abs(n)
    if n % 10 == 1 and n % 100 != 11:
        return 0
    if 2 <= n % 10 <= 4 and not 12 <= n % 100 <= 14:
        return 1
    return 2


def num(value: float, digits: int = 1) -> str:
    """A number as the current language writes it: 1.5 in English, 1,5 in Russian."""
    text = f"{value:.{digits}f}"
    return text.replace(".", ",") if language() == "ru" else text


# --- messages the gateway writes (errors, reasons), rendered on request ---------------------


@cache
def _patterns(lang: str) -> list[tuple[re.Pattern[str], str]]:
    """The templates with {placeholders} as regexes, the longest fixed text first (most specific)."""
    if lang != "ru":
        return []
    from vlmswap.i18n import ru

    out = []
    for template, text in ru.GATEWAY.items():
        parts = re.split(r"\{(\w+)\}", template)
        if len(parts) == 1:
            continue
        seen: set[str] = set()
        rx = ""
        for i, part in enumerate(parts):
            if i % 2 == 0:
                rx += re.escape(part)
            elif part in seen:
                rx += f"(?P={part})"
            else:
                seen.add(part)
                rx += f"(?P<{part}>.+?)"
        fixed = sum(len(p) for p in parts[::2])
        out.append((fixed, re.compile(f"^{rx}$", re.S), text))
    out.sort(key=lambda t: -t[0])
    return [(rx, text) for _, rx, text in out]


def translate_text(message: str, lang: str | None = None) -> str:
    """A message the gateway wrote (English), in `lang` (default: the current one) when it is a known one.

    Exact messages first, then templates (`unknown model {model}`); what is not known stays English.
    Values filled into a template are translated too when they are known messages themselves.
    """
    lang = lang or language()
    if lang == DEFAULT or not message:
        return message
    from vlmswap.i18n import ru

    exact = ru.GATEWAY.get(message)
    if exact is not None:
        return exact
    for rx, text in _patterns(lang):
        m = rx.match(message)
        if m:
            return text.format(**{k: translate_text(v, lang) for k, v in m.groupdict().items()})
    return message


__all__ = [
    "DEFAULT",
    "ENV",
    "LANGUAGES",
    "NAMES",
    "N_",
    "choose",
    "cli_language",
    "env_language",
    "language",
    "negotiate",
    "normalize",
    "num",
    "render",
    "russian_plural",
    "set_language",
    "tr",
    "translate_text",
    "trn",
    "use",
]
