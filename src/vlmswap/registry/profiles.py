"""Who is asking: named client profiles with their keys, models, priority and limits, and their usage.

A profile's key is never in the registry file: it comes from an environment variable named
by `key_env`, or only its SHA-256 is written (`key_sha256`); either way the gateway keeps
digests and compares them in constant time, and no key is ever logged. The single
`--api-key` is a shorthand for one admin profile. Without profiles and without a key the
gateway is open (and bound to loopback), as before.
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from vlmswap.registry.config import ConfigError, Registry

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Identity:
    """A signed-in profile, as the routes see it."""

    name: str
    admin: bool
    models: frozenset[str] | None  # registry names it may use; None: all
    priority: int = 0
    max_concurrent: int | None = None
    requests_per_minute: int | None = None

    def may_use(self, model: str) -> bool:
        return self.models is None or model in self.models


OPEN = Identity(ANONYMOUS, admin=True, models=None)
"""No profiles and no key: everyone may do everything (the gateway then listens on loopback only)."""


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


class Profiles:
    """The registry's profiles (and `--api-key`), looked up by the key a request presents."""

    def __init__(self, registry: Registry, api_key: str | None = None, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        self._keys: list[tuple[bytes, Identity]] = []
        errors = []
        for name, p in registry.profiles.items():
            if p.key_env is not None:
                key = env.get(p.key_env)
                if not key:
                    errors.append(f"profiles.{name}.key_env: environment variable {p.key_env} is not set")
                    continue
                d = digest(key)
            else:
                assert p.key_sha256 is not None
                d = bytes.fromhex(p.key_sha256)
            models = None if "*" in p.models else frozenset(registry.require(m) for m in p.models)
            self._keys.append((d, Identity(name, p.admin, models, p.priority, p.max_concurrent, p.requests_per_minute)))
        if errors:
            raise ConfigError("profiles", errors)
        if api_key:
            self._keys.append((digest(api_key), Identity("admin", admin=True, models=None)))

    @property
    def enabled(self) -> bool:
        return bool(self._keys)

    def named(self, name: str) -> Identity | None:
        """The profile called `name` (a document job's owner, after a restart); without profiles, the open one."""
        if not self._keys:
            return OPEN if name == OPEN.name else None
        return next((who for _, who in self._keys if who.name == name), None)

    def identify(self, authorization: bytes) -> Identity | None:
        """The profile whose key is in `Authorization: Bearer KEY`; None for no or a wrong key."""
        if not self._keys:
            return OPEN
        scheme, _, key = authorization.partition(b" ")
        if scheme.lower() != b"bearer" or not key:
            return None
        d = hashlib.sha256(key.strip()).digest()
        found = None
        for known, identity in self._keys:  # every digest compared: the time says nothing about which
            if hmac.compare_digest(d, known):
                found = identity
        return found


@dataclass
class _Window:
    times: collections.deque[float] = field(default_factory=collections.deque)
    in_flight: int = 0


class Limiter:
    """Per profile: `requests_per_minute` (a sliding minute) and `max_concurrent`."""

    def __init__(self) -> None:
        self._state: dict[str, _Window] = collections.defaultdict(_Window)

    def admit(self, who: Identity, now: float) -> float | None:
        """None: admitted (release() when done); else seconds until it would be."""
        if who.requests_per_minute is None and who.max_concurrent is None:
            return None  # nothing to count
        w = self._state[who.name]
        while w.times and now - w.times[0] >= 60.0:
            w.times.popleft()
        if who.requests_per_minute is not None and len(w.times) >= who.requests_per_minute:
            return max(1.0, math.ceil(60.0 - (now - w.times[0])))
        if who.max_concurrent is not None and w.in_flight >= who.max_concurrent:
            return 1.0
        w.times.append(now)
        w.in_flight += 1
        return None

    def release(self, who: Identity) -> None:
        if who.requests_per_minute is not None or who.max_concurrent is not None:
            self._state[who.name].in_flight -= 1


@dataclass
class UsageCounts:
    requests: int = 0
    tokens: int = 0
    gpu_seconds: float = 0.0


class Usage:
    """Requests, tokens and the seconds a model was held for each profile (`/api/usage`, `/metrics`)."""

    def __init__(self) -> None:
        self.by_profile: dict[str, UsageCounts] = collections.defaultdict(UsageCounts)

    def record(self, who: str, *, tokens: int = 0, gpu_seconds: float = 0.0) -> None:
        u = self.by_profile[who]
        u.requests += 1
        u.tokens += tokens
        u.gpu_seconds += gpu_seconds

    def to_dict(self) -> dict[str, dict[str, float | int]]:
        return {
            name: {"requests": u.requests, "tokens": u.tokens, "gpu_seconds": round(u.gpu_seconds, 3)}
            for name, u in sorted(self.by_profile.items())
        }
