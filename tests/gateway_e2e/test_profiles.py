"""Profiles through a real gateway: keys, allowed models, the admin API, limits, usage."""

from __future__ import annotations

import hashlib

import httpx
import pytest

from tests.gateway_e2e.conftest import fault_model

OPS_KEY = "ops-key-0123"
TEAM_KEY = "team-key-4567"
BOT_KEY = "bot-key-89ab"


@pytest.fixture
def gw(gateways, monkeypatch):
    monkeypatch.setenv("VLMSWAP_TEST_OPS_KEY", OPS_KEY)
    monkeypatch.setenv("VLMSWAP_TEST_BOT_KEY", BOT_KEY)
    gw = gateways({"a": fault_model(), "b": fault_model()}, start=False)
    import yaml

    data = yaml.safe_load(gw.config.read_text())
    data["profiles"] = {
        "ops": {"key_env": "VLMSWAP_TEST_OPS_KEY", "admin": True},
        "team": {"key_sha256": hashlib.sha256(TEAM_KEY.encode()).hexdigest(), "models": ["a"], "priority": 5},
        "bot": {"key_env": "VLMSWAP_TEST_BOT_KEY", "requests_per_minute": 2},
    }
    gw.config.write_text(yaml.safe_dump(data))
    return gw.start()


def call(gw, key: str | None, method: str, path: str, **kw) -> httpx.Response:
    headers = {"authorization": f"Bearer {key}"} if key else {}
    return gw.http.request(method, path, headers=headers, **kw)


def chat(gw, key: str, model: str) -> httpx.Response:
    return call(
        gw,
        key,
        "POST",
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hello"}]},
    )


def test_a_key_that_may_not_use_a_model_gets_403_and_sees_only_its_models(gw):
    assert chat(gw, TEAM_KEY, "a").status_code == 200
    r = chat(gw, TEAM_KEY, "b")
    assert r.status_code == 403 and r.json()["error"]["code"] == "model_not_allowed"
    assert [m["name"] for m in call(gw, TEAM_KEY, "GET", "/v1/models").json()["data"]] == ["a"]
    assert call(gw, TEAM_KEY, "GET", "/api/me").json()["models"] == ["a"]
    assert chat(gw, OPS_KEY, "b").status_code == 200


def test_no_key_or_a_wrong_key_is_401_and_health_stays_open(gw):
    assert call(gw, None, "GET", "/v1/models").status_code == 401
    assert call(gw, "wrong", "GET", "/api/status").status_code == 401
    assert call(gw, None, "GET", "/health").status_code == 200


def test_a_non_admin_key_gets_403_on_the_admin_api(gw):
    for method, path in (
        ("POST", "/api/models/a/load"),
        ("POST", "/api/unload"),
        ("POST", "/api/models/a/sleep"),
        ("GET", "/api/models/a/logs"),
    ):
        r = call(gw, TEAM_KEY, method, path)
        assert r.status_code == 403 and r.json()["error"]["code"] == "admin_only", (method, path)
    assert call(gw, OPS_KEY, "POST", "/api/models/a/load").status_code in (200, 202)
    assert call(gw, TEAM_KEY, "GET", "/api/status").status_code == 200  # reading is for everyone signed in


def test_the_rate_limit_answers_429_with_retry_after(gw):
    assert chat(gw, BOT_KEY, "a").status_code == 200
    assert chat(gw, BOT_KEY, "a").status_code == 200
    r = chat(gw, BOT_KEY, "a")
    assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited"
    assert 1 <= int(r.headers["retry-after"]) <= 60
    assert chat(gw, OPS_KEY, "a").status_code == 200  # other profiles are not affected


def test_usage_counts_add_up_per_profile(gw):
    for _ in range(3):
        assert chat(gw, TEAM_KEY, "a").status_code == 200
    assert chat(gw, OPS_KEY, "b").status_code == 200
    chat(gw, TEAM_KEY, "b")  # refused before it reaches a model: not counted
    usage = call(gw, OPS_KEY, "GET", "/api/usage").json()["profiles"]
    assert usage["team"]["requests"] == 3 and usage["ops"]["requests"] == 1
    assert usage["team"]["tokens"] == 3 * (1 + 3)  # the fault server's usage: 1 prompt + 3 answer tokens
    assert usage["team"]["gpu_seconds"] > 0
    assert set(call(gw, TEAM_KEY, "GET", "/api/usage").json()["profiles"]) == {"team"}  # its own only
    metrics = call(gw, OPS_KEY, "GET", "/metrics").text
    assert 'vlmswap_profile_requests{profile="team"} 3.0' in metrics


def test_the_ui_client_shows_the_signed_in_profile_and_its_models_only(gw):
    from vlmswap.ui.api import Gateway

    st = Gateway(gw.url, api_key=TEAM_KEY).status()
    assert st["profile"] == "team" and list(st["models"]) == ["a"]
    st = Gateway(gw.url, api_key=OPS_KEY).status()
    assert st["profile"] == "ops" and sorted(st["models"]) == ["a", "b"]  # an admin sees every model
