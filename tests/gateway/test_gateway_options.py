"""Gateway options that need their own gateway: auth, body cap, queue bound, ttl, preload,
shutdown, the CLI, and the real rapidocr worker as a backend."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import httpx
import openai
import pytest

from tests.gateway.conftest import alive, backend_processes, fault_model, rapidocr_model, start_gateway, stop_gateway
from tests.support import FONT, PY, ROOT


def test_auth_required_on_every_route_but_health(tmp_path: Path):
    with start_gateway(tmp_path, {"alpha": fault_model("org/alpha")}, api_key="s3cret") as gw:
        assert httpx.get(gw.url + "/health", trust_env=False).status_code == 200
        for path in ("/v1/models", "/api/status", "/metrics", "/api/events", "/api/models/alpha/logs"):
            r = httpx.get(gw.url + path, trust_env=False)
            assert r.status_code == 401, path
            assert r.json()["error"]["type"] == "authentication_error"
        r = httpx.post(
            gw.url + "/v1/chat/completions",
            json={"model": "org/alpha", "messages": []},
            headers={"authorization": "Bearer wrong"},
            trust_env=False,
        )
        assert r.status_code == 401
        assert httpx.post(gw.url + "/api/unload", trust_env=False).status_code == 401
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="s3cret", max_retries=0)
        out = client.chat.completions.create(model="org/alpha", messages=[{"role": "user", "content": "ok"}])
        assert out.choices[0].message.content == "[org/alpha] echo: ok"
        bad = openai.OpenAI(base_url=gw.url + "/v1", api_key="nope", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.models.list()
        from vlmswap.client import Client, GatewayError

        with Client(gw.url, api_key="s3cret") as c:  # admin API and its event stream, with the key
            assert c.switch("alpha")["resident"] == "alpha"
            assert c.unload()["unloading"] is True
        with Client(gw.url) as c, pytest.raises(GatewayError) as info:
            c.status()
        assert info.value.status == 401


def test_body_cap_413(tmp_path: Path):
    with start_gateway(tmp_path, {"alpha": fault_model("org/alpha")}, max_body_mb=0.01) as gw:
        big = "x" * 20_000
        r = gw.chat("org/alpha", big)
        assert r.status_code == 413
        assert r.json()["error"]["code"] == "body_too_large"

        def chunks():
            yield b'{"model": "org/alpha", "messages": [{"role": "user", "content": "'
            for _ in range(20):
                yield b"y" * 1000
            yield b'"}]}'

        r = httpx.post(
            gw.url + "/v1/chat/completions",
            content=chunks(),
            trust_env=False,
            headers={"content-type": "application/json"},
        )  # chunked: no Content-Length
        assert r.status_code == 413
        assert gw.chat("org/alpha", "small").status_code == 200  # and it serves on
        assert gw.status()["models"]["alpha"]["in_flight"] == 0


def test_queue_full_rejects_with_503_and_retry_after(tmp_path: Path):
    models = {"slowstart": fault_model("org/slowstart", "--startup-delay", "2")}
    with start_gateway(tmp_path, models, max_queue=3) as gw:

        async def burst():
            async with httpx.AsyncClient(trust_env=False, timeout=60) as c:
                body = {"model": "org/slowstart", "messages": [{"role": "user", "content": "q"}]}
                return await asyncio.gather(*(c.post(gw.url + "/v1/chat/completions", json=body) for _ in range(6)))

        results = asyncio.run(burst())
        codes = sorted(r.status_code for r in results)
        assert codes == [200, 200, 200, 503, 503, 503], codes
        for r in results:
            if r.status_code == 503:
                assert int(r.headers["retry-after"]) >= 1
                assert "queue full" in r.json()["error"]["message"]
        assert gw.chat("org/slowstart").status_code == 200


def test_ttl_unloads_idle_model(tmp_path: Path):
    with start_gateway(tmp_path, {"alpha": fault_model("org/alpha", ttl_s=1)}) as gw:
        assert gw.chat("org/alpha").status_code == 200
        pids = gw.status()["models"]["alpha"]["pids"]
        t0 = time.monotonic()
        st = gw.wait_for(lambda s: s["models"]["alpha"]["state"] == "stopped", timeout=15)
        assert time.monotonic() - t0 >= 0.5
        assert st["resident"] is None
        assert not any(alive(p) for p in pids)
        assert gw.chat("org/alpha").status_code == 200  # and it comes back on demand


def test_preload_and_shutdown_leave_nothing_running(tmp_path: Path):
    models = {"alpha": fault_model("org/alpha", "--child"), "beta": fault_model("org/beta")}
    with start_gateway(tmp_path, models, "--preload", "alpha") as gw:
        st = gw.wait_for(lambda s: s["resident"] == "alpha", timeout=30)
        pids = st["models"]["alpha"]["pids"]
        assert len(pids) >= 2  # the server and its child
        assert (gw.state_dir / "pids" / "alpha.json").exists()
        procs = backend_processes(gw.state_dir)
        assert {p.pid for p in procs} >= set(pids)
        assert stop_gateway(gw) in (0, -signal.SIGTERM)  # uvicorn re-raises the signal after its graceful exit
        deadline = time.monotonic() + 5
        while backend_processes(gw.state_dir) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert backend_processes(gw.state_dir) == []
        assert not (gw.state_dir / "pids" / "alpha.json").exists()


def test_orphans_of_a_killed_gateway_are_stopped_and_reported(tmp_path: Path):
    models = {"alpha": fault_model("org/alpha")}
    with start_gateway(tmp_path / "one", models) as gw:
        gw.chat("org/alpha")
        orphan = gw.status()["models"]["alpha"]["pids"][0]
        os.killpg(gw.proc.pid, signal.SIGKILL)  # the gateway dies hard; its backend lives on
        gw.proc.wait(10)
        assert alive(orphan)
        state = gw.state_dir
        # a second gateway on the same state dir
        cfg = tmp_path / "one" / "registry.yaml"
        env = {**os.environ, "VLMSWAP_STATE_DIR": str(state), "PYTHONPATH": str(ROOT)}
        port = __import__("tests.support", fromlist=["free_port"]).free_port()
        proc = subprocess.Popen(
            [PY, "-m", "vlmswap", "serve", "--config", str(cfg), "--port", str(port)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            from tests.support import wait_http

            wait_http(f"http://127.0.0.1:{port}/health", 60, proc)
            assert not alive(orphan)
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            out, _ = proc.communicate(timeout=30)
        assert b"stopped orphaned backend alpha" in out


def test_non_loopback_without_key_is_refused(tmp_path: Path):
    r = subprocess.run(
        [PY, "-m", "vlmswap", "serve", "--host", "0.0.0.0", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "VLMSWAP_API_KEY": ""},
    )
    assert r.returncode == 2
    assert "refusing to bind 0.0.0.0" in r.stderr and "--insecure" in r.stderr


def test_bad_config_is_one_line_and_exit_2(tmp_path: Path):
    cfg = tmp_path / "bad.yaml"
    cfg.write_text("models:\n  x:\n    served_name: x\n")
    r = subprocess.run([PY, "-m", "vlmswap", "serve", "--config", str(cfg)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and str(cfg) in r.stderr and "cmd" in r.stderr
    r = subprocess.run(
        [PY, "-m", "vlmswap", "serve", "--config", str(cfg) + ".missing"], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "missing" in r.stderr


def test_cli_status_switch_unload(tmp_path: Path):
    models = {"alpha": fault_model("org/alpha"), "broken": fault_model("org/broken", "--exit-during-start", "5")}
    with start_gateway(tmp_path, models) as gw:
        env = {**os.environ, "VLMSWAP_GATEWAY": gw.url}

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([PY, "-m", "vlmswap", *args], capture_output=True, text=True, timeout=60, env=env)

        r = cli("switch", "alpha")
        assert r.returncode == 0, r.stderr
        assert "alpha is ready" in r.stdout
        assert "loading" in r.stderr  # the progress bar showed the phases
        r = cli("status")
        assert r.returncode == 0 and "alpha" in r.stdout and "ready" in r.stdout and "org/alpha" in r.stdout
        r = cli("status", "--json")
        assert json.loads(r.stdout)["resident"] == "alpha"
        r = cli("switch", "broken")
        assert r.returncode == 1
        assert "exited during start" in r.stderr and "simulated failure while loading" in r.stderr
        r = cli("unload")
        assert r.returncode == 0
        r = cli("switch", "nope")
        assert r.returncode == 1 and "does not exist" in r.stderr
        r = subprocess.run(
            [PY, "-m", "vlmswap", "status", "--gateway", "http://127.0.0.1:9"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert r.returncode == 1 and "not reachable" in r.stderr


def test_rapidocr_worker_behind_the_gateway(tmp_path: Path):
    """The real embedded worker as a backend, switched against a fault server, via the openai client."""
    import base64
    import io

    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (420, 80), "white")
    ImageDraw.Draw(img).text((10, 20), "HELLO GATEWAY", fill="black", font=ImageFont.truetype(FONT, 36))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
    models = {"ocr": rapidocr_model("rapidocr", aliases=["embedded"]), "alpha": fault_model("org/alpha")}
    with start_gateway(tmp_path, models) as gw:
        client = openai.OpenAI(base_url=gw.url + "/v1", api_key="unused", max_retries=0, timeout=120)
        msg = [
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": url}},
                    {"type": "text", "text": "Extract the text content from this image."},
                ],
            }
        ]
        out = client.chat.completions.create(model="embedded", messages=msg)
        assert "HELLO" in (out.choices[0].message.content or "").upper()
        stream = client.chat.completions.create(model="rapidocr", messages=msg, stream=True)
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert "GATEWAY" in text.upper()
        # The Python client's OCR call: the document pipeline behind /api/ocr, on the same worker.
        from vlmswap.client import Client

        page = tmp_path / "page.png"
        img.save(page)
        with Client(gw.url) as c:
            doc = c.ocr(page, model="rapidocr", mode="ocr")
        assert type(doc).__name__ == "Document"
        assert "HELLO" in json.dumps(doc.to_dict()).upper()
        assert gw.status()["models"]["ocr"]["starts"] == 1
        assert gw.chat("org/alpha").status_code == 200  # and away from the worker
        st = gw.status()
        assert st["resident"] == "alpha" and st["models"]["ocr"]["state"] == "stopped"
