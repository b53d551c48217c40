"""Any image-text-to-text checkpoint through transformers, for machines without vLLM.

Why this shape: the worker must treat a local transformers model like `vllm serve` treats
its model: load once, stream tokens as they come, count them, and free the accelerator on
`/sleep` without losing the weights. transformers' `generate()` blocks until the end, so it
runs on a background thread and hands text over through a `TextIteratorStreamer`; a
stopping criterion lets the consumer end it early (stop string, client gone).

Models load only from a local folder or the local Hugging Face cache: a worker never
downloads at run time (the gateway's switch timings and the offline machines depend on it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from PIL import Image

from vlmswap.documents import dots_prompts
from vlmswap.worker.engines.base import Engine, Generation, GenerationRequest, Message

log = logging.getLogger("vlmswap.worker.transformers")

# Below this temperature sampling is pointless: answer greedily, deterministically (as vLLM).
GREEDY_BELOW = 1e-5
# Answer length when the client gives no max_tokens (bounded further by the context).
DEFAULT_MAX_TOKENS = 1024
# Image placeholders for models whose processor has no chat template of its own and whose
# tokenizer template takes plain strings (Phi-3/3.5-vision's remote code).
_IMAGE_PLACEHOLDERS = {"phi3_v": "<|image_{n}|>\n"}


class ModelNotAvailable(RuntimeError):
    """The model is neither a local folder nor in the local Hugging Face cache."""


def resolve_model_path(model: str) -> Path:
    """A local checkpoint folder for `model`: the folder itself, or its snapshot in the
    Hugging Face cache. Never downloads."""
    path = Path(model).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelNotAvailable(f"{path}: not a transformers checkpoint (no config.json)")
        return path.resolve()
    if path.exists() or model.startswith((".", "/", "~")) or model.count("/") > 1:
        raise ModelNotAvailable(f"{model}: no such model folder")
    from huggingface_hub.constants import HF_HUB_CACHE

    from vlmswap.registry.hub import Source, local_snapshot

    try:
        folder = local_snapshot(Source(model))
    except Exception as exc:  # HFValidationError for a malformed id, an unreadable cache
        raise ModelNotAvailable(f"{model}: not a usable model id ({type(exc).__name__}: {exc})") from None
    if folder is None:
        raise ModelNotAvailable(
            f"{model}: not a local folder and not in the Hugging Face cache ({HF_HUB_CACHE}), or only partly; "
            f"the worker never downloads: fetch it first (`vlmswap pull NAME`, or `hf download {model}`)"
        )
    return folder


def _pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device {device!r} asked for, but torch sees no CUDA device")
    if device != "cpu" and not device.startswith("cuda"):
        raise ValueError(f"device must be auto, cpu or cuda[:N], not {device!r}")
    return device


def _load_model(path: Path, dtype: Any, trust_remote_code: bool) -> Any:
    """The first Auto class that knows this architecture: image-text-to-text, then the
    older vision-to-sequence, then causal LM (remote-code VLMs register there)."""
    import transformers

    names = ("AutoModelForImageTextToText", "AutoModelForVision2Seq", "AutoModelForCausalLM")
    errors: list[str] = []
    for name in names:
        auto = getattr(transformers, name, None)
        if auto is None:
            continue
        try:
            return auto.from_pretrained(path, dtype=dtype, trust_remote_code=trust_remote_code, local_files_only=True)
        except ValueError as exc:  # "Unrecognized configuration class ... for this kind of AutoModel"
            errors.append(f"{name}: {str(exc).splitlines()[0]}")
    raise RuntimeError(f"{path}: no Auto class loads this model: " + "; ".join(errors))


class _StopFlag:
    """A stopping criterion the consumer flips from another thread."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
        import torch

        return torch.full((input_ids.shape[0],), self.event.is_set(), dtype=torch.bool, device=input_ids.device)


class TransformersGeneration(Generation):
    """One answer. Generation starts on first iteration and holds the engine's lock until
    it ends, so sleep/wake never move weights under a running generate()."""

    def __init__(self, engine: TransformersEngine, inputs: dict[str, Any], gen_kwargs: dict[str, Any], stop: list[str]):
        self._engine = engine
        self._inputs = inputs
        self._kwargs = gen_kwargs
        self._stop = [s for s in stop if s]
        self.prompt_tokens = int(inputs["input_ids"].shape[1])
        self.completion_tokens = 0
        self.finish_reason = "stop"

    def __iter__(self) -> Iterator[str]:
        from transformers import StoppingCriteriaList, TextIteratorStreamer

        engine = self._engine
        with engine._lock:
            if engine.is_sleeping:
                raise RuntimeError("the model is sleeping; POST /wake_up first")
            flag = _StopFlag()
            streamer = TextIteratorStreamer(engine.tokenizer, skip_prompt=True, skip_special_tokens=True)
            result: dict[str, Any] = {}
            inputs = engine._to_device(self._inputs)

            def run() -> None:
                try:
                    result["sequences"] = engine.model.generate(
                        **inputs, **self._kwargs, streamer=streamer, stopping_criteria=StoppingCriteriaList([flag])
                    )
                except BaseException as exc:
                    result["error"] = exc
                    streamer.end()  # unblock the consumer

            thread = threading.Thread(target=run, name="vlmswap-transformers-generate", daemon=True)
            thread.start()
            hit_stop = False
            try:
                pending = ""
                hold = max((len(s) for s in self._stop), default=1) - 1
                for piece in streamer:
                    if hit_stop or not piece:
                        continue
                    if not self._stop:
                        yield piece
                        continue
                    pending += piece
                    cut = min((i for i in (pending.find(s) for s in self._stop) if i >= 0), default=-1)
                    if cut >= 0:
                        hit_stop = True
                        flag.event.set()
                        if pending[:cut]:
                            yield pending[:cut]
                        pending = ""
                    elif len(pending) > hold:
                        yield pending[: len(pending) - hold]
                        pending = pending[len(pending) - hold :]
                if pending and not hit_stop:
                    yield pending
            finally:
                # Normal end, stop string, or the consumer closed us (client gone): stop the
                # model at its next token and wait, so the lock is free only when it is idle.
                flag.event.set()
                thread.join()
                if "error" in result:
                    raise RuntimeError(f"generate() failed: {result['error']}") from result["error"]
                self._account(result.get("sequences"), hit_stop)

    def _account(self, sequences: Any, hit_stop: bool) -> None:
        if sequences is None:
            return
        new = sequences[0, self.prompt_tokens :].tolist()
        pad = self._engine.pad_token_id
        while new and pad is not None and new[-1] == pad and pad not in self._engine.eos_token_ids:
            new.pop()
        self.completion_tokens = len(new)
        if hit_stop or (new and new[-1] in self._engine.eos_token_ids):
            self.finish_reason = "stop"
        elif len(new) >= self._kwargs["max_new_tokens"]:
            self.finish_reason = "length"
        else:
            self.finish_reason = "stop"


class TransformersEngine(Engine):
    """A transformers checkpoint on one device; one generation at a time."""

    name = "transformers"

    def __init__(self, model: str, device: str = "auto", trust_remote_code: bool = False):
        self.model_ref = model
        self.requested_device = device
        self.trust_remote_code = trust_remote_code
        self.device = "cpu"
        self.dtype: Any = None
        self.model: Any = None
        self.processor: Any = None
        self.tokenizer: Any = None
        self.max_model_len = 0
        self.eos_token_ids: set[int] = set()
        self.pad_token_id: int | None = None
        self._sleeping = False
        self._dropped = False  # level 2: the weights are gone until reload_weights()
        self._lock = threading.Lock()  # the model: one generate() / sleep / wake at a time
        self._prep_lock = threading.Lock()  # the processor: prompt building and tokenizing

    # -- loading -----------------------------------------------------------------------------

    def load(self) -> None:
        path = resolve_model_path(self.model_ref)  # first: a missing model fails before the heavy imports
        import torch
        from transformers import AutoProcessor

        self.device = _pick_device(self.requested_device)
        self.dtype = torch.bfloat16 if self.device.startswith("cuda") else torch.float32
        started = time.monotonic()
        self.processor = AutoProcessor.from_pretrained(
            path, trust_remote_code=self.trust_remote_code, local_files_only=True
        )
        self.tokenizer = getattr(self.processor, "tokenizer", None) or self.processor
        model = _load_model(path, self.dtype, self.trust_remote_code)
        self.model = model.to(self.device).eval()
        self._read_limits()
        log.info("loaded %s on %s (%s) in %.1f s", path, self.device, self.dtype, time.monotonic() - started)

    def _read_limits(self) -> None:
        config = self.model.config
        text_config = getattr(config, "text_config", None) or config
        self.max_model_len = int(
            getattr(text_config, "max_position_embeddings", 0) or getattr(config, "max_position_embeddings", 0) or 32768
        )
        gen = self.model.generation_config
        eos = gen.eos_token_id if gen.eos_token_id is not None else self.tokenizer.eos_token_id
        self.eos_token_ids = set(eos if isinstance(eos, list) else [eos]) - {None}
        self.pad_token_id = gen.pad_token_id if gen.pad_token_id is not None else self.tokenizer.pad_token_id

    # -- prompts -----------------------------------------------------------------------------

    def build_prompt(self, messages: list[Message]) -> str:
        """The prompt text in the model's own chat format, with one image slot per image.

        Placeholders a client wrote into a message that carries images (dots.ocr's client
        writes `<|img|><|imgpad|><|endofimg|>` for vLLM) are dropped: the slots are placed here.
        """
        messages = [
            Message(m.role, dots_prompts.without_placeholders(m.text), m.images) if m.images else m for m in messages
        ]
        if getattr(self.processor, "chat_template", None):
            conversation = []
            for m in messages:
                parts: list[dict[str, Any]] = [{"type": "image"} for _ in m.images]
                if m.text or not parts:
                    parts.append({"type": "text", "text": m.text})
                conversation.append({"role": m.role, "content": parts})
            return self.processor.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)
        if not getattr(self.tokenizer, "chat_template", None):
            raise ValueError(f"{self.model_ref}: the model has no chat template")
        placeholder = _IMAGE_PLACEHOLDERS.get(getattr(self.model.config, "model_type", ""), "")
        if any(m.images for m in messages) and not placeholder:
            raise ValueError(f"{self.model_ref}: no way to place images in this model's prompt")
        conversation, n = [], 0
        for m in messages:
            prefix = ""
            for _ in m.images:
                n += 1
                prefix += placeholder.format(n=n)
            conversation.append({"role": m.role, "content": prefix + m.text})
        return self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True, tokenize=False)

    def _to_device(self, inputs: dict[str, Any]) -> dict[str, Any]:
        out = {}
        for key, value in inputs.items():
            if hasattr(value, "to"):
                value = value.to(self.device)
                if value.is_floating_point():
                    value = value.to(self.dtype)
            out[key] = value
        return out

    def _generation_kwargs(self, request: GenerationRequest, prompt_tokens: int) -> dict[str, Any]:
        room = self.max_model_len - prompt_tokens
        if room < 1:
            raise ValueError(
                f"the prompt is {prompt_tokens} tokens; this model's maximum context length "
                f"is {self.max_model_len} tokens"
            )
        if request.max_tokens is not None and request.max_tokens > room:
            raise ValueError(
                f"this model's maximum context length is {self.max_model_len} tokens; the prompt "
                f"is {prompt_tokens} tokens and max_tokens is {request.max_tokens}"
            )
        kwargs: dict[str, Any] = {"max_new_tokens": request.max_tokens or min(DEFAULT_MAX_TOKENS, room)}
        if request.temperature < GREEDY_BELOW:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kwargs.update(do_sample=True, temperature=request.temperature, top_p=request.top_p, top_k=None)
        if self.pad_token_id is not None:
            kwargs["pad_token_id"] = self.pad_token_id
        return kwargs

    # -- Engine ------------------------------------------------------------------------------

    def generate(self, request: GenerationRequest) -> Generation:
        if self.model is None:
            raise RuntimeError("the model is not loaded")
        if not request.messages:
            raise ValueError("messages: at least one message is required")
        images: list[Image.Image] = [im.convert("RGB") for im in request.images]
        extra = {"images": images} if images else {}
        with self._prep_lock:  # a fast tokenizer raises "Already borrowed" when shared by threads
            prompt = self.build_prompt(request.messages)
            try:
                inputs = self.processor(text=prompt, return_tensors="pt", **extra)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"the model's processor refused the request: {exc}") from None
        inputs = dict(inputs)
        prompt_tokens = int(inputs["input_ids"].shape[1])
        return TransformersGeneration(self, inputs, self._generation_kwargs(request, prompt_tokens), request.stop)

    # vLLM sleep mode. Level 1: weights to pinned host memory, accelerator memory released.
    # Level 2: the weights are dropped (little RAM held asleep); reload_weights() reads the
    # checkpoint again, as vLLM's collective_rpc does.
    def sleep(self, level: int = 1) -> None:
        with self._lock:
            if self._sleeping:
                return
            if level == 2 and self.model is not None:
                import gc

                self.model = None
                self._dropped = True
                gc.collect()
                if self.device.startswith("cuda"):
                    import torch

                    torch.cuda.empty_cache()
                log.info("asleep (level 2): weights dropped")
            elif self.model is not None and self.device.startswith("cuda"):
                import torch

                started = time.monotonic()
                for tensor in self._tensors():
                    host = torch.empty(tensor.data.shape, dtype=tensor.data.dtype, device="cpu", pin_memory=True)
                    host.copy_(tensor.data, non_blocking=True)
                    tensor.data = host
                torch.cuda.synchronize()
                torch.cuda.empty_cache()
                log.info(
                    "asleep: weights in pinned host memory after %.2f s; CUDA memory reserved now %d bytes",
                    time.monotonic() - started,
                    torch.cuda.memory_reserved(),
                )
            else:
                log.info("asleep: the weights already live in host memory (%s); nothing to free", self.device)
            self._sleeping = True

    def reload_weights(self) -> None:
        with self._lock:
            self._reload_locked()

    def _reload_locked(self) -> None:
        if not self._dropped:
            return
        started = time.monotonic()
        self.model = (
            _load_model(resolve_model_path(self.model_ref), self.dtype, self.trust_remote_code).to(self.device).eval()
        )
        self._dropped = False
        log.info("weights reloaded from the checkpoint in %.2f s", time.monotonic() - started)

    def wake_up(self) -> None:
        with self._lock:
            if not self._sleeping:
                return
            if self._dropped:  # a plain /wake_up after level 2: the weights come back first
                self._reload_locked()
            elif self.model is not None and self.device.startswith("cuda"):
                import torch

                started = time.monotonic()
                for tensor in self._tensors():
                    tensor.data = tensor.data.to(self.device, non_blocking=True)
                torch.cuda.synchronize()
                log.info("awake: weights back on %s in %.2f s", self.device, time.monotonic() - started)
            self._sleeping = False

    def _tensors(self) -> list[Any]:
        """Every parameter and buffer once (tied weights share one tensor)."""
        seen: set[int] = set()
        out = []
        for t in list(self.model.parameters()) + list(self.model.buffers()):
            if id(t) not in seen:
                seen.add(id(t))
                out.append(t)
        return out

    @property
    def is_sleeping(self) -> bool:
        return self._sleeping
