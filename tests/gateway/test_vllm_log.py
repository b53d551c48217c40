"""vLLM's start-up lines become `loading` details; an out-of-memory death is recognised."""

from __future__ import annotations

import pytest

from vlmswap.backends.vllm_log import out_of_memory, phase_detail


@pytest.mark.parametrize(
    "line, detail",
    [
        ("INFO 11-02 10:00:01 [default_loader.py:262] Loading weights took 2.31 seconds", "weights loaded in 2.31 s"),
        ("Loading safetensors checkpoint shards:  50% Completed | 1/2 [00:01<00:01,  1.2it/s]", "loading weights 50%"),
        ("INFO [gpu_model_runner.py:1] Model loading took 4.2 GiB and 3.1 seconds", "model loaded: 4.2 GiB in 3.1 s"),
        (
            "INFO [backends.py:1] Dynamo bytecode transform time: 5.67 s",
            "torch.compile: bytecode transformed in 5.67 s",
        ),
        ("INFO [monitor.py:1] torch.compile takes 12.3 s in total", "torch.compile done in 12.3 s"),
        (
            "Capturing CUDA graphs (mixed prefill-decode, PIECEWISE):  40%|####      | 27/67 [00:03<00:04]",
            "capturing CUDA graphs 40%",
        ),
        ("Capturing CUDA graph shapes: 100%|##########| 67/67", "capturing CUDA graphs 100%"),
        (
            "INFO [gpu_model_runner.py:1] Graph capturing finished in 11 secs, took 0.45 GiB",
            "CUDA graphs captured in 11 s",
        ),
        (
            "INFO [core.py:1] init engine (profile, create kv cache, warmup model) took 20.11 seconds",
            "engine initialised in 20.11 s",
        ),
        ("INFO:     Application startup complete.", "application startup complete"),
        ("INFO 11-02 chat template loaded", None),
    ],
)
def test_known_vllm_lines_give_a_detail_and_others_none(line, detail):
    assert phase_detail(line) == detail


def test_out_of_memory_is_recognised_in_the_last_lines():
    assert out_of_memory(["loading", "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2 GiB"])
    assert out_of_memory(
        [
            "ValueError: Free memory on device (3.1/11.6 GiB) on startup is less than desired "
            "GPU memory utilization (0.9, 10.4 GiB)."
        ]
    )
    assert not out_of_memory(["RuntimeError: simulated failure while loading"])
