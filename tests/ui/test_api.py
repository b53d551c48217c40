"""The UI's gateway client against the real gateway: phases in order, errors as sentences."""

from __future__ import annotations

import time

import pytest
import yaml

from tests.support import PY, free_port, running
from tests.ui.helpers import FAILURE_LINE, worker_cmd
from vlmswap.ui.api import Gateway, GatewayError, GatewayUnreachable
from vlmswap.ui.view import PHASES


def test_switch_reports_phases_in_order_and_evicts_the_resident(gateway):
    gw = Gateway(gateway.url)
    seen: list[tuple[str, float]] = []
    first = gw.switch("ocr-a", lambda phase, elapsed, _msg, _eta: seen.append((phase, elapsed)))
    assert first.ok and first.state == "ready" and gateway.resident() == "ocr-a"
    seen.clear()
    second = gw.switch("ocr-b", lambda phase, elapsed, _msg, _eta: seen.append((phase, elapsed)))
    assert second.ok and gateway.resident() == "ocr-b"
    phases = list(dict.fromkeys(p for p, _ in seen))
    assert {"stopping", "starting", "loading"} <= set(phases)
    assert phases == sorted(phases, key=PHASES.index)  # never backwards
    times = [t for _, t in seen]
    assert times == sorted(times)  # elapsed time only grows


def test_switch_to_the_resident_model_returns_at_once(gateway):
    gw = Gateway(gateway.url)
    assert gw.switch("ocr-a").ok
    t0 = time.monotonic()
    again = gw.switch("ocr-a")
    assert again.ok and time.monotonic() - t0 < 2.0


def test_failed_switch_carries_the_error_and_log_lines(gateway):
    result = Gateway(gateway.url).switch("broken")
    assert not result.ok and result.state == "failed"
    assert result.error and FAILURE_LINE in result.log_tail
    # A second try waits for its own start to fail, not for the first failure's state.
    starts = gateway.status()["models"]["broken"]["starts"]
    again = Gateway(gateway.url).switch("broken")
    assert not again.ok and FAILURE_LINE in again.log_tail
    assert gateway.status()["models"]["broken"]["starts"] == starts + 1


def test_unknown_model_is_the_gateways_own_message(gateway):
    with pytest.raises(GatewayError) as err:
        list(Gateway(gateway.url).chat_stream("no-such-model", [{"role": "user", "content": "hi"}]))
    assert err.value.status == 404 and "no-such-model" in err.value.message


def test_unreachable_gateway_names_the_command_that_starts_it():
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(GatewayUnreachable) as err:
        Gateway(url).status()
    assert url in err.value.message and "vlmswap serve" in err.value.message
    with pytest.raises(GatewayUnreachable):
        list(Gateway(url).chat_stream("x", []))


def test_api_key_from_the_environment_is_sent(tmp_path, monkeypatch):
    reg = tmp_path / "registry.yaml"
    reg.write_text(
        yaml.safe_dump(
            {
                "models": {
                    "ocr-a": {
                        "served_name": "ocr-a",
                        "cmd": worker_cmd("rapidocr"),
                        "family": "rapidocr",
                        "capabilities": ["ocr"],
                    }
                }
            }
        )
    )
    port = free_port()
    argv = [PY, "-m", "vlmswap", "serve", "--config", str(reg), "--port", str(port), "--api-key", "s3cret"]
    with running(
        argv,
        f"http://127.0.0.1:{port}/health",
        timeout=60,
        log_path=tmp_path / "gw.log",
        env={"VLMSWAP_STATE_DIR": str(tmp_path / "state")},
    ):
        gw = Gateway(f"http://127.0.0.1:{port}")
        monkeypatch.delenv("VLMSWAP_API_KEY", raising=False)
        with pytest.raises(GatewayError) as err:
            gw.status()
        assert err.value.status == 401 and "API key" in err.value.message
        monkeypatch.setenv("VLMSWAP_API_KEY", "s3cret")
        assert "ocr-a" in gw.status()["models"]
