"""Bodies a hostile client sends the gateway's OpenAI routes get a 4xx error body (found by bench/soak.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.gateway.conftest import Gateway, fault_model, start_gateway


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    with start_gateway(tmp_path_factory.mktemp("hostile"), {"alpha": fault_model("org/alpha")}) as gw:
        yield gw


def test_json_nested_too_deeply_gets_400_error_body_and_the_gateway_keeps_serving(gateway: Gateway, tmp_path: Path):
    body = b'{"model": "org/alpha", "x": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    r = gateway.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    assert gateway.chat("org/alpha").status_code == 200
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json", r.text
