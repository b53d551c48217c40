"""What `vlmswap cluster serve` decides, in one picklable value every deployment receives."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from vlmswap.registry.config import Registry, parse_registry


@dataclass(frozen=True)
class ClusterOptions:
    """What `vlmswap cluster serve` decides; everything the deployments need (picklable)."""

    registry: dict[str, Any]  # Registry.model_dump(): each replica parses it again
    replicas: int = 1
    gpus_per_replica: float = 1.0
    models_per_replica: int = 1  # Ray's LRU per replica: what one replica keeps awake or asleep
    api_key: str | None = None
    min_replicas: int | None = None  # set with max_replicas: Ray Serve autoscaling
    max_replicas: int | None = None
    target_ongoing_requests: float = 2.0
    # Ray Serve's own knobs for how fast it reacts (None: Ray's defaults, 30 s up, 600 s down, 30 s look-back)
    upscale_delay_s: float | None = None
    downscale_delay_s: float | None = None
    look_back_period_s: float | None = None
    state_dir: str | None = None  # base of the replicas' state dirs (default: vlmswap's own)

    @property
    def autoscaling(self) -> bool:
        return self.max_replicas is not None

    def autoscaling_config(self) -> dict[str, Any]:
        """Ray Serve's `autoscaling_config` for the model hosts (only the knobs that were set)."""
        config: dict[str, Any] = {
            "min_replicas": self.min_replicas if self.min_replicas is not None else 1,
            "max_replicas": self.max_replicas,
            "target_ongoing_requests": self.target_ongoing_requests,
        }
        for knob in ("upscale_delay_s", "downscale_delay_s", "look_back_period_s"):
            if getattr(self, knob) is not None:
                config[knob] = getattr(self, knob)
        return config


def registry_of(data: dict[str, Any]) -> Registry:
    return parse_registry(data, "cluster registry")
