"""What a loading vLLM server is doing, read from its log lines.

vLLM prints its start-up phases (weights, torch.compile, CUDA graph capture, engine init,
the API server) with progress bars; these patterns turn a line into a short `detail` for the
`loading` events, so a user sees which of the minute's steps it is in. Unknown lines give
None and change nothing. Pure; the patterns follow vLLM 0.10-0.12's wording.
"""

from __future__ import annotations

import re

_PERCENT = r"(\d{1,3})%"
_RULES: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"Loading (?:safetensors|pt) checkpoint shards:\s*" + _PERCENT), "loading weights {0}%"),
    (re.compile(r"Loading weights took ([\d.]+) seconds"), "weights loaded in {0} s"),
    (re.compile(r"Model loading took ([\d.]+) GiB(?: memory)? and ([\d.]+) seconds"), "model loaded: {0} GiB in {1} s"),
    (re.compile(r"Dynamo bytecode transform time: ([\d.]+) s"), "torch.compile: bytecode transformed in {0} s"),
    (re.compile(r"torch\.compile takes ([\d.]+) s in total"), "torch.compile done in {0} s"),
    (re.compile(r"Compiling a graph for dynamic shape"), "torch.compile: compiling"),
    (re.compile(r"Capturing CUDA graphs?[^:]*:\s*" + _PERCENT), "capturing CUDA graphs {0}%"),
    (re.compile(r"Graph capturing finished in ([\d.]+) secs?"), "CUDA graphs captured in {0} s"),
    (
        re.compile(r"init engine \(profile, create kv cache, warmup model\) took ([\d.]+) seconds"),
        "engine initialised in {0} s",
    ),
    (re.compile(r"Starting vLLM API server"), "starting the API server"),
    (re.compile(r"Application startup complete"), "application startup complete"),
)

_OOM = re.compile(
    r"CUDA out of memory|torch\.OutOfMemoryError|OutOfMemoryError|out of memory|"
    r"No available memory for the cache blocks|Free memory on device .* is less than desired",
    re.IGNORECASE,
)


def phase_detail(line: str) -> str | None:
    """A short description of the start-up step `line` reports, or None."""
    for pattern, template in _RULES:
        m = pattern.search(line)
        if m:
            return template.format(*m.groups())
    return None


def out_of_memory(lines: list[str]) -> bool:
    """The backend's last lines say it ran out of GPU memory (CUDA OOM, vLLM's free-memory check)."""
    return any(_OOM.search(line) for line in lines)
