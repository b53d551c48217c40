"""The cluster's small parts without Ray: the in-process ASGI call, replica slots, aggregation."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from vlmswap.cluster import aggregate, slots
from vlmswap.cluster.asgi_call import Call, Head, call


def _gated_app(gate: asyncio.Event, seen: dict[str, Any]) -> Starlette:
    async def stream(request: Request) -> StreamingResponse:
        seen["body"] = await request.body()

        async def chunks() -> Any:
            yield b"first"
            await gate.wait()
            yield b"second"

        return StreamingResponse(chunks(), media_type="text/event-stream")

    return Starlette(routes=[Route("/s", stream, methods=["POST"])])


def test_call_yields_the_head_and_each_chunk_before_the_app_finishes() -> None:
    async def run() -> None:
        gate = asyncio.Event()
        seen: dict[str, Any] = {}
        it = call(_gated_app(gate, seen), Call("POST", "/s", body=b"payload"))
        head = await it.__anext__()
        assert isinstance(head, Head) and head.status == 200
        assert (b"content-type", b"text/event-stream; charset=utf-8") in head.headers
        assert await it.__anext__() == b"first"  # while the app still waits on the gate
        gate.set()
        assert [c async for c in it] == [b"second"]
        assert seen["body"] == b"payload"

    asyncio.run(run())


def test_closing_the_call_early_tells_the_app_the_client_left() -> None:
    async def run() -> None:
        told: list[str] = []

        async def app(scope: Any, receive: Any, send: Any) -> None:
            await receive()
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"x", "more_body": True})
            told.append((await receive())["type"])

        it = call(app, Call("GET", "/"))
        await it.__anext__()
        await it.__anext__()
        await it.aclose()
        assert told == ["http.disconnect"]

    asyncio.run(run())


def test_an_app_that_fails_before_answering_is_a_json_500() -> None:
    async def run() -> None:
        async def app(scope: Any, receive: Any, send: Any) -> None:
            raise RuntimeError("boom")

        items = [i async for i in call(app, Call("GET", "/"))]
        assert isinstance(items[0], Head) and items[0].status == 500
        assert b'"code": "replica_error"' in items[1]

    asyncio.run(run())


def test_slots_are_exclusive_and_a_dead_holders_slot_is_free_again(tmp_path: Path) -> None:
    a = slots.claim(tmp_path)
    b = slots.claim(tmp_path)
    assert (a.index, b.index) == (0, 1) and a.state_dir != b.state_dir
    a.release()
    again = slots.claim(tmp_path)
    assert again.index == 0
    # A process that holds slot 2 and is killed: its lock goes with it.
    code = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from vlmswap.cluster import slots
        s = slots.claim(Path({str(tmp_path)!r}))
        print(s.index, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "2"
    assert slots.claim(tmp_path).index == 2


def _report(replica: str, slot: int, models: dict[str, dict[str, Any]], resident: str | None) -> dict[str, Any]:
    return {
        "replica": replica,
        "node": "n1",
        "pid": 100 + slot,
        "slot": slot,
        "gpu_ids": [str(slot)],
        "state_dir": f"/s/replica-{slot}",
        "time": 1000.0,
        "routed_models": [resident] if resident else [],
        "metrics": "",
        "status": {
            "resident": resident,
            "queue_length": 1,
            "in_flight": 2,
            "switch": None,
            "switches": 3,
            "policy": "single",
            "host": {},
            "gpu": {"available": True, "name": "L4", "used_bytes": 10, "total_bytes": 100},
            "models": models,
        },
    }


def test_cluster_status_merges_models_and_sums_the_queues() -> None:
    m = {
        "a": {"state": "ready", "starts": 1, "in_flight": 2, "queued": 1, "base_url": "http://x"},
        "b": {"state": "stopped", "starts": 2, "in_flight": 0, "queued": 0},
    }
    n = {
        "a": {"state": "stopped", "starts": 1, "in_flight": 0, "queued": 0},
        "b": {"state": "ready", "starts": 1, "in_flight": 0, "queued": 0},
    }
    st = aggregate.cluster_status([_report("r2", 1, n, "b"), _report("r1", 0, m, "a")], now=1002.0)
    assert [r["replica"] for r in st["replicas"]] == ["r1", "r2"]
    assert st["residents"] == ["a", "b"] and st["resident"] == "a"
    assert st["models"]["a"]["state"] == "ready" and st["models"]["b"]["state"] == "ready"
    assert st["models"]["b"]["starts"] == 3 and st["models"]["a"]["replicas"] == {"r1": "ready", "r2": "stopped"}
    assert "base_url" not in st["models"]["a"]
    assert (st["queue_length"], st["in_flight"], st["switches"]) == (2, 4, 6)
    assert st["gpu"]["used_bytes"] == 20 and st["gpu"]["total_bytes"] == 200
    assert st["replicas"][0]["age_s"] == 2.0


def test_cluster_metrics_label_every_series_with_its_replica() -> None:
    text = textwrap.dedent("""
        # HELP vlmswap_requests_total Requests.
        # TYPE vlmswap_requests_total counter
        vlmswap_requests_total{model="a",status="200"} 3.0
    """).lstrip()
    st = aggregate.cluster_status([_report("r1", 0, {}, "a"), _report("r2", 1, {}, None)], now=1000.0)
    out = aggregate.cluster_metrics(
        {"r1": text, "r2": text.replace("3.0", "5.0")}, aggregate.replica_families(st)
    ).decode()
    fams = {f.name: f for f in text_string_to_metric_families(out)}
    assert {(s.labels["replica"], s.value) for s in fams["vlmswap_requests"].samples} == {("r1", 3.0), ("r2", 5.0)}
    assert out.count("# TYPE vlmswap_requests_total counter") == 1
    info = {s.labels["replica"]: s.labels for s in fams["vlmswap_cluster_replica_info"].samples}
    assert info["r1"]["resident"] == "a" and info["r2"]["gpu_ids"] == "1" and info["r1"]["node"] == "n1"
    assert fams["vlmswap_cluster_replicas"].samples[0].value == 2
    assert {s.labels["replica"]: s.value for s in fams["vlmswap_cluster_replica_queue_length"].samples} == {
        "r1": 1,
        "r2": 1,
    }


def test_the_ingress_wants_the_api_key_and_caps_the_body() -> None:
    import httpx

    from vlmswap.cluster.ingress import ingress_app
    from vlmswap.cluster.options import ClusterOptions
    from vlmswap.registry.config import load_registry

    data = load_registry(None).model_dump(mode="json")
    data["gateway"]["max_body_mb"] = 0.001
    app = ingress_app(ClusterOptions(registry=data, api_key="sekrit"))

    async def run() -> None:
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
            r = await c.get("/api/status")
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            r = await c.post(
                "/v1/chat/completions",
                content=b"x" * 5000,
                headers={"authorization": "Bearer sekrit", "content-type": "application/json"},
            )
            assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"

    asyncio.run(run())


def test_cluster_serve_refuses_bad_options_before_starting_ray(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from vlmswap.cli import app

    bad = tmp_path / "bad.yaml"
    bad.write_text("models: [1, 2]\n")
    cases = [
        (["--config", str(bad)], str(bad)),
        (["--min-replicas", "1"], "--min-replicas needs --max-replicas"),
        (["--min-replicas", "3", "--max-replicas", "2"], "above --max-replicas"),
        (["--host", "0.0.0.0"], "refusing to bind 0.0.0.0 without an API key"),
        (["--downscale-delay-s", "5"], "--downscale-delay-s needs --max-replicas"),
    ]
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        r = CliRunner().invoke(app, ["cluster", "serve", "--port", str(port)])
        assert r.exit_code == 2 and f"127.0.0.1:{port} is already in use" in r.output, r.output
    for args, says in cases:
        r = CliRunner().invoke(app, ["cluster", "serve", *args])
        assert r.exit_code == 2, (args, r.output)
        assert says in r.output, (args, r.output)


def test_lifespan_runs_the_apps_startup_and_shutdown_and_reports_a_failed_start() -> None:
    import contextlib

    from vlmswap.cluster.asgi_call import Lifespan

    async def run() -> None:
        seen: list[str] = []

        @contextlib.asynccontextmanager
        async def ok(app: Any) -> Any:
            seen.append("startup")
            yield
            seen.append("shutdown")

        @contextlib.asynccontextmanager
        async def broken(app: Any) -> Any:
            raise RuntimeError("no manager today")
            yield

        life = Lifespan(Starlette(lifespan=ok))
        await life.start()
        assert seen == ["startup"]
        await life.stop()
        assert seen == ["startup", "shutdown"]
        try:
            await Lifespan(Starlette(lifespan=broken)).start()
        except RuntimeError as exc:
            assert "no manager today" in str(exc)
        else:
            raise AssertionError("a failed startup went unnoticed")

    asyncio.run(run())


def test_the_sidebar_names_each_replicas_node_gpu_and_model_and_nothing_for_one_gateway() -> None:
    from vlmswap.ui.replicas import replicas_caption

    status = {
        "cluster": True,
        "replicas": [
            {"replica": "r1", "node": "gpu-a (10.0.0.5)", "gpu_ids": ["0"], "resident": "ocr", "queue_length": 3},
            {"replica": "r2", "node": "gpu-b (10.0.0.6)", "gpu_ids": [], "resident": None, "queue_length": 0},
        ],
    }
    lines = (replicas_caption(status) or "").split("  \n")
    assert lines == [
        "Cluster of **2** replicas",
        "`r1` on gpu-a · GPU 0 · **ocr** · queued 3",
        "`r2` on gpu-b · no GPU · nothing resident · queued 0",
    ]
    assert replicas_caption({"resident": "ocr", "models": {}}) is None


def test_the_serve_config_is_valid_for_ray_and_its_args_are_the_commands_options() -> None:
    import pytest
    import yaml
    from pydantic import ValidationError
    from ray.serve.schema import ServeDeploySchema

    from tests.support import ROOT
    from vlmswap.cluster.app import ClusterArgs

    config = yaml.safe_load((ROOT / "deploy" / "serve-config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    (app,) = config["applications"]
    assert app["import_path"] == "vlmswap.cluster.app:build"
    opts = ClusterArgs.model_validate(app["args"]).options()
    assert opts.autoscaling and opts.gpus_per_replica == 1
    assert opts.autoscaling_config() == {
        "min_replicas": 1,
        "max_replicas": 2,
        "target_ongoing_requests": 2,
        "upscale_delay_s": 30,
        "downscale_delay_s": 600,
        "look_back_period_s": 30,
    }
    inline = ClusterArgs(registry_yaml="models:\n  m: {served_name: m, cmd: [x]}\n", replicas=3).options()
    assert list(inline.registry["models"]) == ["m"] and inline.replicas == 3 and not inline.autoscaling
    for bad, says in (
        ({"replica": 2}, "replica"),
        ({"registry": "a.yaml", "registry_yaml": "models: {}"}, "not both"),
        ({"min_replicas": 1}, "min_replicas needs max_replicas"),
        ({"min_replicas": 3, "max_replicas": 2}, "above max_replicas"),
    ):
        with pytest.raises(ValidationError, match=says):
            ClusterArgs.model_validate(bad)
    with pytest.raises(ValueError, match="NO_SUCH_KEY_VAR is not set"):
        ClusterArgs(api_key_env="NO_SUCH_KEY_VAR").options()


def test_the_rayservice_embeds_the_same_application_with_a_gpu_per_replica(monkeypatch: Any) -> None:
    import re

    import yaml
    from ray.serve.schema import ServeDeploySchema

    from tests.support import ROOT
    from vlmswap.cluster.app import ClusterArgs

    manifest = yaml.safe_load((ROOT / "deploy" / "rayservice.yaml").read_text())
    assert manifest["apiVersion"] == "ray.io/v1" and manifest["kind"] == "RayService"
    serve_config = yaml.safe_load(manifest["spec"]["serveConfigV2"])
    ServeDeploySchema.model_validate(serve_config)
    local = yaml.safe_load((ROOT / "deploy" / "serve-config.yaml").read_text())
    (app,), (local_app,) = serve_config["applications"], local["applications"]
    assert (app["name"], app["import_path"]) == (local_app["name"], local_app["import_path"])
    monkeypatch.setenv("VLMSWAP_API_KEY", "k8s-secret")
    opts = ClusterArgs.model_validate(app["args"]).options()  # the inline registry parses, the key is read
    assert opts.api_key == "k8s-secret" and {"rapidocr", "qwen3-vl-2b"} <= set(opts.registry["models"])
    cluster = manifest["spec"]["rayClusterConfig"]
    (workers,) = cluster["workerGroupSpecs"]
    (container,) = workers["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(opts.gpus_per_replica).removesuffix(".0")
    assert workers["maxReplicas"] == opts.max_replicas
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    serve_ports = {p["containerPort"] for c in (head, container) for p in c["ports"] if p["name"] == "serve"}
    assert serve_ports == {serve_config["http_options"]["port"]}
    assert cluster["headGroupSpec"]["rayStartParams"]["num-gpus"] == "0"  # no model host on the head
    dockerfile = (ROOT / "deploy" / "Dockerfile.cluster").read_text()
    assert re.search(r"ARG RAY_VERSION=(\S+)", dockerfile)[1] == cluster["rayVersion"]  # type: ignore[index]
    assert container["image"] == head["image"]
