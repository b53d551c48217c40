"""`vlmswap.cluster.app:build`: the cluster's application as a Ray Serve config file deploys it.

`vlmswap cluster serve` builds the application in its own process; a config file (`serve run
CONFIG`, `serve deploy CONFIG`, a KubeRay `RayService`) names this builder instead, and Serve
calls it with the file's `args`, checked here (`ClusterArgs`: an unknown or wrong argument
fails the deploy with its name). It is the same application: `build_app` of the same options.

Serve runs the builder as a task on any node of the cluster, so whatever it reads must be
there: the registry file (or give the registry inline, `registry_yaml`, as the RayService in
deploy/ does) and the variable `api_key_env` names.
"""

from __future__ import annotations

import os
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, model_validator

from vlmswap.cluster.options import ClusterOptions


class ClusterArgs(BaseModel):
    """A Serve config's `args` for the vlmswap application (the options of `vlmswap cluster serve`)."""

    model_config = ConfigDict(extra="forbid")

    registry: str | None = Field(None, description="Registry YAML path (on every node); neither: the shipped one.")
    registry_yaml: str | None = Field(None, description="The registry itself, inline (instead of `registry`).")
    replicas: int = Field(1, ge=1, description="Model host replicas, without autoscaling.")
    gpus_per_replica: float = Field(1.0, ge=0, description="GPUs each model host holds (0: CPU only).")
    models_per_replica: int = Field(1, ge=1, description="Models Ray routes to one replica (awake plus asleep).")
    api_key_env: str | None = Field(None, description="Environment variable holding the admin API key.")
    min_replicas: int | None = Field(None, ge=0, description="Autoscaling: fewest replicas (with max_replicas).")
    max_replicas: int | None = Field(None, ge=1, description="Autoscaling on queue length up to this many replicas.")
    target_ongoing_requests: float = Field(2.0, gt=0, description="Autoscaling: ongoing requests per replica.")
    upscale_delay_s: float | None = Field(None, ge=0, description="Autoscaling: high load this long adds one.")
    downscale_delay_s: float | None = Field(None, ge=0, description="Autoscaling: low load this long removes one.")
    look_back_period_s: float | None = Field(None, gt=0, description="Autoscaling: the averaging window.")
    state_dir: str | None = Field(None, description="Base of the state dirs (default: each node's $VLMSWAP_STATE_DIR).")

    @model_validator(mode="after")
    def _consistent(self) -> ClusterArgs:
        if self.registry is not None and self.registry_yaml is not None:
            raise ValueError("give the registry as a path (`registry`) or inline (`registry_yaml`), not both")
        if self.min_replicas is not None and self.max_replicas is None:
            raise ValueError("min_replicas needs max_replicas (autoscaling)")
        if None not in (self.min_replicas, self.max_replicas) and self.min_replicas > self.max_replicas:  # type: ignore[operator]
            raise ValueError(f"min_replicas {self.min_replicas} is above max_replicas {self.max_replicas}")
        return self

    def options(self) -> ClusterOptions:
        """What `vlmswap cluster serve` would decide for the same arguments."""
        from pathlib import Path

        from vlmswap.registry.config import load_registry, parse_registry

        if self.registry_yaml is not None:
            registry = parse_registry(yaml.safe_load(self.registry_yaml), "args.registry_yaml")
        else:
            registry = load_registry(Path(self.registry) if self.registry else None)
        api_key = None
        if self.api_key_env is not None:
            api_key = os.environ.get(self.api_key_env)
            if not api_key:
                raise ValueError(f"args.api_key_env: environment variable {self.api_key_env} is not set")
        return ClusterOptions(
            registry=registry.model_dump(mode="json"),
            replicas=self.replicas,
            gpus_per_replica=self.gpus_per_replica,
            models_per_replica=self.models_per_replica,
            api_key=api_key,
            min_replicas=self.min_replicas,
            max_replicas=self.max_replicas,
            target_ongoing_requests=self.target_ongoing_requests,
            upscale_delay_s=self.upscale_delay_s,
            downscale_delay_s=self.downscale_delay_s,
            look_back_period_s=self.look_back_period_s,
            state_dir=self.state_dir,
        )


def build(args: dict[str, Any]) -> Any:
    """The application a Serve config's `import_path: vlmswap.cluster.app:build` deploys (`args`
    checked as ClusterArgs: a wrong one fails the deploy with its name)."""
    from vlmswap.cluster.deployments import build_app

    return build_app(ClusterArgs.model_validate(args).options())


__all__ = ["ClusterArgs", "build"]
