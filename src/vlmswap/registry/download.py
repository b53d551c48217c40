"""The download of a registry model's files into the Hugging Face cache, with progress and resume.

`vlmswap pull` and the gateway's pull route call `pull()`; `vlmswap.registry.hub` says what to fetch.
Resuming: files already in the cache are skipped; a large file's partial bytes are kept across
pulls and the next pull asks only for the rest (a Range request; see `_fetch_blob`), and
huggingface_hub itself resumes a transfer the network breaks mid-pull.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from vlmswap.registry.hub import PullError, Source, is_cached, local_snapshot, remote_files

# Files at least this big are downloaded so that a stopped pull resumes them (huggingface_hub
# writes in 10 MB chunks: below that there is nothing to resume).
RESUMABLE_FROM_BYTES = 10 * 1024 * 1024


class PullCancelled(PullError):
    """The pull was asked to stop (`should_stop`); the files finished so far stay in the cache."""


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

    def __enter__(self) -> _FileBar:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self, n: int | float | None = 1) -> None:
        self._on_bytes(int(n or 0))


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def pull(
    src: Source,
    on_progress: ProgressFn | None = None,
    min_interval_s: float = 0.2,
    should_stop: Callable[[], bool] | None = None,
) -> Path:
    """Download what `src` needs into the hub cache (files already there are skipped); returns the
    snapshot folder. With the hub out of reach, a complete cached copy is the answer.
    `on_progress` is called from this thread at most every `min_interval_s`, at
    each file's end, and once with done=True. Raises PullError with one line on any failure, and
    PullCancelled soon after `should_stop()` turns true (checked between chunks of the transfer)."""
    from huggingface_hub import hf_hub_download, snapshot_download
    from huggingface_hub.errors import (
        GatedRepoError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    try:
        commit, files = remote_files(src)
    except RepositoryNotFoundError:
        raise PullError(f"{src.repo}: no such repository on the hub (or it is private: set HF_TOKEN)") from None
    except GatedRepoError:
        raise PullError(f"{src.repo}: gated repository; accept its terms on the hub and set HF_TOKEN") from None
    except RevisionNotFoundError:
        raise PullError(f"{src.repo}: no revision {src.revision!r} on the hub") from None
    except Exception as exc:  # network down (httpx2 errors), hub error, offline mode
        folder = local_snapshot(src)
        if folder is None:
            raise PullError(f"{src.repo}: could not list its files on the hub: {_one_line(exc)}") from None
        if on_progress is not None:  # offline, but nothing is missing: the pull has nothing to do
            on_progress(Progress(0, 0, "", 0, 0, done=True))
        return folder
    total = sum(s or 0 for s in files.values())
    todo = [p for p in files if not is_cached(Source(src.repo, commit, src.cache_dir), p)]
    done_bytes = total - sum(files[p] or 0 for p in todo)
    state = {"bytes": done_bytes, "file": "", "files_done": len(files) - len(todo), "last": 0.0}

    def report(force: bool = False, done: bool = False) -> None:
        now = time.monotonic()
        if on_progress is None or not (force or now - state["last"] >= min_interval_s):
            return
        state["last"] = now
        on_progress(
            Progress(
                min(int(state["bytes"]), total), total, str(state["file"]), int(state["files_done"]), len(files), done
            )
        )

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
            hf_hub_download(src.repo, path, revision=commit, cache_dir=src.cache_dir, tqdm_class=bar)  # type: ignore[arg-type]
        except (PullCancelled, PullError):
            raise
        except Exception as exc:  # HTTP errors, the network gone after its retries, a full disk
            raise PullError(f"{src.repo}: {path}: download failed: {_one_line(exc)}") from None
        state["bytes"] = before + (files[path] or 0)  # exact, whatever a retry counted twice
        state["files_done"] += 1
        report(force=True)
    try:  # records the revision -> commit ref and the file listing, so the cache can be judged offline
        folder = snapshot_download(
            src.repo,
            revision=src.revision,
            cache_dir=src.cache_dir,
            allow_patterns=list(files),
            tqdm_class=_silent_class(),
        )
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
    cache, folder = Path(src.cache_dir or constants.HF_HUB_CACHE), repo_folder_name(repo_id=src.repo, repo_type="model")
    blobs = cache / folder / "blobs"
    lock = cache / ".locks" / folder / f"{meta.etag}.vlmswap.lock"  # where huggingface_hub keeps its own locks
    blob = blobs / meta.etag
    if blob.exists():
        return
    blobs.mkdir(parents=True, exist_ok=True)
    lock.parent.mkdir(parents=True, exist_ok=True)
    partial = blobs / f"{meta.etag}.vlmswap.incomplete"
    headers = build_hf_headers()
    if urlsplit(meta.location).netloc != urlsplit(url).netloc:
        headers.pop("authorization", None)  # a CDN's signed URL: the hub token is not for it
    try:
        with WeakFileLock(lock, timeout=1):
            have = partial.stat().st_size if partial.exists() else 0
            if have > meta.size:
                partial.unlink()
                have = 0
            with partial.open("ab") as f:
                http_get(
                    meta.location,
                    f,
                    resume_size=have,
                    headers=headers,
                    expected_size=meta.size,
                    displayed_filename=path,
                    tqdm_class=bar,
                )  # type: ignore[arg-type]
            if re.fullmatch(r"[0-9a-f]{64}", meta.etag):  # an LFS file's etag is its SHA-256
                digest = hashlib.sha256()
                with partial.open("rb") as f:
                    while chunk := f.read(1 << 22):
                        digest.update(chunk)
                if digest.hexdigest() != meta.etag:
                    partial.unlink()
                    raise PullError(
                        f"{src.repo}: {path}: the downloaded bytes do not match the hub's SHA-256; pull again"
                    )
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
