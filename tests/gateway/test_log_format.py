"""`vlmswap serve --log-format json`: every line the gateway writes is one JSON object."""

from __future__ import annotations

import json
from pathlib import Path

from tests.gateway.conftest import fault_model, start_gateway, stop_gateway


def test_json_log_format_writes_only_json_lines_with_time_level_logger_message(tmp_path: Path):
    with start_gateway(
        tmp_path, {"alpha": fault_model("org/alpha")}, "--log-format", "json", "--log-level", "info"
    ) as gw:
        assert gw.chat("org/alpha").status_code == 200
        stop_gateway(gw)
        lines = [line for line in gw.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # fails on any line that is not JSON
    for rec in records:
        assert {"time", "level", "logger", "message"} <= rec.keys(), rec
    started = [r for r in records if r["message"].startswith("vlmswap gateway on")]
    assert started and started[0]["url"] == gw.url and started[0]["models"] == 1
    assert any(r["logger"].startswith("uvicorn") and "Uvicorn running on" in r["message"] for r in records)
    assert any(r["logger"].startswith("uvicorn") and "Shutting down" in r["message"] for r in records)


def test_text_log_format_stays_plain_text(tmp_path: Path):
    with start_gateway(tmp_path, {"alpha": fault_model("org/alpha")}) as gw:
        stop_gateway(gw)
        text = gw.log()
    assert "vlmswap gateway on" in text and not text.lstrip().startswith("{")
