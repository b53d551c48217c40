"""Staging: while the GPU is idle, read the likeliest next model's weight files into the OS page cache.

A cold start reads gigabytes of weights; from the page cache that read is a memory copy
instead of disk I/O (bench/README.md, Staging, measures how much it saves here). Reading
needs no GPU and holds nothing the scheduler counts, so it can happen while the GPU waits;
it stops at the next chunk when a request arrives (the manager sets `stop`), so it never
competes with a request's own start for the disk. What to stage is the manager's decision
(the predictor's ranking, `gateway.stage_idle_s`, `gateway.stage_min_chance`); this module
finds the files (through registry/hub.py: the local Hugging Face snapshot) and reads them.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable
from pathlib import Path

from vlmswap.registry import hub
from vlmswap.registry.config import ModelSpec

CHUNK = 8 * 1024 * 1024
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth")


def weight_files(spec: ModelSpec) -> list[Path]:
    """The weight files of `spec`'s complete local snapshot (resolved to the cache's blobs); [] when it
    has none (no hub repo, not downloaded, a container's own cache)."""
    src = hub.source(spec)
    if src is None or (spec.backend == "docker" and src.cache_dir is None):
        return []
    snapshot = hub.local_snapshot(src)
    if snapshot is None:
        return []
    out = []
    for p in sorted(snapshot.rglob("*")):
        if p.suffix in WEIGHT_SUFFIXES and p.is_file():
            out.append(p.resolve())
    return list(dict.fromkeys(out))


def read_into_cache(paths: Iterable[Path], stop: threading.Event | None = None) -> tuple[int, bool]:
    """Read every file once, sequentially, so the kernel keeps its pages; (bytes read, finished).
    Stops between chunks when `stop` is set. In a thread: it blocks on the disk."""
    buf = bytearray(CHUNK)
    view = memoryview(buf)
    done = 0
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            if hasattr(os, "posix_fadvise"):
                os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_SEQUENTIAL)
            while True:
                if stop is not None and stop.is_set():
                    return done, False
                n = f.readinto(view)
                if not n:
                    break
                done += n
    return done, True


def evict_from_cache(paths: Iterable[Path]) -> None:
    """Drop the files' pages from the page cache (POSIX_FADV_DONTNEED): a cold read again (benchmarks)."""
    for path in paths:
        with open(path, "rb") as f:
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def cached_fraction(path: Path) -> float | None:
    """How much of the file is in the page cache now (mincore through mmap); None where unknown."""
    import ctypes
    import mmap

    size = path.stat().st_size
    if size == 0:
        return 1.0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.POINTER(ctypes.c_ubyte)]
        page = os.sysconf("SC_PAGE_SIZE")
        # A private mapping: its untouched pages are the page cache's, and ctypes may take its address.
        with open(path, "rb") as f, mmap.mmap(f.fileno(), size, access=mmap.ACCESS_COPY) as mm:
            buf = (ctypes.c_char * size).from_buffer(mm)
            try:
                pages = (size + page - 1) // page
                vec = (ctypes.c_ubyte * pages)()
                if libc.mincore(ctypes.addressof(buf), size, vec) != 0:
                    return None
                return sum(v & 1 for v in vec) / pages
            finally:
                del buf
    except (OSError, AttributeError, TypeError, ValueError, BufferError):
        return None


__all__ = ["cached_fraction", "evict_from_cache", "read_into_cache", "weight_files"]
