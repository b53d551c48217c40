"""`vlmswap worker`: options, served name, one-line errors."""

from __future__ import annotations

import subprocess

import httpx

from tests.support import PY, free_port, running, worker_argv
from tests.worker.conftest import chat_body


def test_transformers_engine_without_model_exits_2_with_one_line() -> None:
    r = subprocess.run(
        [PY, "-m", "vlmswap", "worker", "--engine", "transformers", "--port", str(free_port())],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "--model" in lines[0], r.stderr


def test_help_lists_the_options() -> None:
    r = subprocess.run(
        [PY, "-m", "vlmswap", "worker", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={"COLUMNS": "200", "TERM": "dumb", "PATH": "/usr/bin:/bin"},
    )
    assert r.returncode == 0
    for opt in (
        "--engine",
        "--model",
        "--port",
        "--host",
        "--served-model-name",
        "--device",
        "--trust-remote-code",
        "--max-body-mb",
        "--max-pixels",
        "--threads",
    ):
        assert opt in r.stdout, opt


def test_served_model_name_is_what_clients_must_send(tmp_path) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with running(
        worker_argv("rapidocr", port, "--served-model-name", "house-ocr"), url + "/health", log_path=tmp_path / "w.log"
    ):
        assert [m["id"] for m in httpx.get(url + "/v1/models", trust_env=False).json()["data"]] == ["house-ocr"]
        r = httpx.post(url + "/v1/chat/completions", json=chat_body(None, "hi", model="rapidocr"), trust_env=False)
        assert r.status_code == 404 and "house-ocr" in r.json()["error"]["message"]
