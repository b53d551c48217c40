"""The tiny Qwen2-VL is a real Qwen2-VL checkpoint: Auto classes load it, its tokenizer knows
Qwen2-VL's special tokens, its chat template places images, and it is reproducible."""

from __future__ import annotations

import hashlib
import subprocess
from pathlib import Path

from tests.support import PY
from vlmswap.devmodels import SPECIAL_TOKENS, make_tiny_qwen2vl


def _digest(path: Path) -> str:
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_loads_through_the_auto_classes_as_qwen2vl(tiny_model_dir: Path) -> None:
    from transformers import AutoModelForImageTextToText, AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)
    model = AutoModelForImageTextToText.from_pretrained(tiny_model_dir, local_files_only=True)
    assert type(processor).__name__ == "Qwen2VLProcessor"
    assert type(processor.image_processor).__name__.startswith("Qwen2VLImageProcessor")
    assert type(processor.video_processor).__name__ == "Qwen2VLVideoProcessor"
    assert type(model).__name__ == "Qwen2VLForConditionalGeneration"
    assert sum(p.numel() for p in model.parameters()) < 2_000_000
    tok = processor.tokenizer
    for token in SPECIAL_TOKENS:
        assert tok.convert_tokens_to_ids(token) != tok.unk_token_id or token == tok.unk_token
        assert tok.tokenize(f"ab{token}cd").count(token) == 1, token
    assert model.config.image_token_id == tok.convert_tokens_to_ids("<|image_pad|>")
    assert model.config.vision_start_token_id == tok.convert_tokens_to_ids("<|vision_start|>")


def test_chat_template_expands_one_image_into_its_patch_tokens(tiny_model_dir: Path) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_model_dir, local_files_only=True)
    conversation = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Read it."}]}]
    prompt = processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
    assert prompt == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
        "<|vision_start|><|image_pad|><|vision_end|>Read it.<|im_end|>\n<|im_start|>assistant\n"
    )
    inputs = processor(text=prompt, images=[Image.new("RGB", (224, 112), "white")], return_tensors="pt")
    t, h, w = inputs["image_grid_thw"][0].tolist()
    assert (t, h, w) == (1, 8, 16)  # 112/14 x 224/14 patches
    n_pad = (inputs["input_ids"][0] == processor.tokenizer.convert_tokens_to_ids("<|image_pad|>")).sum().item()
    assert n_pad == h * w // 4  # 2x2 patches merge into one token


def test_same_seed_same_weights_other_seed_other_weights(tiny_model_dir: Path, tmp_path: Path) -> None:
    again = make_tiny_qwen2vl(tmp_path / "again", seed=0)
    other = make_tiny_qwen2vl(tmp_path / "other", seed=1)
    assert _digest(again) == _digest(tiny_model_dir)
    assert _digest(other) != _digest(tiny_model_dir)


def test_cli_writes_a_checkpoint_and_refuses_a_file(tmp_path: Path) -> None:
    out = tmp_path / "cli-model"
    done = subprocess.run(
        [PY, "-m", "vlmswap", "dev", "make-tiny-model", str(out)], capture_output=True, text=True, timeout=180
    )
    assert done.returncode == 0, done.stderr
    assert str(out) in done.stdout
    for name in ("config.json", "model.safetensors", "tokenizer.json", "processor_config.json", "chat_template.jinja"):
        assert (out / name).is_file(), name
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    bad = subprocess.run(
        [PY, "-m", "vlmswap", "dev", "make-tiny-model", str(a_file)], capture_output=True, text=True, timeout=60
    )
    assert bad.returncode == 2
    assert bad.stderr.strip() == f"{a_file}: exists and is not a folder"
