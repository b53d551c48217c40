"""Which repo a registry model needs, which of its files a pull takes, and where they go."""

from __future__ import annotations

import pytest

from vlmswap.registry.config import load_registry, parse_registry
from vlmswap.registry.hub import PullError, Source, pullable, repo_from_argv, select, source


def _spec(**fields):
    return parse_registry({"models": {"m": {"served_name": "m", **fields}}}).models["m"]


@pytest.mark.parametrize(
    "argv, repo",
    [
        (["vllm", "serve", "Qwen/Qwen2-VL-2B-Instruct", "--port", "${PORT}"], "Qwen/Qwen2-VL-2B-Instruct"),
        (["/opt/bin/vllm", "serve", "org/m", "--model", "ignored/x"], "org/m"),
        (["${PYTHON}", "-m", "vlmswap", "worker", "--engine", "transformers", "--model", "org/m"], "org/m"),
        (["--model=org/m", "--port", "8000"], "org/m"),
        (["vllm", "serve", "${MODEL}"], None),
        (["${PYTHON}", "-m", "vlmswap", "worker", "--engine", "transformers", "--model", "/models/local"], None),
        (["${PYTHON}", "-m", "vlmswap", "worker", "--engine", "rapidocr"], None),
    ],
)
def test_repo_from_the_command_line(argv, repo):
    assert repo_from_argv(argv) == repo


def test_hf_repo_wins_and_revision_and_cache_come_from_the_spec():
    spec = _spec(
        cmd=["vllm", "serve", "/local/ckpt", "--revision", "v2"], hf_repo="org/real", env={"HF_HOME": "/data/hf"}
    )
    assert source(spec) == Source("org/real", "v2", "/data/hf/hub")


def test_docker_models_pull_into_a_bind_mounted_cache_only():
    base = {"backend": "docker", "image": "vllm/vllm-openai", "port": 8000, "command": ["--model", "org/m"]}
    mounted = _spec(**base, volumes={"/srv/hf": "/root/.cache/huggingface"})
    assert source(mounted) == Source("org/m", "main", "/srv/hf/hub")
    with pytest.raises(PullError, match="own Hugging Face cache"):
        pullable(_spec(**base, volumes={"vlmswap-hf-cache": "/root/.cache/huggingface"}))


def test_a_pull_takes_configs_tokenizer_code_and_one_weight_format():
    files = {
        "config.json": 1,
        "model-00001-of-00002.safetensors": 5,
        "model-00002-of-00002.safetensors": 5,
        "model.safetensors.index.json": 1,
        "pytorch_model.bin": 9,
        "tokenizer.json": 2,
        "vocab.txt": 1,
        "modeling_x.py": 1,
        "chat_template.jinja": 1,
        "tokenizer.model": 1,
        "README.md": 1,
        ".gitattributes": 1,
        "onnx/model.onnx": 9,
        "onnx/config.json": 1,
        "model.gguf": 9,
        "images/fig.png": 3,
    }
    assert set(select(files)) == {
        "config.json",
        "model-00001-of-00002.safetensors",
        "model-00002-of-00002.safetensors",
        "model.safetensors.index.json",
        "tokenizer.json",
        "vocab.txt",
        "modeling_x.py",
        "chat_template.jinja",
        "tokenizer.model",
    }
    assert "pytorch_model.bin" in select({"config.json": 1, "pytorch_model.bin": 9})  # no safetensors: .bin


def test_every_default_model_but_the_embedded_engine_names_its_repo():
    reg = load_registry()
    for name, spec in reg.models.items():
        if name == "rapidocr":
            with pytest.raises(PullError, match="needs no download"):
                pullable(spec)
        else:
            assert pullable(spec).repo == spec.served_name.removesuffix("@transformers"), name
