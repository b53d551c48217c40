"""A registry model's files on the Hugging Face Hub: which repo, which files, whether they are here, how big.

Why: vLLM downloads a checkpoint the first time it starts, inside the switch, behind a
"loading" spinner and against `startup_timeout_s`; the transformers worker never downloads
at all. So the files are fetched ahead of time (`vlmswap pull`, `POST /api/models/{name}/pull`)
and a model whose files are missing says so, with its size, instead of failing at start.

Everything goes through huggingface_hub, so `HF_HOME` / `HF_HUB_CACHE`, `HF_ENDPOINT`,
`HF_TOKEN` and `HF_HUB_OFFLINE` mean what they mean everywhere else. A pull takes the files a
server needs to run the checkpoint (configs, tokenizer, chat template, remote code, weights:
safetensors, or .bin only where the repo has no safetensors), not ONNX/GGUF/TF/Flax variants
or README images. The download itself is `vlmswap.registry.download`.
"""

from __future__ import annotations

import contextlib
import fnmatch
import re
import threading
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from vlmswap.registry.config import ModelSpec

# What a server needs to run a checkpoint. Weights: safetensors; .bin/.pt only without them.
NEEDED = ("*.json", "*.safetensors", "*.py", "*.model", "*.tiktoken", "*.txt", "*.jinja")
LEGACY_WEIGHTS = ("*.bin", "*.pt", "*.pth")
# Other runtimes' copies of the same weights, never needed here.
SKIPPED_DIRS = ("onnx", "openvino", "coreml", "gguf", "runs", "tf", "flax")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SIZE_LOOKUP_TIMEOUT_S = 3.0


class PullError(Exception):
    """A pull that could not happen or did not finish; the message is one line fit for a user."""


# --- which repo ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """Where a model's files come from and where they go: repo, revision, cache folder (None: default)."""

    repo: str
    revision: str = "main"
    cache_dir: str | None = None


def _flag(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def repo_from_argv(argv: list[str]) -> str | None:
    """The hub repo a command line serves: `vllm serve REPO` or `--model REPO` (None: a local path,
    a ${VARIABLE}, or no model named)."""
    candidate = None
    if len(argv) >= 3 and PurePosixPath(argv[0]).name == "vllm" and argv[1] == "serve" and not argv[2].startswith("-"):
        candidate = argv[2]
    else:
        candidate = _flag(argv, "--model")
    if not candidate or "${" in candidate or not _REPO_ID.match(candidate) or Path(candidate).exists():
        return None
    return candidate


def _cache_dir(spec: ModelSpec) -> str | None:
    """The hub cache the backend reads: the spec's own HF_HUB_CACHE / HF_HOME, else the default."""
    if spec.env.get("HF_HUB_CACHE"):
        return spec.env["HF_HUB_CACHE"]
    if spec.env.get("HF_HOME"):
        return str(Path(spec.env["HF_HOME"]) / "hub")
    return None


def _container_cache(spec: ModelSpec) -> str | None:
    """A docker model's hub cache as a host folder: a bind mount onto the container's HF cache."""
    for host, inside in spec.volumes.items():
        inside = inside.split(":")[0].rstrip("/")
        if not host.startswith("/"):
            continue  # a named volume: not a folder vlmswap can write from here
        if inside.endswith("/.cache/huggingface"):
            return str(Path(host) / "hub")
        if inside.endswith("/.cache/huggingface/hub"):
            return host
    return None


def source(spec: ModelSpec) -> Source | None:
    """Where `spec`'s files come from, or None when it needs no download (the embedded engine,
    a local folder). `hf_repo` in the registry wins over the command line."""
    argv = (spec.cmd if spec.backend == "process" else spec.command) or []
    repo = spec.hf_repo or repo_from_argv(argv)
    if repo is None:
        return None
    revision = _flag(argv, "--revision") or "main"
    if "${" in revision:
        revision = "main"
    return Source(repo, revision, _cache_dir(spec) if spec.backend == "process" else _container_cache(spec))


def pullable(spec: ModelSpec) -> Source:
    """The source of a model that `vlmswap pull` can fetch, or PullError saying why not."""
    src = source(spec)
    if src is None:
        raise PullError("needs no download (no Hugging Face repo in its command; set `hf_repo` if it has one)")
    if spec.backend == "docker" and src.cache_dir is None:
        vols = ", ".join(spec.volumes) or "none"
        raise PullError(
            f"runs in a container with its own Hugging Face cache (volumes: {vols}); bind-mount a host "
            f"folder onto /root/.cache/huggingface to pull it from here"
        )
    return src


# --- which files, how big -----------------------------------------------------------------


def select(paths: dict[str, int | None]) -> dict[str, int | None]:
    """The files of a repo (path -> size) that a pull fetches; see NEEDED."""

    def skipped(p: str) -> bool:
        return any(part in SKIPPED_DIRS for part in PurePosixPath(p).parts[:-1])

    names = [p for p in paths if not skipped(p)]
    patterns = NEEDED if any(fnmatch.fnmatch(p, "*.safetensors") for p in names) else NEEDED + LEGACY_WEIGHTS
    return {p: paths[p] for p in names if any(fnmatch.fnmatch(PurePosixPath(p).name, pat) for pat in patterns)}


def remote_files(src: Source, timeout: float | None = None) -> tuple[str, dict[str, int | None]]:
    """(commit, path -> size) of the selected files, from the hub (network)."""
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    api = HfApi()
    info = api.repo_info(src.repo, revision=src.revision, timeout=timeout)
    commit = info.sha or src.revision
    tree = api.list_repo_tree(src.repo, revision=commit, recursive=True)
    return commit, select({f.path: f.size for f in tree if isinstance(f, RepoFile)})


def _cached_files(src: Source) -> dict[str, int | None] | None:
    """path -> size of the selected files from the tree listing a pull left in the cache (no network)."""
    from huggingface_hub import get_cached_repo_tree

    try:
        tree = get_cached_repo_tree(src.repo, revision=src.revision, cache_dir=src.cache_dir)
    except Exception:  # CachedRepoTreeNotFoundError, no ref, unreadable cache
        return None
    return select({f.path: f.size for f in tree})


def is_cached(src: Source, path: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(src.repo, path, cache_dir=src.cache_dir, revision=src.revision), str)


@dataclass(frozen=True)
class LocalState:
    """What the local cache holds of a model: complete or not, and the sizes when known."""

    complete: bool
    total_bytes: int | None = None
    have_bytes: int = 0


def local_state(src: Source) -> LocalState:
    """Whether every file a pull would fetch is in the cache. No network: the file list is the one
    the last pull cached; without it, a checkpoint counts as complete when its config and every
    weight file its index names are there (what an `hf download` or vLLM's own download leave)."""
    files = _cached_files(src)
    if files is not None:
        have = {p for p in files if is_cached(src, p)}
        total = sum(s or 0 for s in files.values())
        return LocalState(len(have) == len(files), total, sum(files[p] or 0 for p in have))
    if not is_cached(src, "config.json"):
        return LocalState(False)
    return LocalState(_weights_complete(src))


def local_snapshot(src: Source) -> Path | None:
    """The snapshot folder of a complete local copy of `src` (see `local_state`), or None. What
    the transformers worker loads: a whole-snapshot check would also want the README and ONNX
    files a pull leaves out."""
    from huggingface_hub import try_to_load_from_cache

    config = try_to_load_from_cache(src.repo, "config.json", cache_dir=src.cache_dir, revision=src.revision)
    if not isinstance(config, str) or not local_state(src).complete:
        return None
    return Path(config).parent


def _weights_complete(src: Source) -> bool:
    import json

    from huggingface_hub import try_to_load_from_cache

    for index in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        path = try_to_load_from_cache(src.repo, index, cache_dir=src.cache_dir, revision=src.revision)
        if isinstance(path, str):
            try:
                shards = set(json.loads(Path(path).read_text(encoding="utf-8"))["weight_map"].values())
            except (OSError, ValueError, KeyError):
                return False
            return all(is_cached(src, s) for s in shards)
    return any(is_cached(src, w) for w in ("model.safetensors", "pytorch_model.bin"))


@lru_cache(maxsize=256)
def _remote_size(src: Source, endpoint: str) -> int | None:
    """Bytes a pull of `src` fetches, asked of the hub at `endpoint` once per process; None when
    offline or unreachable within SIZE_LOOKUP_TIMEOUT_S (a thread, so a stalled network cannot
    hold `config show` or a switch)."""
    from huggingface_hub import constants

    if constants.is_offline_mode():
        return None
    out: dict[str, int] = {}

    def ask() -> None:
        with contextlib.suppress(Exception):  # offline, unknown repo, gated: the size stays unknown
            out["size"] = sum(s or 0 for s in remote_files(src, timeout=SIZE_LOOKUP_TIMEOUT_S)[1].values())

    t = threading.Thread(target=ask, name="vlmswap-hub-size", daemon=True)
    t.start()
    t.join(SIZE_LOOKUP_TIMEOUT_S)
    return out.get("size")


def size_bytes(src: Source) -> int | None:
    """Bytes of the files a pull fetches: from the cached listing, else from the hub, else None."""
    files = _cached_files(src)
    if files is not None:
        return sum(s or 0 for s in files.values())
    from huggingface_hub import constants

    return _remote_size(src, constants.ENDPOINT)


def fmt_size(n: int | None) -> str:
    if n is None:
        return "size unknown"
    if n >= 1e9:
        return f"{n / 1e9:.1f} GB"
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.0f} kB"


def missing_weights(spec: ModelSpec) -> str | None:
    """ "not downloaded (N GB)" when `spec` needs hub files that are not in the local cache, else None.

    Reads the cache; asks the hub only for the size when nothing of the model is cached (once
    per process, bounded). A docker model without a bind-mounted cache is not judged (None):
    its cache lives in a volume vlmswap cannot see. Whether a missing model may still start
    (`download_on_start`) is the caller's call.
    """
    src = source(spec)
    if src is None or (spec.backend == "docker" and src.cache_dir is None):
        return None
    state = local_state(src)
    if state.complete:
        return None
    total = state.total_bytes if state.total_bytes is not None else size_bytes(src)
    if state.have_bytes and total:
        return f"not downloaded ({fmt_size(state.have_bytes)} of {fmt_size(total)} here)"
    return f"not downloaded ({fmt_size(total)})"
