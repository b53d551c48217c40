"""Containers behind a real gateway (`python -m vlmswap serve`): switching with processes,
the one-resident invariant sampled every 10 ms, orphans after SIGKILL, logs, errors."""

from __future__ import annotations

import contextlib
import io
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
import yaml

import docker
from tests.docker.conftest import failing_spec, fault_process_spec, fault_server_spec, httpd_spec, worker_spec
from tests.support import FONT, free_port, wait_http
from vlmswap.backends import docker as dk

pytestmark = pytest.mark.docker


class Gateway:
    """One `vlmswap serve` process on a free port with its own state dir; stderr kept in a file."""

    def __init__(self, registry: dict[str, Any], state_dir: Path, env: dict[str, str] | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.state_dir = state_dir
        self.config = state_dir.parent / f"registry-{uuid.uuid4().hex[:6]}.yaml"
        self.config.write_text(yaml.safe_dump(registry))
        self.log_path = state_dir.parent / f"gateway-{self.port}.log"
        self._log = open(self.log_path, "wb")
        full_env = {**os.environ, "VLMSWAP_STATE_DIR": str(state_dir), **(env or {})}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "vlmswap", "serve", "--config", str(self.config), "--port", str(self.port)],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        wait_http(self.url + "/health", 60, self.proc)
        self.http = httpx.Client(base_url=self.url, timeout=120, trust_env=False)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def load(self, name: str) -> httpx.Response:
        return self.http.post(f"/api/models/{name}/load", params={"wait": "true"})

    def close(self, sig: int = signal.SIGTERM) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


@pytest.fixture
def gateways() -> Iterator[list[Gateway]]:
    started: list[Gateway] = []
    yield started
    for gw in started:
        gw.close()


class InvariantSampler(threading.Thread):
    """Every 10 ms: which model servers are alive? Live fault_server processes carrying this
    test's token (on the host or inside a container) plus running containers labelled with
    this gateway's id. The invariant is that never two are alive at once."""

    def __init__(self, token: str, gid: str):
        super().__init__(daemon=True)
        self.token = token.encode()
        self.gid = gid
        self.max_alive = 0
        self.samples = 0
        self.seen: set[str] = set()
        self.violations: list[set[str]] = []
        self._halt = threading.Event()

    def _processes(self) -> set[str]:
        alive = set()
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/cmdline", "rb") as f:
                    argv = f.read().split(b"\0")
                if b"fault_server" not in b" ".join(argv) or self.token not in b" ".join(argv):
                    continue
                with open(f"/proc/{entry}/stat", "rb") as f:
                    if f.read().rsplit(b")", 1)[1].split()[0] == b"Z":
                        continue  # a zombie holds nothing
            except OSError:
                continue
            i = argv.index(b"--served-model-name")
            alive.add(argv[i + 1].decode())
        return alive

    def run(self) -> None:
        client = dk.connect()
        try:
            while not self._halt.is_set():
                alive = self._processes()
                running = client.containers.list(
                    filters={"label": f"{dk.LABEL_GATEWAY}={self.gid}", "status": "running"}
                )
                alive |= {c.labels.get(dk.LABEL_SERVED, c.name) for c in running}
                self.samples += 1
                self.seen |= alive
                self.max_alive = max(self.max_alive, len(alive))
                if len(alive) > 1:
                    self.violations.append(alive)
                time.sleep(0.01)
        finally:
            client.close()

    def stop(self) -> None:
        self._halt.set()
        self.join(10)


def chat(client: openai.OpenAI, model: str, text: str) -> str:
    r = client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}])
    return r.choices[0].message.content or ""


def test_switching_containers_and_a_process_never_two_alive(busybox_image, state_dir, gateways):
    tok = uuid.uuid4().hex[:8]
    a, b, p = f"{tok}-dock-a", f"{tok}-dock-b", f"{tok}-proc-p"
    registry = {
        "gateway": {"stop_grace_s": 5, "max_wait_s": 5},
        "models": {
            "dock-a": fault_server_spec(busybox_image, a, free_port()),
            # busybox httpd ignoring SIGTERM: every switch away from it waits out its 1 s grace
            "dock-b": httpd_spec(busybox_image, b, free_port(), ignore_term=True, stop_grace_s=1),
            "proc-p": fault_process_spec(p),
        },
    }
    gw = Gateway(registry, state_dir)
    gateways.append(gw)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0, timeout=120)
    sampler = InvariantSampler(tok, dk.gateway_id(state_dir))
    sampler.start()
    try:
        assert chat(client, a, "one") == f"[{a}] echo: one"
        assert gw.load("dock-b").json()["state"] == "ready"
        assert chat(client, p, "two") == f"[{p}] echo: two"
        assert chat(client, a, "three") == f"[{a}] echo: three"
        assert gw.load("dock-b").json()["state"] == "ready"
        logs = gw.http.get("/api/models/dock-b/logs", params={"tail": 200}).json()["lines"]
        assert f"model {b} listening on 8080" in logs
        # concurrent clients for the two chat models: queued, switched, never overlapping
        answers: dict[str, str] = {}

        def ask(model: str, i: int) -> None:
            answers[f"{model}/{i}"] = chat(client, model, f"q{i}")

        threads = [threading.Thread(target=ask, args=(m, i)) for i in range(3) for m in (p, a)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert answers == {f"{m}/{i}": f"[{m}] echo: q{i}" for i in range(3) for m in (p, a)}
        status = gw.http.get("/api/status").json()
        assert status["switches"] >= 6
        resident = status["resident"]
        assert status["models"][resident]["pids"], "the resident backend's host pids"
    finally:
        sampler.stop()
    assert sampler.samples > 100
    assert sampler.seen == {a, b, p}, "the sampler must have seen every model alive"
    assert sampler.violations == [] and sampler.max_alive == 1


def test_gateway_killed_leaves_container_next_gateway_removes_it(engine, busybox_image, state_dir, gateways):
    registry = {"models": {"dock-a": httpd_spec(busybox_image, "orphan-a", free_port())}}
    first = Gateway(registry, state_dir)
    gateways.append(first)
    assert first.load("dock-a").json()["state"] == "ready"
    (container,) = engine.containers.list(filters={"label": f"{dk.LABEL_GATEWAY}={dk.gateway_id(state_dir)}"})
    first.proc.send_signal(signal.SIGKILL)
    first.proc.wait(10)
    container.reload()
    assert container.status == "running", "a gateway killed hard cannot stop its container"

    second = Gateway(registry, state_dir)
    gateways.append(second)
    with pytest.raises(docker.errors.NotFound):
        engine.containers.get(container.id)
    expected = f"stopped and removed orphaned container {container.name} (model dock-a) left by an earlier gateway"
    assert expected in second.output()
    assert second.http.get("/api/status").json()["resident"] is None
    assert second.load("dock-a").json()["state"] == "ready"  # and the model starts again cleanly


def test_container_exiting_during_start_fails_the_load_with_its_log(busybox_image, state_dir, gateways):
    registry = {"models": {"crashy": failing_spec(busybox_image, "crashy", free_port(), code=7)}}
    gw = Gateway(registry, state_dir)
    gateways.append(gw)
    t0 = time.monotonic()
    r = gw.load("crashy")
    assert time.monotonic() - t0 < 20, "must fail at once, not at startup_timeout_s"
    assert r.status_code == 502
    message = r.json()["error"]["message"]
    assert "exited during start (exit code 7)" in message
    lines = gw.http.get("/api/models/crashy/logs").json()["lines"]
    assert "RuntimeError: CUDA out of memory" in lines
    assert gw.http.get("/health").status_code == 200


def test_engine_unreachable_is_named_and_the_gateway_keeps_serving(busybox_image, state_dir, tmp_path, gateways):
    dead = f"unix://{tmp_path}/dead.sock"
    registry = {
        "models": {
            "dock-a": httpd_spec(busybox_image, "a", free_port()),
            "proc-p": fault_process_spec(f"{uuid.uuid4().hex[:8]}-p"),
        }
    }
    gw = Gateway(registry, state_dir, env={"DOCKER_HOST": dead})
    gateways.append(gw)
    assert f"could not look for orphaned containers: Docker engine not reachable at {dead} (DOCKER_HOST)" in gw.output()
    r = gw.load("dock-a")
    assert r.status_code == 502
    assert f"Docker engine not reachable at {dead} (DOCKER_HOST)" in r.json()["error"]["message"]
    assert gw.load("proc-p").json()["state"] == "ready"  # the process model is unaffected


def _text_image(text: str) -> str:
    import base64

    from PIL import Image, ImageDraw, ImageFont

    img = Image.new("RGB", (640, 120), "white")
    ImageDraw.Draw(img).text((20, 30), text, fill="black", font=ImageFont.truetype(FONT, 48))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def test_real_worker_in_a_container_answers_chat_through_the_gateway(busybox_image, state_dir, gateways):
    registry = {"models": {"ocr-docker": worker_spec(busybox_image, "ocr-in-docker", free_port())}}
    gw = Gateway(registry, state_dir)
    gateways.append(gw)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0, timeout=180)
    r = client.chat.completions.create(
        model="ocr-in-docker",
        messages=[
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": _text_image("HELLO DOCKER 42")}},
                    {"type": "text", "text": "Read the text in the image."},
                ],
            }
        ],
    )
    words = re.sub(r"[^A-Z0-9 ]", " ", (r.choices[0].message.content or "").upper()).split()
    assert {"HELLO", "DOCKER", "42"} <= set(words), r.choices[0].message.content
    status = gw.http.get("/api/status").json()
    assert status["resident"] == "ocr-docker"
    assert status["models"]["ocr-docker"]["backend"] == "docker"
    logs = gw.http.get("/api/models/ocr-docker/logs").json()["lines"]
    assert any("vlmswap worker ready: rapidocr serving 'ocr-in-docker'" in line for line in logs)
    with contextlib.suppress(Exception):
        gw.http.post("/api/unload")


def test_gateway_sigterm_stops_and_removes_its_container(engine, busybox_image, state_dir, gateways):
    registry = {"models": {"dock-a": httpd_spec(busybox_image, "bye-a", free_port())}}
    gw = Gateway(registry, state_dir)
    gateways.append(gw)
    assert gw.load("dock-a").json()["state"] == "ready"
    label = {"label": f"{dk.LABEL_GATEWAY}={dk.gateway_id(state_dir)}"}
    assert len(engine.containers.list(filters=label)) == 1
    gw.close(signal.SIGTERM)
    assert gw.proc.returncode is not None
    assert engine.containers.list(all=True, filters=label) == []


def test_container_crash_while_ready_is_seen_and_the_next_request_restarts_it(busybox_image, state_dir, gateways):
    name = f"{uuid.uuid4().hex[:8]}-crash"
    registry = {
        "gateway": {"backoff_initial_s": 0.1},
        "models": {"dock-a": fault_server_spec(busybox_image, name, free_port())},
    }
    gw = Gateway(registry, state_dir)
    gateways.append(gw)
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="none", max_retries=0, timeout=60)
    assert chat(client, name, "hi") == f"[{name}] echo: hi"
    with pytest.raises(openai.APIStatusError):
        chat(client, name, "__crash__")
    deadline = time.monotonic() + 20
    while gw.http.get("/api/status").json()["models"]["dock-a"]["state"] != "failed":
        assert time.monotonic() < deadline, "the crash of a ready container went unnoticed"
        time.sleep(0.05)
    model = gw.http.get("/api/status").json()["models"]["dock-a"]
    assert "exit code 3" in (model["last_error"] or "")
    while model["backoff_s"]:  # the restart backoff after a failure (0.1 s here)
        assert time.monotonic() < deadline
        time.sleep(0.02)
        model = gw.http.get("/api/status").json()["models"]["dock-a"]
    assert chat(client, name, "again") == f"[{name}] echo: again"
