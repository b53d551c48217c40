"""Error bodies stay English for clients that parse them; `Accept-Language: ru` renders the message
(never the code or type) in Russian, through a real gateway and the official `openai` client;
and the CLI speaks Russian with VLMSWAP_LANG=ru, the gateway's messages included."""

from __future__ import annotations

import hashlib
import os
import subprocess

import httpx
import openai
import pytest
import yaml

from tests.gateway_e2e.conftest import Gateway, fault_model
from tests.support import PY, ROOT

KEY = "ru-key-0123"


@pytest.fixture(scope="module")
def gw(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("i18n-gw")
    g = Gateway(tmp, {"alpha": fault_model(served_name="org/alpha")})
    data = yaml.safe_load(g.config.read_text())
    data["profiles"] = {"me": {"key_sha256": hashlib.sha256(KEY.encode()).hexdigest(), "admin": True}}
    g.config.write_text(yaml.safe_dump(data))
    g.start()
    yield g
    g.stop()


def call(gw, path: str, lang: str | None = None, key: str | None = KEY, **kw) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    if lang:
        headers["accept-language"] = lang
    return gw.http.request(kw.pop("method", "POST"), path, headers=headers, **kw)


def test_an_unknown_model_in_each_language_keeps_its_code(gw):
    body = {"model": "nope", "messages": [{"role": "user", "content": "hi"}]}
    en = call(gw, "/v1/chat/completions", json=body)
    ru = call(gw, "/v1/chat/completions", "ru-RU,ru;q=0.9,en;q=0.5", json=body)
    assert en.status_code == ru.status_code == 404
    e, r = en.json()["error"], ru.json()["error"]
    assert e["message"].startswith("The model `nope` does not exist. Known models: ")
    assert r["message"].startswith("Модели `nope` нет. Известные модели: ") and "org/alpha" in r["message"]
    assert (r["code"], r["type"], r["param"]) == (e["code"], e["type"], e["param"])
    assert int(ru.headers["content-length"]) == len(ru.content)  # the body was rewritten, its length too


def test_the_guards_own_answers_are_localised_too(gw):
    r = call(gw, "/api/status", "ru", key=None, method="GET")
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert r.json()["error"] == {
        "message": "нет ключа API или он неверный (пришлите `Authorization: Bearer KEY`)",
        "type": "authentication_error",
        "param": None,
        "code": "invalid_api_key",
    }


def test_english_or_an_unknown_language_is_left_as_it_was(gw):
    for lang in (None, "en-US", "de-DE"):
        r = call(gw, "/api/me/preferences", lang, method="PUT", json={"dpi": 1})
        assert (
            r.status_code == 400 and r.json()["error"]["message"] == "dpi: Input should be greater than or equal to 50"
        )


def test_the_openai_client_reads_a_localised_error_as_any_other(gw):
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key=KEY, default_headers={"Accept-Language": "ru"})
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "hi"}])
    assert info.value.status_code == 404 and "Модели `nope` нет" in str(info.value.message)


def vlmswap(*args: str, lang: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("VLMSWAP_GATEWAY",)}
    env.update({"VLMSWAP_LANG": lang, "VLMSWAP_API_KEY": KEY, "COLUMNS": "200"})
    return subprocess.run([PY, "-m", "vlmswap", *args], capture_output=True, text=True, timeout=120, env=env, cwd=ROOT)


def test_the_cli_in_russian_with_the_gateways_messages(gw):
    st = vlmswap("status", "--gateway", gw.url, lang="ru")
    assert st.returncode == 0, st.stderr
    assert "GPU: GPU не найден: работаем только на CPU" in st.stdout
    assert "активна:" in st.stdout and "состояние" in st.stdout and "очередь:" in st.stdout
    bad = vlmswap("switch", "nope", "--gateway", gw.url, lang="ru")
    assert bad.returncode == 1 and "vlmswap: Модели `nope` нет. Известные модели:" in bad.stderr
    en = vlmswap("switch", "nope", "--gateway", gw.url, lang="en")
    assert "vlmswap: The model `nope` does not exist." in en.stderr


def test_vlmswap_ocr_says_a_bad_file_and_its_summary_in_russian(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("just words")
    out = vlmswap("ocr", str(notes), "--out", str(tmp_path / "out"), lang="ru")
    assert out.returncode == 2
    assert f"{notes}: это не изображение и не PDF (поддерживаются:" in out.stderr
    assert "файлов прочитано" in out.stderr and "файлов с ошибкой" in out.stderr
