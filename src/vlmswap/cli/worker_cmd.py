"""`vlmswap worker`: serve one engine over vLLM's OpenAI-compatible API."""

from __future__ import annotations

import enum
import sys
from typing import Any, NoReturn

import typer

from vlmswap.api.images import DEFAULT_MAX_PIXELS


class EngineKind(enum.StrEnum):
    rapidocr = "rapidocr"
    transformers = "transformers"


class Device(enum.StrEnum):
    auto = "auto"
    cpu = "cpu"
    cuda = "cuda"


def fail(message: str, code: int = 2) -> NoReturn:
    typer.echo(f"vlmswap worker: {message}", err=True)
    raise typer.Exit(code)


def build_engine(
    engine: EngineKind, model: str | None, device: Device, trust_remote_code: bool, threads: int = 1
) -> Any:
    if engine is EngineKind.rapidocr:
        from vlmswap.worker.engines.rapidocr_engine import RapidOCREngine

        return RapidOCREngine(threads=threads)
    if not model:
        fail("--model is required for --engine transformers (a local folder or a cached hub id)")
    try:
        from vlmswap.worker.engines.transformers_engine import TransformersEngine
    except ImportError as exc:
        fail(f"the transformers engine needs the [transformers] extra: {exc}")
    return TransformersEngine(model, device=device.value, trust_remote_code=trust_remote_code)


def worker(
    engine: EngineKind = typer.Option(..., "--engine", help="Engine to serve."),
    model: str | None = typer.Option(None, "--model", help="Model folder or cached hub id (transformers)."),
    port: int = typer.Option(..., "--port", min=1, max=65535, help="Port to listen on."),
    host: str = typer.Option(
        "127.0.0.1",
        "--host",
        help="Address to bind (loopback by default: the sleep endpoints must not be reachable from outside).",
    ),
    served_model_name: str | None = typer.Option(
        None, "--served-model-name", help="Name clients send as `model`; default: the model path or id, or `rapidocr`."
    ),
    device: Device = typer.Option(Device.auto, "--device", help="Where the transformers engine runs."),
    trust_remote_code: bool = typer.Option(
        False, "--trust-remote-code", help="Allow a checkpoint's own Python code (transformers)."
    ),
    max_body_mb: float = typer.Option(32, "--max-body-mb", min=0.001, help="Largest request body, MiB (413 above)."),
    max_pixels: int = typer.Option(
        DEFAULT_MAX_PIXELS, "--max-pixels", min=1, help="Largest image, in pixels (400 above)."
    ),
    threads: int = typer.Option(
        1,
        "--threads",
        min=1,
        help="rapidocr: onnxruntime threads per model (1 costs "
        "the least CPU per page; more can shorten one page on idle cores).",
    ),
) -> None:
    """Serve one engine over vLLM's OpenAI-compatible API (health, models, chat, sleep/wake)."""
    eng = build_engine(engine, model, device, trust_remote_code, threads)
    name = served_model_name or (model if engine is EngineKind.transformers else "rapidocr") or "rapidocr"
    try:
        eng.load()  # before binding, as vLLM does: the port opens once the model is ready
    except Exception as exc:
        fail(
            f"cannot load {engine.value} engine{f' from {model}' if model else ''}: {type(exc).__name__}: {exc}", code=1
        )

    import uvicorn

    from vlmswap.worker.server import create_app

    app = create_app(eng, name, max_body_bytes=int(max_body_mb * 1024 * 1024), max_pixels=max_pixels, loaded=True)

    class _Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:
                print(f"vlmswap worker ready: {engine.value} serving {name!r} on http://{host}:{port}", flush=True)

    config = uvicorn.Config(
        app, host=host, port=port, log_level="warning", access_log=False, timeout_graceful_shutdown=5, lifespan="on"
    )
    _Server(config).run()
    sys.stdout.flush()


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)
