"""The words for where a model is and what a switch is doing, defined once.

The manager, the lifecycle, `/api/status`, `/api/events`, the metrics, the CLI and the UI
all use these; a `StrEnum` serialises as its plain string, so the JSON is unchanged.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Literal


class ModelState(StrEnum):
    """Where a model's backend is."""

    STOPPED = "stopped"  # no backend
    STARTING = "starting"  # launched, loading (cold start)
    READY = "ready"  # awake, serving
    SLEEPING = "sleeping"  # backend alive, weights parked in host RAM, GPU compute memory released
    WAKING = "waking"  # weights on their way back
    STOPPING = "stopping"
    FAILED = "failed"  # the last start, wake or run failed; the next request tries again after a backoff


class Phase(StrEnum):
    """The steps of one switch, in the order they can happen (see docs/design.md)."""

    DRAINING = "draining"
    SLEEPING = "sleeping"  # putting the old model to sleep
    STOPPING = "stopping"
    WAITING_VRAM = "waiting_vram"
    WAKING = "waking"
    STARTING = "starting"
    LOADING = "loading"
    WARMING_UP = "warming_up"
    READY = "ready"
    FAILED = "failed"


SwitchKind = Literal["warm", "cold"]
"""warm: the model was woken from the sleeping pool; cold: its backend was started."""
