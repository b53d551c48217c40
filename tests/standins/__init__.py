"""Stand-ins for vendor libraries that cannot run here (no GPU): same module names and calls.

`amdsmi/` is AMD SMI's Python package as the real code calls it. In-process, `use_amdsmi`
puts it in `sys.modules` and makes the GPU probe choose it; for a subprocess, `amdsmi_env`
puts this directory first on PYTHONPATH.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

from tests.support import ROOT

STANDINS = Path(__file__).resolve().parent


def amdsmi_env(**fake: object) -> dict[str, str]:
    """Environment for a subprocess whose `import amdsmi` gets the stand-in; FAKE_AMDSMI_* from `fake`
    (`total_gib=5` -> FAKE_AMDSMI_TOTAL_GIB=5)."""
    path = os.pathsep.join([str(STANDINS), str(ROOT), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env = {"PYTHONPATH": path, "VLMSWAP_GPU": "amd"}
    env.update({f"FAKE_AMDSMI_{k.upper()}": str(v) for k, v in fake.items()})
    return env


def use_amdsmi(monkeypatch: pytest.MonkeyPatch, **fake: object) -> ModuleType:
    """In this process: `import amdsmi` is the stand-in and `vlmswap.gpu.probe()` reads through it."""
    from vlmswap import gpu

    mod = importlib.import_module("tests.standins.amdsmi")
    mod.CALLS.clear()
    monkeypatch.setitem(sys.modules, "amdsmi", mod)
    for k, v in amdsmi_env(**fake).items():
        if k != "PYTHONPATH":
            monkeypatch.setenv(k, v)
    gpu.reset()
    monkeypatch.setattr(gpu, "_chosen", None)  # and forgotten again after the test (monkeypatch undoes it)
    monkeypatch.setattr(gpu, "_none", None)
    return mod
