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


class Residency(StrEnum):
    """The scheduler's coarse view of a model: whether its memory counts, and whether it takes work.

    Coarser than `ModelState` on purpose: the scheduler does not care whether a model that is
    not resident is asleep in the pool or stopped, nor which step of a start is under way.
    """

    ABSENT = "absent"  # no memory of the GPU budget held (stopped, or asleep in the pool)
    STARTING = "starting"  # the switch under way brings it up (a wake or a cold start)
    READY = "ready"  # serving
    DRAINING = "draining"  # admits nothing new; leaves once its requests in flight are done
    STOPPING = "stopping"  # taken off the GPU outside a switch (unload, ttl, crash); stop_done ends it


class SwitchStep(StrEnum):
    """Where the one switch under way is."""

    DRAINING = "draining"  # its victims admit nothing new while their requests in flight finish
    SWITCHING = "switching"  # the lifecycle retires the victims and brings the target up


class Cause(StrEnum):
    """Why a switch or a stop began (events, logs and the stop's reason say it)."""

    QUEUE = "queue"  # a queued request wants a model that is not up
    STARVATION = "starvation"  # ... and has waited max_wait_s: the models in its way stop admitting
    LOAD = "load"  # an operator asked for the model
    UNLOAD = "unload"  # an operator asked for it to go
    SLEEP = "sleep"  # an operator asked for it to sleep
    TTL = "ttl"  # idle for its ttl_s
    CRASH = "crash"  # its backend died

    @property
    def reason(self) -> str:
        """The words a stop's message uses."""
        return {Cause.TTL: "ttl idle", Cause.CRASH: "crashed"}.get(self, self.value)


__all__ = ["Cause", "ModelState", "Phase", "Residency", "SwitchKind", "SwitchStep"]
