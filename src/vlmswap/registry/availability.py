"""Can this model run here? The one answer `vlmswap config show`, `/api/status` and the UI give.

Apart from the registry's schema because it looks at the machine: the GPU, installed extras
and programs, and the model's files in the Hugging Face cache.
"""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

from vlmswap.registry.config import ModelSpec
from vlmswap.registry.hub import missing_weights

NO_GPU = "no GPU found (NVIDIA or AMD)"


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def unavailable_reason(spec: ModelSpec, gpu_present: bool | None = None) -> str | None:
    """Why this model cannot run on this machine, or None when nothing is known against it."""
    if gpu_present is None:
        from vlmswap import gpu

        gpu_present = gpu.probe().available
    if spec.backend == "docker":
        if not _has_module("docker"):
            return "docker extra not installed"
        if spec.gpus and not gpu_present:
            return NO_GPU
        return None if spec.download_on_start else missing_weights(spec)
    argv = spec.cmd or []
    exe = Path(argv[0]).name if argv else ""
    if exe == "vllm":
        if shutil.which("vllm") is None:
            return "vllm not installed"
        if not gpu_present:
            return NO_GPU
    if "worker" in argv and "transformers" in argv:
        if not (_has_module("torch") and _has_module("transformers")):
            return "transformers extra not installed"
        if "cuda" in argv and not gpu_present:  # torch's "cuda" device is ROCm's too
            return NO_GPU
        return missing_weights(spec)  # the worker never downloads, whatever download_on_start says
    elif (
        exe not in ("vllm", "${PYTHON}", "python", "python3")
        and shutil.which(argv[0]) is None
        and not Path(argv[0]).exists()
    ):
        return f"{argv[0]} not found"
    return None if spec.download_on_start else missing_weights(spec)
