"""Fixtures shared by every area's tests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Messages in English whatever this machine's locale, for this process and every one it starts;
# the tests of the Russian interface ask for it themselves.
os.environ["VLMSWAP_LANG"] = "en"


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight Qwen2-VL checkpoint (tokenizer, processor, chat template, weights),
    built locally once per session; serve it with `vlmswap worker --engine transformers --model DIR`."""
    from vlmswap.devmodels import make_tiny_qwen2vl

    return make_tiny_qwen2vl(tmp_path_factory.mktemp("tiny-qwen2vl"))
