"""The CPU chat model of the default registry (SmolVLM, Idefics3) runs through the transformers
engine: a tiny random-weight Idefics3 with SmolVLM's processor, tiling and chat template, served
by a real worker process and asked by the official `openai` client."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from tests.support import free_port, running, worker_argv
from tests.transformers_engine.conftest import picture
from tests.transformers_engine.test_worker_http import data_url
from vlmswap.registry.config import load_registry
from vlmswap.registry.hub import pullable


@pytest.fixture(scope="module")
def smol_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from vlmswap.devmodels import make_tiny_idefics3

    return make_tiny_idefics3(tmp_path_factory.mktemp("tiny-smolvlm"))


def test_engine_loads_idefics3_and_prompts_through_the_processors_chat_template(smol_dir: Path) -> None:
    from PIL import Image

    from vlmswap.worker.engines.base import Message
    from vlmswap.worker.engines.transformers_engine import TransformersEngine

    eng = TransformersEngine(str(smol_dir), device="cpu")
    eng.load()
    assert type(eng.model).__name__ == "Idefics3ForConditionalGeneration"
    assert type(eng.processor).__name__ == "Idefics3Processor"
    prompt = eng.build_prompt([Message(role="user", text="What is this?", images=[Image.new("RGB", (64, 32))])])
    assert prompt == "<|im_start|>User:<image>What is this?<end_of_utterance>\nAssistant:"


def test_a_worker_serves_it_to_the_openai_client_with_images_tiled(smol_dir: Path, tmp_path: Path) -> None:
    port = free_port()
    argv = worker_argv("transformers", port, "--model", str(smol_dir), "--served-model-name", "smol", "--device", "cpu")
    with running(argv, f"http://127.0.0.1:{port}/health", timeout=180, log_path=tmp_path / "worker.log"):
        client = openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1",
            api_key="unused",
            max_retries=0,
            timeout=60,
            http_client=httpx.Client(trust_env=False),
        )
        usage = {}
        for size in ((224, 112), (224, 224)):  # resized to 64x32 (2x1 tiles), then 64x64 (2x2), each + global view
            r = client.chat.completions.create(
                model="smol",
                max_tokens=6,
                temperature=0,
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": data_url(picture("hi", size=size))}},
                            {"type": "text", "text": "What is written here?"},
                        ],
                    }
                ],
            )
            assert r.choices[0].message.content and r.usage.completion_tokens == 6
            usage[size] = r.usage.prompt_tokens
        # two more tiles, each <fake_token_around_image><row_i_col_j> and 4 <image>, and one more row's "\n"
        assert usage[(224, 224)] - usage[(224, 112)] == 2 * (1 + 1 + 4) + 1
        text = client.chat.completions.create(
            model="smol", max_tokens=4, temperature=0, messages=[{"role": "user", "content": "hello"}]
        )
        assert text.choices[0].message.content


def test_the_default_registry_offers_smolvlm_on_cpu() -> None:
    spec = load_registry().models["smolvlm"]
    assert spec.served_name == "HuggingFaceTB/SmolVLM-256M-Instruct" and "chat" in spec.capabilities
    assert pullable(spec).repo == "HuggingFaceTB/SmolVLM-256M-Instruct"
    assert spec.cmd[spec.cmd.index("--device") + 1] == "cpu" and spec.vram_gb == 0
