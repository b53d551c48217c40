"""The web UI with a model whose files are missing: its size, a Pull button, progress, then Switch;
and a Chat page that says how to get a chat model. Streamlit's AppTest against a real gateway."""

from __future__ import annotations

import time
from pathlib import Path

import vlmswap
from tests.gateway.conftest import rapidocr_model, start_gateway
from tests.hub.conftest import TINY, worker_model
from tests.ui.helpers import APP_FILE


def texts(elements) -> str:
    return "\n".join(str(e.value) for e in elements)


def test_pull_button_fetches_the_files_and_enables_switch_and_chat_says_how(start_hub, tmp_path: Path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    start_hub("--rate", "150000")  # ~6 s: the pull's progress can be seen
    with start_gateway(tmp_path / "gw", {"tiny": worker_model(TINY), "rapidocr": rapidocr_model()}) as gw:
        monkeypatch.setenv("VLMSWAP_GATEWAY_URL", gw.url)
        at = AppTest.from_file(str(APP_FILE), default_timeout=120)
        at.run()
        assert not at.exception, at.exception
        assert ":material/cloud_download: not downloaded (0.9 MB)" in texts(at.sidebar.caption)
        assert at.sidebar.button(key="switch_tiny").disabled

        at.switch_page("chat_page.py")
        at.run()
        hint = texts(at.info)
        assert "**tiny** can once its files are here (0.9 MB)" in hint and "`vlmswap pull tiny`" in hint

        at.sidebar.button(key="pull_tiny").click()
        at.run()
        assert not at.exception, at.exception
        bars = [e.proto.text for e in at.sidebar.get("progress")]
        assert any(t.startswith("Pulling: ") for t in bars), bars
        client = vlmswap.Client(gw.url)
        deadline = time.monotonic() + 60
        while not client.pull_status("tiny").get("ok"):
            assert time.monotonic() < deadline, client.pull_status("tiny")
            time.sleep(0.1)
        at.run()
        assert ":material/download_done: Downloaded (0.9 MB)" in texts(at.sidebar.caption)
        assert not at.sidebar.button(key="switch_tiny").disabled
