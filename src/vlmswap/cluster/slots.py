"""Per-replica state directories, claimed with a lock that dies with its holder.

Each replica's manager keeps its pid files in a state dir of its own, so its orphan clean-up
touches only its own backends. A replica that is killed cannot clean up; the replica Ray
starts in its place claims the freed slot (the kernel drops a dead process's `flock`) and
its manager stops what the dead one left running, on start, as `vlmswap serve` does.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from dataclasses import dataclass
from pathlib import Path

MAX_SLOTS = 1024


@dataclass(frozen=True)
class Slot:
    index: int
    state_dir: Path
    fd: int

    def release(self) -> None:
        with contextlib.suppress(OSError):
            os.close(self.fd)  # closing drops the flock


def claim(base: Path) -> Slot:
    """The lowest free slot under `base` (`replica-0`, `replica-1`, ...), locked until released or dead."""
    base.mkdir(parents=True, exist_ok=True)
    for i in range(MAX_SLOTS):
        d = base / f"replica-{i}"
        d.mkdir(exist_ok=True)
        fd = os.open(d / "lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            continue
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        return Slot(i, d, fd)
    raise RuntimeError(f"no free replica slot under {base} (over {MAX_SLOTS} replicas on one node?)")
