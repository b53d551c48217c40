"""Append `PID PPID MODEL` to a log, then become the real command (same pid): a spawn counter.

Used as a registry `cmd` prefix in the cluster tests, so they count the worker processes the
replicas really started and know each one's parent (the replica) without polling.
Usage: python spawnlog.py LOG MODEL -- ARGV...
"""

import os
import sys

log, model, sep, *argv = sys.argv[1:]
assert sep == "--" and argv, __doc__
with open(log, "a", encoding="utf-8") as f:
    f.write(f"{os.getpid()} {os.getppid()} {model}\n")
os.execv(argv[0], argv)
