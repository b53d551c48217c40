"""Preferences per profile through real gateways: PUT then GET, per profile, across a restart,
bad bodies as OpenAI-style 400s, and one local profile without profiles."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest
import yaml

from tests.gateway_e2e.conftest import Gateway, fault_model
from vlmswap.client import Client, GatewayError

ALICE, BOB = "alice-key-0123", "bob-key-4567"
MODELS = {
    "talker": {"served_name": "org/talker", "capabilities": ["chat"]},
    "reader": {"served_name": "org/reader", "capabilities": ["ocr", "layout"]},
    "secret": {"served_name": "org/secret", "capabilities": ["chat", "ocr"]},
}
PROFILES = {
    "alice": {"key_sha256": hashlib.sha256(ALICE.encode()).hexdigest(), "admin": True},
    "bob": {"key_sha256": hashlib.sha256(BOB.encode()).hexdigest(), "models": ["talker", "reader"]},
}
ALICES = {
    "chat_model": "org/talker",  # a served name: stored as the registry name
    "ocr_model": "reader",
    "ocr_mode": "layout-only",
    "dpi": 200,
    "pages": "1-3, 7",
    "prompt_presets": [
        {"name": "invoice", "text": "List the invoice's line items as a table.", "task": "chat"},
        {"name": "tables", "text": "Read only the tables, as HTML.", "task": "ocr"},
    ],
    "language": "ru",
}


def gateway(tmp, state_dir, profiles=True) -> Gateway:
    gw = Gateway(tmp, {n: fault_model(**m) for n, m in MODELS.items()}, state_dir=state_dir)
    if profiles:
        data = yaml.safe_load(gw.config.read_text())
        data["profiles"] = PROFILES
        gw.config.write_text(yaml.safe_dump(data))
    return gw


@pytest.fixture
def started(tmp_path):
    made: list[Gateway] = []

    def start(profiles: bool = True) -> Gateway:
        gw = gateway(tmp_path, tmp_path / "state", profiles).start()
        made.append(gw)
        return gw

    yield start
    for gw in made:
        gw.stop()


@pytest.fixture(scope="module")
def plain(tmp_path_factory):
    """One gateway without profiles for the tests that only read and refuse."""
    tmp = tmp_path_factory.mktemp("prefs-plain")
    gw = gateway(tmp, tmp / "state", profiles=False).start()
    yield gw
    gw.stop()


def put(gw: Gateway, key: str | None, body, **kw) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return gw.http.put("/api/me/preferences", json=body, headers=headers, **kw)


def get(gw: Gateway, key: str | None) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return gw.http.get("/api/me/preferences", headers=headers)


def test_put_then_get_round_trips_per_profile_and_survives_a_restart(started, tmp_path):
    gw = started()
    assert get(gw, ALICE).json() == {
        "chat_model": None,
        "ocr_model": None,
        "ocr_mode": None,
        "dpi": None,
        "pages": None,
        "prompt_presets": [],
        "language": None,
    }
    r = put(gw, ALICE, ALICES)
    assert r.status_code == 200, r.text
    stored = r.json()
    assert stored["chat_model"] == "talker" and stored["pages"] == "1-3,7" and stored["language"] == "ru"
    assert put(gw, BOB, {"ocr_model": "reader", "dpi": 300}).status_code == 200
    assert get(gw, ALICE).json() == stored
    assert get(gw, BOB).json()["dpi"] == 300 and get(gw, BOB).json()["language"] is None  # each its own
    assert get(gw, None).status_code == 401

    gw.stop()
    again = started()  # same state dir, a new process
    assert get(again, ALICE).json() == stored
    assert get(again, BOB).json()["ocr_model"] == "reader"
    on_disk = json.loads((tmp_path / "state" / "preferences" / "alice.json").read_text())
    assert on_disk == {"profile": "alice", "preferences": stored}


def test_client_reads_and_changes_only_the_fields_given(started):
    gw = started()
    with Client(gw.url, api_key=BOB) as c:
        c.set_preferences(ocr_model="org/reader", ocr_mode="text")
        out = c.set_preferences(dpi=250)
        assert (out["ocr_model"], out["ocr_mode"], out["dpi"]) == ("reader", "text", 250)
        assert c.preferences() == out
        assert c.set_preferences({"language": "en"}, replace=True)["ocr_model"] is None
        with pytest.raises(GatewayError) as info:
            c.set_preferences(chat_model="secret")
        assert info.value.status == 400 and info.value.code == "invalid_preferences"
        assert "this profile may not use secret" in info.value.message


@pytest.mark.parametrize(
    ("body", "param", "words"),
    [
        ({"colour": "blue"}, "colour", "Extra inputs are not permitted"),
        ({"ocr_mode": "poetry"}, "ocr_mode", "Input should be"),
        ({"dpi": 5}, "dpi", "greater than or equal to 50"),
        ({"pages": "3-1"}, "pages", "bad page range '3-1'"),
        ({"pages": "one"}, "pages", "bad page range 'one'"),
        ({"language": "fr"}, "language", "'en' or 'ru'"),
        ({"chat_model": "nope"}, "chat_model", "unknown model 'nope'"),
        ({"chat_model": "reader"}, "chat_model", "reader cannot do chat (capabilities: ocr, layout)"),
        ({"ocr_model": "talker"}, "ocr_model", "talker cannot do OCR"),
        ({"prompt_presets": [{"name": "a", "text": "x"}, {"name": "a", "text": "y"}]}, None, "two chat presets"),
        ({"prompt_presets": [{"name": "", "text": "x"}]}, "prompt_presets.0.name", "at least 1 character"),
    ],
)
def test_bad_preferences_are_openai_style_400s_that_name_the_field(plain, body, param, words):
    gw = plain
    before = get(gw, None).json()
    r = put(gw, None, body)
    assert r.status_code == 400, r.text
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and words in err["message"], err
    if param is not None:
        assert err["param"] == param
    assert get(gw, None).json() == before  # nothing was stored


def test_without_profiles_there_is_one_local_profile(plain):
    assert put(plain, None, {"ocr_model": "reader", "dpi": 120}).status_code == 200
    assert get(plain, None).json()["dpi"] == 120
    assert (plain.state_dir / "preferences" / "anonymous.json").exists()


def test_not_json_is_a_400_too(plain):
    r = plain.http.put("/api/me/preferences", content=b"{nope", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
