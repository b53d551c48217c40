"""A registry model's files on the Hugging Face Hub: which repo, whether they are here, how big, and a pull.

Why: vLLM downloads a checkpoint the first time it starts, inside the switch, behind a
"loading" spinner and against `startup_timeout_s`; the transformers worker never downloads
at all. So the files are fetched ahead of time (`vlmswap pull`, `POST /api/models/{name}/pull`)
and a model whose files are missing says so, with its size, instead of failing at start.

Everything goes through huggingface_hub, so `HF_HOME` / `HF_HUB_CACHE`, `HF_ENDPOINT`,
`HF_TOKEN` and `HF_HUB_OFFLINE` mean what they mean everywhere else. A pull takes the files a
server needs to run the checkpoint (configs, tokenizer, chat template, remote code, weights:
safetensors, or .bin only where the repo has no safetensors), not ONNX/GGUF/TF/Flax variants
or README images. Resuming: files already in the cache are skipped; a large file's partial
bytes are kept across pulls and the next pull asks only for the rest (a Range request; see
`_fetch_blob`), and huggingface_hub itself resumes a transfer the network breaks mid-pull.
"""

from __future__ import annotations

import fnmatch
import re
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:
    from vlmswap.config import ModelSpec

# What a server needs to run a checkpoint. Weights: safetensors; .bin/.pt only without them.
NEEDED = ("*.json", "*.safetensors", "*.py", "*.model", "*.tiktoken", "*.txt", "*.jinja")
LEGACY_WEIGHTS = ("*.bin", "*.pt", "*.pth")
# Other runtimes' copies of the same weights, never needed here.
SKIPPED_DIRS = ("onnx", "openvino", "coreml", "gguf", "runs", "tf", "flax")
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
SIZE_LOOKUP_TIMEOUT_S = 3.0
# Files at least this big are downloaded so that a stopped pull resumes them (huggingface_hub
# writes in 10 MB chunks: below that there is nothing to resume).
RESUMABLE_FROM_BYTES = 10 * 1024 * 1024


class PullError(Exception):
    """A pull that could not happen or did not finish; the message is one line fit for a user."""


class PullCancelled(PullError):
    """The pull was asked to stop (`should_stop`); the files finished so far stay in the cache."""


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
    if len(argv) >= 3 and PurePosixPath(argv[0]).name == "vllm" and argv[1] == "serve" \
            and not argv[2].startswith("-"):
        candidate = argv[2]
    else:
        candidate = _flag(argv, "--model")
    if not candidate or "${" in candidate or not _REPO_ID.match(candidate) or Path(candidate).exists():
        return None
    return candidate


def _cache_dir(spec: "ModelSpec") -> str | None:
    """The hub cache the backend reads: the spec's own HF_HUB_CACHE / HF_HOME, else the default."""
    if spec.env.get("HF_HUB_CACHE"):
        return spec.env["HF_HUB_CACHE"]
    if spec.env.get("HF_HOME"):
        return str(Path(spec.env["HF_HOME"]) / "hub")
    return None


def _container_cache(spec: "ModelSpec") -> str | None:
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


def source(spec: "ModelSpec") -> Source | None:
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


def pullable(spec: "ModelSpec") -> Source:
    """The source of a model that `vlmswap pull` can fetch, or PullError saying why not."""
    src = source(spec)
    if src is None:
        raise PullError("needs no download (no Hugging Face repo in its command; set `hf_repo` if it has one)")
    if spec.backend == "docker" and src.cache_dir is None:
        vols = ", ".join(spec.volumes) or "none"
        raise PullError(f"runs in a container with its own Hugging Face cache (volumes: {vols}); bind-mount a host "
                        f"folder onto /root/.cache/huggingface to pull it from here")
    return src


# --- which files, how big -----------------------------------------------------------------

def select(paths: dict[str, int | None]) -> dict[str, int | None]:
    """The files of a repo (path -> size) that a pull fetches; see NEEDED."""
    def skipped(p: str) -> bool:
        return any(part in SKIPPED_DIRS for part in PurePosixPath(p).parts[:-1])

    names = [p for p in paths if not skipped(p)]
    patterns = NEEDED if any(fnmatch.fnmatch(p, "*.safetensors") for p in names) else NEEDED + LEGACY_WEIGHTS
    return {p: paths[p] for p in names if any(fnmatch.fnmatch(PurePosixPath(p).name, pat) for pat in patterns)}


def _remote_files(src: Source, timeout: float | None = None) -> tuple[str, dict[str, int | None]]:
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


def _is_cached(src: Source, path: str) -> bool:
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
        have = {p for p in files if _is_cached(src, p)}
        total = sum(s or 0 for s in files.values())
        return LocalState(len(have) == len(files), total, sum(files[p] or 0 for p in have))
    if not _is_cached(src, "config.json"):
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
            return all(_is_cached(src, s) for s in shards)
    return any(_is_cached(src, w) for w in ("model.safetensors", "pytorch_model.bin"))


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
        try:
            out["size"] = sum(s or 0 for s in _remote_files(src, timeout=SIZE_LOOKUP_TIMEOUT_S)[1].values())
        except Exception:  # offline, unknown repo, gated: the size stays unknown
            pass

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


def missing_weights(spec: "ModelSpec") -> str | None:
    """"not downloaded (N GB)" when `spec` needs hub files that are not in the local cache, else None.

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


# --- the pull -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Progress:
    """One step of a pull: bytes so far of the total, the file under way, files done of all."""

    downloaded_bytes: int
    total_bytes: int
    file: str
    files_done: int
    files_total: int
    done: bool = False


ProgressFn = Callable[[Progress], None]


class _FileBar:
    """What huggingface_hub's http_get needs of a progress bar (a context manager with update());
    it forwards byte counts to the pull instead of drawing anything."""

    def __init__(self, on_bytes: Callable[[int], None], **_kwargs: object):
        self._on_bytes = on_bytes
        initial = int(_kwargs.get("initial") or 0)  # type: ignore[call-overload]
        if initial:
            on_bytes(initial)

    def __enter__(self) -> "_FileBar":
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int | float | None = 1) -> None:
        self._on_bytes(int(n or 0))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def pull(src: Source, on_progress: ProgressFn | None = None, min_interval_s: float = 0.2,
         should_stop: Callable[[], bool] | None = None) -> Path:
    """Download what `src` needs into the hub cache (files already there are skipped); returns the
    snapshot folder. `on_progress` is called from this thread at most every `min_interval_s`, at
    each file's end, and once with done=True. Raises PullError with one line on any failure, and
    PullCancelled soon after `should_stop()` turns true (checked between chunks of the transfer)."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        commit, files = _remote_files(src)
    except RepositoryNotFoundError:
        raise PullError(f"{src.repo}: no such repository on the hub (or it is private: set HF_TOKEN)") from None
    except GatedRepoError:
        raise PullError(f"{src.repo}: gated repository; accept its terms on the hub and set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise PullError(f"{src.repo}: no revision {src.revision!r} on the hub") from None
    except Exception as exc:  # network down (httpx2 errors), hub error, offline mode
        raise PullError(f"{src.repo}: could not list its files on the hub: {_one_line(exc)}") from None
    total = sum(s or 0 for s in files.values())
    todo = [p for p in files if not _is_cached(Source(src.repo, commit, src.cache_dir), p)]
    done_bytes = total - sum(files[p] or 0 for p in todo)
    state = {"bytes": done_bytes, "file": "", "files_done": len(files) - len(todo), "last": 0.0}

    def report(force: bool = False, done: bool = False) -> None:
        now = time.monotonic()
        if on_progress is None or not (force or now - state["last"] >= min_interval_s):
            return
        state["last"] = now
        on_progress(Progress(min(int(state["bytes"]), total), total, str(state["file"]), int(state["files_done"]),
                             len(files), done))

    def check_stop() -> None:
        if should_stop is not None and should_stop():
            raise PullCancelled(f"{src.repo}: stopped; the files finished so far are kept")

    def on_bytes(n: int) -> None:
        check_stop()
        state["bytes"] += n
        report()

    report(force=True)
    for path in todo:
        check_stop()
        state["file"] = path
        before = state["bytes"]
        bar = lambda **kw: _FileBar(on_bytes, **kw)  # noqa: E731 - what huggingface_hub calls as tqdm_class
        try:
            if (files[path] or 0) >= RESUMABLE_FROM_BYTES:
                _fetch_blob(src, commit, path, bar)
            hf_hub_download(src.repo, path, revision=commit, cache_dir=src.cache_dir,
                            tqdm_class=bar)  # type: ignore[arg-type]
        except (PullCancelled, PullError):
            raise
        except Exception as exc:  # HTTP errors, the network gone after its retries, a full disk
            raise PullError(f"{src.repo}: {path}: download failed: {_one_line(exc)}") from None
        state["bytes"] = before + (files[path] or 0)  # exact, whatever a retry counted twice
        state["files_done"] += 1
        report(force=True)
    try:  # records the revision -> commit ref and the file listing, so the cache can be judged offline
        folder = snapshot_download(src.repo, revision=src.revision, cache_dir=src.cache_dir,
                                   allow_patterns=list(files), tqdm_class=_silent_class())
    except Exception as exc:
        raise PullError(f"{src.repo}: could not record the snapshot: {_one_line(exc)}") from None
    state["file"] = ""
    report(force=True, done=True)
    return Path(folder)


def _fetch_blob(src: Source, commit: str, path: str, bar: Callable[..., _FileBar]) -> None:
    """Download one large file into the cache's blob store, resuming the bytes an earlier pull left.

    huggingface_hub resumes a broken transfer only within its process and deletes the partial
    file when the process ends; a stopped pull of a multi-GB shard would start it over. So large
    files go through its `http_get` into `blobs/<etag>.vlmswap.incomplete`, kept across pulls
    (a Range request from its size), checked against the hub's SHA-256, and renamed into place;
    `hf_hub_download` then only links the snapshot to the blob.
    """
    import hashlib
    from urllib.parse import urlsplit

    from filelock import Timeout
    from huggingface_hub import constants, get_hf_file_metadata, hf_hub_url
    from huggingface_hub.file_download import http_get, repo_folder_name
    from huggingface_hub.utils import WeakFileLock, build_hf_headers

    url = hf_hub_url(src.repo, path, revision=commit)
    meta = get_hf_file_metadata(url)
    if not meta.etag or meta.size is None:
        return  # nothing to resume against: hf_hub_download fetches it whole
    blobs = Path(src.cache_dir or constants.HF_HUB_CACHE) / repo_folder_name(repo_id=src.repo, repo_type="model") / "blobs"
    blob = blobs / meta.etag
    if blob.exists():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    partial = blobs / f"{meta.etag}.vlmswap.incomplete"
    headers = build_hf_headers()
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a CDN's signed URL: the hub token is not for it
    try:
        with WeakFileLock(str(partial) + ".lock", timeout=1):
            have = partial.stat().st_size if partial.exists() else 0
            if have > meta.size:
                partial.unlink()
                have = 0
            with partial.open("ab") as f:
                http_get(meta.location, f, resume_size=have, headers=headers, expected_size=meta.size,
                         displayed_filename=path, tqdm_class=bar)  # type: ignore[arg-type]
            if re.fullmatch(r"[0-9a-f]{64}", meta.etag):  # an LFS file's etag is its SHA-256
                digest = hashlib.sha256()
                with partial.open("rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                if digest.hexdigest() != meta.etag:
                    partial.unlink()
                    raise PullError(f"{src.repo}: {path}: the downloaded bytes do not match the hub's SHA-256; "
                                    f"pull again")
            partial.rename(blob)
    except Timeout:
        raise PullError(f"{src.repo}: {path} is being downloaded by another pull") from None


def _silent_class() -> type:
    from huggingface_hub.utils import tqdm as hf_tqdm

    class Silent(hf_tqdm):  # type: ignore[misc, valid-type]
        """huggingface_hub's own bar, never drawn (the final bookkeeping call downloads nothing)."""

        def __init__(self, *args: object, **kwargs: object):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)

    return Silent
