"""Profiles: keys never stored, looked up by digest; limits by a sliding minute and concurrency."""

from __future__ import annotations

import hashlib

import pytest

from vlmswap.registry.config import ConfigError, parse_registry
from vlmswap.registry.profiles import OPEN, Limiter, Profiles

MODELS = {"a": {"served_name": "org/a", "cmd": ["x"]}, "b": {"served_name": "org/b", "cmd": ["x"]}}


def registry(**profiles):
    return parse_registry({"models": MODELS, "profiles": profiles})


def test_keys_from_the_environment_or_a_sha256_and_the_api_key_shorthand():
    reg = registry(
        env={"key_env": "K1", "models": ["org/a"]},
        hashed={"key_sha256": hashlib.sha256(b"secret").hexdigest(), "admin": True},
    )
    p = Profiles(reg, api_key="master", env={"K1": "from-env"})
    assert p.identify(b"Bearer from-env").name == "env"
    assert p.identify(b"Bearer from-env").models == frozenset({"a"})  # ids resolve to registry names
    assert p.identify(b"Bearer secret").admin
    assert p.identify(b"Bearer master").name == "admin"
    assert p.identify(b"Bearer nope") is None and p.identify(b"") is None and p.identify(b"Basic secret") is None


def test_without_profiles_or_key_everyone_is_the_open_profile():
    assert Profiles(registry()).identify(b"") is OPEN


def test_a_missing_key_env_is_a_config_error_naming_it():
    with pytest.raises(ConfigError) as err:
        Profiles(registry(p={"key_env": "NOT_SET_ANYWHERE"}), env={})
    assert "profiles.p.key_env: environment variable NOT_SET_ANYWHERE is not set" in err.value.errors


@pytest.mark.parametrize(
    "profile, error",
    [
        ({"models": ["*"]}, "exactly one of `key_env` and `key_sha256`"),
        ({"key_env": "K", "key_sha256": "0" * 64}, "exactly one of"),
        ({"key_sha256": "not-hex"}, "key_sha256"),
        ({"key_env": "K", "models": ["nope"]}, "profiles.p.models: unknown model 'nope'"),
    ],
)
def test_bad_profiles_are_refused_with_the_reason(profile, error):
    with pytest.raises(ConfigError) as err:
        registry(p=profile)
    assert any(error in e for e in err.value.errors), err.value.errors


def test_limiter_counts_a_sliding_minute_and_concurrency():
    reg = registry(p={"key_env": "K", "requests_per_minute": 2, "max_concurrent": 1})
    who = Profiles(reg, env={"K": "k"}).identify(b"Bearer k")
    lim = Limiter()
    assert lim.admit(who, 0.0) is None
    assert lim.admit(who, 1.0) == 1.0  # one at a time
    lim.release(who)
    assert lim.admit(who, 2.0) is None
    lim.release(who)
    assert lim.admit(who, 30.0) == 30.0  # two in this minute already: the first leaves at 60 s
    assert lim.admit(who, 60.5) is None
