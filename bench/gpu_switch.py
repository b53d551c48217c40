"""On a GPU: cold against warm switches between two real-size 2B vision-language models.

Builds random-weight checkpoints of the real sizes of Qwen2-VL-2B (2.2 B parameters) and
Qwen3-VL-2B (2.1 B), bf16, from the architecture values in shared/REFERENCE.md (nothing is
downloaded; the tokenizer and processor are the tiny model's, which is enough for the 1-token
requests a switch bench sends). Both are served by `vlmswap worker --engine transformers
--device cuda`. The manager alternates between them `--switches` times, cold (sleep_mode off:
stop one process, start the other) and warm (sleep_mode on: weights to pinned host RAM and
back), and reads through NVML what each sleeper keeps on the GPU (its residual, per pid).

Goal (issue 9): a warm switch at most 0.25 s (the copy itself takes ~0.11 s, REFERENCE.md).

One call on a lent GPU machine, a few minutes:
  python bench/gpu_switch.py --out $OUT/gpu_switch.json
`--scale tiny --device cpu` runs the same flow on a CPU in a minute (to check the script).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from _gateway_common import PY, machine, median
from gateway_sleep import alternate, gateway_share

GIB = 1024**3

QWEN2_VL_2B = dict(
    text=dict(
        hidden_size=1536,
        num_hidden_layers=28,
        intermediate_size=8960,
        num_attention_heads=12,
        num_key_value_heads=2,
        vocab_size=151936,
        max_position_embeddings=32768,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
    ),
    vision=dict(
        depth=32,
        embed_dim=1280,
        hidden_size=1536,
        num_heads=16,
        mlp_ratio=4,
        patch_size=14,
        spatial_merge_size=2,
        temporal_patch_size=2,
    ),
    tie=True,
)
QWEN3_VL_2B = dict(
    text=dict(
        hidden_size=2048,
        num_hidden_layers=28,
        intermediate_size=6144,
        num_attention_heads=16,
        num_key_value_heads=8,
        head_dim=128,
        vocab_size=151936,
        max_position_embeddings=32768,
        rope_parameters={
            "rope_type": "default",
            "rope_theta": 5000000.0,
            "mrope_section": [24, 20, 20],
            "mrope_interleaved": True,
        },
    ),
    vision=dict(
        depth=24,
        hidden_size=1024,
        intermediate_size=4096,
        num_heads=16,
        patch_size=16,
        out_hidden_size=2048,
        deepstack_visual_indexes=[5, 11, 17],
        spatial_merge_size=2,
        temporal_patch_size=2,
    ),
    tie=True,
)


def shrink(arch: dict[str, Any]) -> dict[str, Any]:
    """The same architecture, a few MB big (for --scale tiny)."""
    text = dict(arch["text"], hidden_size=128, num_hidden_layers=2, intermediate_size=256, vocab_size=1024)
    if "head_dim" in text:
        text.update(head_dim=32, num_attention_heads=4, num_key_value_heads=2)
    else:
        text.update(
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_parameters=dict(text["rope_parameters"], mrope_section=[4, 6, 6]),
        )
    vision = dict(arch["vision"], depth=2, hidden_size=128, num_heads=2)
    if "embed_dim" in vision:
        vision["embed_dim"] = 64
    else:
        vision.update(intermediate_size=256, out_hidden_size=128, deepstack_visual_indexes=[0])
    return dict(arch, text=text, vision=vision)


def build(kind: str, arch: dict[str, Any], tiny: Path, out: Path, device: str) -> Path:
    """A random-weight checkpoint of `arch`, saved in bf16 with the tiny model's processor."""
    import torch
    import transformers

    cls, cfg = {
        "qwen2_vl": ("Qwen2VLForConditionalGeneration", "Qwen2VLConfig"),
        "qwen3_vl": ("Qwen3VLForConditionalGeneration", "Qwen3VLConfig"),
    }[kind]
    tiny_cfg = json.loads((tiny / "config.json").read_text())
    ids = {k: tiny_cfg[k] for k in ("image_token_id", "video_token_id", "vision_start_token_id", "vision_end_token_id")}
    config = getattr(transformers, cfg)(
        text_config=arch["text"], vision_config=arch["vision"], tie_word_embeddings=arch["tie"], **ids
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = getattr(transformers, cls)(config).to(torch.bfloat16)
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    params = sum(p.numel() for p in model.parameters())
    del model
    for name in tiny.iterdir():  # tokenizer, processor, chat template
        if name.name not in ("config.json", "generation_config.json") and not name.name.endswith(".safetensors"):
            (out / name.name).write_bytes(name.read_bytes())
    print(f"built {out.name}: {params / 1e9:.3f} B parameters", flush=True)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--switches", type=int, default=5)
    ap.add_argument("--scale", choices=["real", "tiny"], default="real")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", type=Path, default=None, help="write the numbers as JSON here too")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny"
        subprocess.run(
            [PY, "-m", "vlmswap", "dev", "make-tiny-model", str(tiny)],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        archs = {"qwen2-vl-2b": ("qwen2_vl", QWEN2_VL_2B), "qwen3-vl-2b": ("qwen3_vl", QWEN3_VL_2B)}
        models = {}
        for name, (kind, arch) in archs.items():
            path = build(kind, shrink(arch) if args.scale == "tiny" else arch, tiny, Path(tmp) / name, args.device)
            models[name] = {
                "cmd": [
                    "${PYTHON}",
                    "-m",
                    "vlmswap",
                    "worker",
                    "--engine",
                    "transformers",
                    "--model",
                    str(path),
                    "--device",
                    args.device,
                    "--port",
                    "${PORT}",
                    "--served-model-name",
                    "${SERVED_NAME}",
                ],
                "startup_timeout_s": 600,
                "vram_gb": 6,
            }
        gateway = {"stop_grace_s": 10, "sleep_ram_budget_gb": 64}
        cold = asyncio.run(alternate(models, False, args.switches, Path(tmp) / "cold", gateway))
        warm = asyncio.run(alternate(models, True, args.switches, Path(tmp) / "warm", gateway))
    share = gateway_share(warm["events"])
    result = {
        "machine": machine(),
        "scale": args.scale,
        "device": args.device,
        "switches": args.switches,
        "cold_s": cold["times"],
        "warm_s": warm["times"],
        "gateway_share_s": share,
        "sleeper_residual_bytes": warm["residual"],
    }
    c, w = cold["times"], warm["times"]
    print(f"machine: {result['machine']}")
    print("| | cold switch | warm switch | warm / cold | gateway share (warm) | sleeper's GPU residual |")
    print("|---|---|---|---|---|---|")
    res = f"{median(warm['residual']) / GIB:.2f} GiB" if warm["residual"] else "n/a (no NVML)"
    print(
        f"| {args.scale} 2B pair, {args.device} | {median(c):.2f} s | {median(w):.3f} s "
        f"({min(w):.3f}-{max(w):.3f}) | 1/{median(c) / median(w):.0f} | {median(share) * 1e3:.1f} ms | {res} |"
    )
    print("goal (warm <= 0.25 s):", "met" if median(w) <= 0.25 else "MISSED")
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
