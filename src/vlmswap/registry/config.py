"""The model registry: one YAML file, validated by pydantic.

The registry says which models exist, how to start each one (an argv list for a process,
or an image for a container), how to tell it is ready, and what it can do. Everything
else in vlmswap reads models from here; nothing else parses the YAML.
"""

from __future__ import annotations

import os
import sys
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

Family = Literal["dots_ocr", "qwen2_vl", "qwen2_5_vl", "qwen3_vl", "phi3_v", "rapidocr", "generic"]
Capability = Literal["chat", "ocr", "layout", "grounding"]
BackendKind = Literal["process", "docker"]

DEFAULT_REGISTRY = "default_registry.yaml"


class ConfigError(Exception):
    """A registry file that cannot be used; `errors` are lines like `models.x.port: ...`."""

    def __init__(self, source: str, errors: list[str]):
        self.source = source
        self.errors = errors
        super().__init__(f"{source}: " + "; ".join(errors))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelSpec(_Strict):
    """One model of the registry. `cmd` and `env` may use ${PORT}, ${SERVED_NAME}, ${MODEL}, ${PYTHON}."""

    served_name: str = Field(min_length=1, description="The id clients send as `model`.")
    aliases: list[str] = Field(default_factory=list, description="Other ids that also select this model.")
    description: str = ""
    backend: BackendKind = "process"
    cmd: list[str] | None = Field(None, description="process backend: the argv; never run through a shell.")
    port: int | None = Field(None, ge=1, le=65535, description="Host port; omitted: a free port at start.")
    host: str = Field("127.0.0.1", description="Where the backend listens; keep it on loopback.")
    health: str = Field("/health", description="Path that answers 200 once the backend is up.")
    family: Family = "generic"
    capabilities: list[Capability] = Field(default_factory=lambda: list[Capability](["chat"]))
    vram_gb: float = Field(0.0, ge=0, description="GPU memory the backend is expected to take.")
    startup_timeout_s: float = Field(300.0, gt=0)
    stop_grace_s: float | None = Field(None, ge=0, description="SIGTERM/stop grace; default from gateway.")
    drain_timeout_s: float | None = Field(None, ge=0, description="Wait for requests in flight; default from gateway.")
    ttl_s: float | None = Field(None, gt=0, description="Unload after this long idle; none: never.")
    env: dict[str, str] = Field(default_factory=dict)
    min_pixels: int | None = Field(None, gt=0, description="Document pipeline: smart_resize lower bound.")
    max_pixels: int | None = Field(None, gt=0, description="Document pipeline: smart_resize upper bound.")
    sleep_mode: bool = Field(
        False,
        description="Backend serves vLLM's /sleep, /wake_up, /is_sleeping: a switch "
        "away puts it to sleep in host RAM, a switch back wakes it.",
    )
    sleep_level: Literal[1, 2] = Field(
        1,
        description="1: weights to host RAM (fast wake); 2: weights dropped, "
        "reloaded from the checkpoint on wake (little RAM held).",
    )
    sleep_ram_gb: float | None = Field(
        None, ge=0, description="Host RAM it holds asleep, until measured; default: vram_gb for level 1, 0 for level 2."
    )
    warmup: bool = Field(False, description="Send a 1-token request after a start or wake, before the first client's.")
    expected_start_s: float | None = Field(
        None,
        gt=0,
        description="Seconds a cold start takes, until measured (the learned median replaces it): "
        "the sleeping pool's order and `vlmswap simulate` use it.",
    )
    expected_wake_s: float | None = Field(
        None, ge=0, description="Seconds a wake from the sleeping pool takes, until measured."
    )
    expected_sleep_s: float | None = Field(
        None, ge=0, description="Seconds putting it to sleep takes (weights copied to host RAM), until measured."
    )
    hf_repo: str | None = Field(
        None,
        pattern=r"^[A-Za-z0-9][\w.-]*/[\w.-]+$",
        description="Hugging Face repo whose files the model needs (`vlmswap pull`); "
        "default: the one its command names (`vllm serve REPO`, `--model REPO`).",
    )
    download_on_start: bool = Field(
        False,
        description="Start even when its files are not in the local Hugging Face "
        "cache, letting the backend download them (vLLM does) inside "
        "the switch; default: say `not downloaded` and refuse.",
    )
    # docker backend
    image: str | None = None
    command: list[str] | None = Field(None, description="docker backend: the container's command (argv).")
    ports: dict[int, int] = Field(default_factory=dict, description="docker: container port -> host port.")
    volumes: dict[str, str] = Field(default_factory=dict, description="docker: host path or volume -> container path.")
    gpus: str | list[str] | None = Field(None, description="docker: 'all' or device ids.")
    gpu_vendor: Literal["nvidia", "amd"] | None = Field(
        None,
        description="docker: how `gpus` reaches the container: nvidia (device requests, NVIDIA Container "
        "Toolkit) or amd (ROCm's /dev/kfd and /dev/dri, the video and render groups); default: the vendor "
        "of the GPU this gateway sees, nvidia when it sees none.",
    )
    shm_size: str | None = None
    ipc: str | None = None
    pull: bool = False

    @field_validator("gpus", mode="before")
    @classmethod
    def _gpu_ids_as_text(cls, v: Any) -> Any:
        """`gpus: [0, 2]` in YAML are numbers; device ids are text to the engine."""
        if not isinstance(v, list):
            return v
        return [str(g) if isinstance(g, int) and not isinstance(g, bool) else g for g in v]

    @field_validator("aliases")
    @classmethod
    def _no_empty_alias(cls, v: list[str]) -> list[str]:
        if any(not a for a in v):
            raise ValueError("aliases must not be empty strings")
        return v

    @model_validator(mode="after")
    def _backend_fields(self) -> ModelSpec:
        if self.backend == "process":
            if not self.cmd:
                raise ValueError("a process backend needs `cmd`, an argv list")
        else:
            if not self.image:
                raise ValueError("a docker backend needs `image`")
            if self.port is None and not self.ports:
                raise ValueError("a docker backend needs `port` or `ports`")
        return self

    def names(self, registry_name: str) -> list[str]:
        """Every id that selects this model: served name, registry name, aliases."""
        out = [self.served_name, registry_name, *self.aliases]
        return list(dict.fromkeys(out))


class GatewaySettings(_Strict):
    """How the gateway schedules and switches. Per-model fields override the defaults here."""

    policy: Literal["single", "fit"] = Field(
        "single", description="single: at most one model awake; fit: several awake while their GPU memory fits."
    )
    gpu_budget_gb: float | None = Field(
        None,
        gt=0,
        description="fit: GPU memory the awake models may use; default: the card's total less a 5 % reserve.",
    )
    gpu_memory_gb: float | None = Field(
        None,
        gt=0,
        description="Declare the card's memory where the GPU probe (NVML, AMD SMI) cannot read it "
        "(CPU machines, tests): placement decides against it.",
    )
    preload: list[str] = Field(
        default_factory=list, description="Models to load at start (fit: every one that fits; single: the first)."
    )
    stream_loading_status: bool = Field(
        False,
        description="A streamed chat request that waits for a switch gets the "
        "progress as reasoning_content deltas before the answer.",
    )
    max_queue: int = Field(256, ge=1, description="Requests waiting beyond this get 503 + Retry-After.")
    max_wait_s: float = Field(60.0, gt=0, description="Starvation bound: no request waits longer behind other models.")
    drain_timeout_s: float = Field(30.0, ge=0)
    stop_grace_s: float = Field(10.0, ge=0)
    vram_release_timeout_s: float = Field(
        10.0, ge=0, description="Bound on waiting for the GPU probe (NVML, AMD SMI) to show memory freed."
    )
    poll_interval_s: float = Field(0.05, gt=0, le=0.05, description="Readiness and VRAM polling period.")
    max_body_mb: float = Field(32.0, gt=0)
    backoff_initial_s: float = Field(2.0, ge=0, description="After a failed start; doubles per failure.")
    backoff_max_s: float = Field(120.0, ge=0)
    log_tail_lines: int = Field(2000, ge=10)
    max_sleeping: int | None = Field(
        None, ge=0, description="Most models asleep at once; none: only the RAM budget limits the sleeping pool."
    )
    sleep_ram_budget_gb: float | None = Field(
        None, ge=0, description="Host RAM the sleeping pool may hold; default: half of this machine's memory."
    )
    pool_policy: Literal["lru", "predictive"] = Field(
        "predictive",
        description="Which sleeper leaves the sleeping pool first: lru, the least recently used; predictive, "
        "the one whose keeping is worth least (its chance of being asked within predict_horizon_s, "
        "learned from past requests, times its cold start less its wake). bench/README.md, Simulator.",
    )
    predict_horizon_s: float = Field(
        30.0,
        gt=0,
        description="predictive: the 'soon' of 'the chance of being asked soon', in seconds (tuned in "
        "bench/README.md, Simulator).",
    )
    stage_idle_s: float | None = Field(
        30.0,
        gt=0,
        description="After this long without work, read the weight files of the likeliest next model that is "
        "neither awake nor asleep into the OS page cache (fit, with room: start it and put it to sleep); "
        "none: never stage.",
    )
    stage_min_chance: float = Field(
        0.5, ge=0, le=1, description="Stage only a model at least this likely to be asked within the horizon."
    )
    trace_path: str | None = Field(
        None,
        description="Append each request's time and model (and how long it held the model) to this JSON Lines "
        "file, for `vlmswap simulate --trace`; a relative path is in the state dir; none: not recorded.",
    )
    sleep_timeout_s: float = Field(30.0, gt=0, description="Bound on POST /sleep; past it the model is stopped.")
    wake_timeout_s: float = Field(30.0, gt=0, description="Bound on waking a model; past it it is started cold.")
    sleep_residual_gb: float = Field(
        1.5,
        ge=0,
        description="Most GPU memory a sleeping backend may keep (its CUDA "
        "context, ~0.8 GB on vLLM); more means the sleep leaked "
        "and the model is stopped.",
    )
    log_max_mb: float = Field(20.0, gt=0, description="Each model's log file is rotated past this size.")
    log_keep: int = Field(3, ge=1, description="Rotated log files kept per model (NAME.log.1 .. NAME.log.N).")
    docker_host: str | None = Field(
        None, description="docker backend: Engine API address; default $DOCKER_HOST, else unix:///var/run/docker.sock."
    )
    jobs_concurrency: int = Field(2, ge=1, le=64, description="Document jobs: pages of one job in flight at once.")
    jobs_retention_h: float = Field(
        72.0,
        gt=0,
        description="Document jobs: finished jobs and their files are removed this many hours after they ended.",
    )
    jobs_max_pages: int = Field(2000, ge=1, description="Document jobs: pages one job may ask for.")
    jobs_max_queued: int = Field(
        100, ge=1, description="Document jobs: unfinished jobs (queued or running) beyond which a new one gets 429."
    )
    jobs_max_upload_mb: float = Field(
        32.0,
        gt=0,
        description="Document jobs: size of one uploaded file (the whole request is also capped by max_body_mb).",
    )


class ProfileSpec(_Strict):
    """A named client: its key (never in the file itself), what it may use, how it is served."""

    key_env: str | None = Field(None, description="Environment variable that holds the profile's API key.")
    key_sha256: str | None = Field(
        None,
        pattern=r"^[0-9a-fA-F]{64}$",
        description="SHA-256 (hex) of the key, when the key itself must not be on "
        "this machine's environment: `printf %s KEY | sha256sum`.",
    )
    models: list[str] = Field(
        default_factory=lambda: ["*"], description="Models it may use (ids or registry names); `*`: all."
    )
    priority: int = Field(0, description="Served first when several models wait (within the starvation bound).")
    max_concurrent: int | None = Field(None, ge=1, description="Requests at once; more get 429.")
    requests_per_minute: int | None = Field(
        None, ge=1, description="Requests in any minute; more get 429 with Retry-After."
    )
    admin: bool = Field(False, description="May use the admin API (load, unload, sleep, pull, logs).")

    @model_validator(mode="after")
    def _one_key(self) -> ProfileSpec:
        if (self.key_env is None) == (self.key_sha256 is None):
            raise ValueError("a profile needs exactly one of `key_env` and `key_sha256`")
        return self


class Registry(_Strict):
    gateway: GatewaySettings = Field(default_factory=GatewaySettings)
    models: dict[str, ModelSpec]
    profiles: dict[str, ProfileSpec] = Field(
        default_factory=dict, description="Named clients with their keys, models, priority and limits."
    )

    @model_validator(mode="after")
    def _unique_names(self) -> Registry:
        seen: dict[str, str] = {}
        for name, spec in self.models.items():
            for n in spec.names(name):
                if n in seen and seen[n] != name:
                    raise ValueError(f"model id {n!r} is used by both {seen[n]!r} and {name!r}")
                seen[n] = name
        for n in self.gateway.preload:
            if n not in seen:
                raise ValueError(f"gateway.preload: unknown model {n!r}")
        for name, p in self.profiles.items():
            for m in p.models:
                if m != "*" and m not in seen:
                    raise ValueError(f"profiles.{name}.models: unknown model {m!r}")
        return self

    @cached_property
    def _index(self) -> dict[str, str]:
        return {n: name for name, spec in self.models.items() for n in spec.names(name)}

    def resolve(self, model_id: str) -> str | None:
        """Registry name for a client's `model` (served name, alias or registry name)."""
        return self._index.get(model_id)

    def require(self, model_id: str) -> str:
        """Registry name for a client's model id, or the 404 (OpenAI's wording) listing the known ids."""
        name = self.resolve(model_id)
        if name is None:
            from vlmswap.api.errors import APIError

            raise APIError(
                404,
                f"The model `{model_id}` does not exist. Known models: {', '.join(self.known_ids())}",
                param="model",
                code="model_not_found",
            )
        return name

    def known_ids(self) -> list[str]:
        return sorted(self._index)


def substitute(value: str, variables: dict[str, str]) -> str:
    for key, val in variables.items():
        value = value.replace("${" + key + "}", val)
    return value


def render_argv(argv: list[str], env: dict[str, str], variables: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """Substitute ${PORT}, ${SERVED_NAME}, ${MODEL}, ${PYTHON} in an argv list and its env."""
    variables = {"PYTHON": sys.executable, **variables}
    return [substitute(a, variables) for a in argv], {k: substitute(v, variables) for k, v in env.items()}


def _error_lines(exc: ValidationError) -> list[str]:
    lines = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"] if p not in ("function-after[_backend_fields(), ModelSpec]",))
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{loc}: {msg}" if loc else msg)
    return lines


def parse_registry(data: Any, source: str = "<registry>") -> Registry:
    if not isinstance(data, dict):
        raise ConfigError(source, ["the file must be a mapping with a `models` key"])
    try:
        return Registry.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(source, _error_lines(exc)) from None


def load_registry(path: str | os.PathLike[str] | None = None) -> Registry:
    """Load and validate a registry file; None: the default shipped in the package."""
    if path is None:
        text = resources.files("vlmswap.registry").joinpath(DEFAULT_REGISTRY).read_text(encoding="utf-8")
        source = f"<default {DEFAULT_REGISTRY}>"
    else:
        p = Path(path)
        source = str(p)
        try:
            text = p.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, [exc.strerror or str(exc)]) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(source, [f"not valid YAML: {exc}"]) from None
    return parse_registry(data, source)


def json_schema() -> dict[str, Any]:
    """JSON Schema of the registry file, from the same pydantic models."""
    schema = Registry.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["title"] = "vlmswap registry"
    return schema


__all__ = [
    "ConfigError",
    "GatewaySettings",
    "ModelSpec",
    "ProfileSpec",
    "Registry",
    "json_schema",
    "load_registry",
    "parse_registry",
    "render_argv",
    "substitute",
]
