"""A local Hugging Face Hub (tests/servers/hub_server.py, a real process) serving the tiny model.

Nothing leaves the machine: HF_ENDPOINT points at the local server and HF_HOME at a fresh
folder per test, for the commands the tests run and for the gateways they start.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

from tests.support import PY, ROOT, free_port, running, worker_cmd

TINY = "test/tiny"
BIG = "test/big"
BIG_BYTES = 24 * 1024 * 1024  # over huggingface_hub's 10 MB download chunk, so a cut can be resumed


@pytest.fixture(scope="session")
def repos(tiny_model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Two repos: the tiny Qwen2-VL with files a pull leaves out (README, an ONNX export), and a
    checkpoint with one 24 MB safetensors file."""
    from safetensors.numpy import save_file

    root = tmp_path_factory.mktemp("hub-repos")
    tiny = root / "tiny"
    shutil.copytree(tiny_model_dir, tiny)
    (tiny / "README.md").write_text("# tiny\n")
    (tiny / "onnx").mkdir()
    (tiny / "onnx" / "model.onnx").write_bytes(os.urandom(4096))
    big = root / "big"
    big.mkdir()
    shutil.copy(tiny_model_dir / "config.json", big / "config.json")
    rng = np.random.default_rng(0)
    save_file({"w": rng.integers(0, 255, BIG_BYTES, dtype=np.uint8)}, str(big / "model.safetensors"))
    return {TINY: tiny, BIG: big}


@dataclass
class Hub:
    url: str
    log_path: Path
    home: Path

    def requests(self) -> list[dict[str, Any]]:
        if not self.log_path.exists():
            return []
        return [json.loads(line) for line in self.log_path.read_text().splitlines() if line.strip()]

    def gets(self, file: str) -> list[dict[str, Any]]:
        return [r for r in self.requests() if r["method"] == "GET" and r["path"].endswith("/" + file)]

    @property
    def env(self) -> dict[str, str]:
        return {
            "HF_ENDPOINT": self.url,
            "HF_HOME": str(self.home),
            "HF_HUB_DISABLE_TELEMETRY": "1",
            "HF_HUB_ETAG_TIMEOUT": "30",
            "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        }


@pytest.fixture
def start_hub(repos: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """Start a hub server with fault flags; HF_* in this test's environment point at it."""
    stack = contextlib.ExitStack()

    def start(*flags: str) -> Hub:
        port = free_port()
        log = tmp_path / f"hub-{port}.jsonl"
        argv = [
            PY,
            "-m",
            "tests.servers.hub_server",
            "--port",
            str(port),
            "--log",
            str(log),
            *[a for repo, folder in repos.items() for a in ("--repo", f"{repo}={folder}")],
            *flags,
        ]
        stack.enter_context(
            running(
                argv, f"http://127.0.0.1:{port}/health", timeout=60, cwd=ROOT, log_path=tmp_path / f"hub-{port}.out"
            )
        )
        hub = Hub(f"http://127.0.0.1:{port}", log, tmp_path / "hf-home")
        for k, v in hub.env.items():
            monkeypatch.setenv(k, v)
        monkeypatch.delenv("HF_HUB_CACHE", raising=False)
        monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
        monkeypatch.delenv("HF_TOKEN", raising=False)
        return hub

    with stack:
        yield start


def worker_model(repo: str, **fields: Any) -> dict[str, Any]:
    """A registry entry for the transformers worker serving hub repo `repo` on CPU."""
    return {
        "served_name": repo,
        "capabilities": ["chat"],
        "startup_timeout_s": 240,
        "cmd": [
            "${PYTHON}",
            "-m",
            "vlmswap",
            "worker",
            "--engine",
            "transformers",
            "--model",
            repo,
            "--device",
            "cpu",
            "--port",
            "${PORT}",
            "--served-model-name",
            "${SERVED_NAME}",
        ],
        **fields,
    }


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    path = tmp_path / "registry.yaml"
    models = {
        "tiny": worker_model(TINY, aliases=["tiny-qwen2vl"]),
        "big": {"served_name": BIG, "cmd": ["vllm", "serve", BIG, "--port", "${PORT}"]},
        "rapidocr": {
            "served_name": "rapidocr",
            "family": "rapidocr",
            "capabilities": ["ocr"],
            "cmd": worker_cmd("rapidocr"),
        },
    }
    path.write_text(yaml.safe_dump({"models": models}), encoding="utf-8")
    return path


def vlmswap(*args: str, timeout: float = 180) -> subprocess.CompletedProcess[str]:
    """`python -m vlmswap ARGS` with this test's environment (HF_* set by start_hub)."""
    return subprocess.run(
        [PY, "-m", "vlmswap", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
