"""deploy/serve-config.yaml under `serve run`, on a local Ray with two logical GPUs; its autoscaling.

The checked-in file is run as it is but for what a test must change: its registry (fault
servers), its port, Ray's reaction times (seconds instead of minutes) and an API key. The
replica count then goes 1 -> 2 under queued load and back to 1 when idle.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest
import yaml

from tests.cluster.conftest import SPAWNLOG, alive, bearer
from tests.servers import fault_cmd
from tests.support import ROOT, free_port, wait_until

pytest.importorskip("ray.serve", reason="the cluster mode needs the ray extra (make test installs it)")

CONFIG = ROOT / "deploy" / "serve-config.yaml"
RAYHOST = Path(__file__).resolve().parent / "rayhost.py"
SERVE = Path(sys.executable).parent / "serve"
KEY = "serve-config-key-0001"
PUSH_S = "0.5"  # how often Ray Serve's handles and replicas report ongoing requests (Ray: 10 s)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    tmp = tmp_path_factory.mktemp("serve-config")
    spawns = tmp / "spawns.log"
    spawns.touch()

    def model(name: str, *flags: str) -> dict[str, Any]:
        cmd = ["${PYTHON}", str(SPAWNLOG), str(spawns), name, "--", *fault_cmd(*flags)]
        return {"served_name": name, "cmd": cmd, "vram_gb": 0, "startup_timeout_s": 60}

    registry = tmp / "registry.yaml"
    models = {"fast": model("fast"), "slow": model("slow", "--response-delay", "2")}
    registry.write_text(yaml.safe_dump({"models": models}, sort_keys=False))
    config = yaml.safe_load(CONFIG.read_text())
    port = free_port()
    config["http_options"]["port"] = port
    args = config["applications"][0]["args"]
    args.update(
        registry=str(registry), upscale_delay_s=1, downscale_delay_s=4, look_back_period_s=2, api_key_env="TEST_KEY"
    )
    (tmp / "serve-config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    env = {
        **os.environ,
        "VLMSWAP_STATE_DIR": str(tmp / "state"),
        "TEST_KEY": KEY,
        "RAY_AUTH_MODE": "token",  # this Ray's own token, for the two processes that share it
        "RAY_AUTH_TOKEN": secrets.token_hex(32),
        "RAY_SERVE_HANDLE_AUTOSCALING_METRIC_PUSH_INTERVAL_S": PUSH_S,
        "RAY_SERVE_REPLICA_AUTOSCALING_METRIC_PUSH_INTERVAL_S": PUSH_S,
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("VLMSWAP_API_KEY", None)
    host_log, serve_log = open(tmp / "ray.log", "ab"), open(tmp / "serve.log", "ab")
    host = subprocess.Popen(
        [sys.executable, str(RAYHOST), "2", "2"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=host_log,
        env=env,
        start_new_session=True,
    )
    serve: subprocess.Popen[bytes] | None = None
    try:
        assert host.stdout is not None
        address = host.stdout.readline().decode().strip()
        assert address, (tmp / "ray.log").read_text()[-3000:]
        serve = subprocess.Popen(
            [str(SERVE), "run", "--address", address, str(tmp / "serve-config.yaml")],
            cwd=tmp,
            env=env,
            stdout=serve_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        http = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60, trust_env=False, headers=bearer(KEY))

        def log() -> str:
            return f"serve run:\n{(tmp / 'serve.log').read_text(errors='replace')[-4000:]}"

        def up() -> bool:
            assert serve is not None and serve.poll() is None, log()
            with contextlib.suppress(httpx.TransportError, ValueError, KeyError):
                return bool(http.get("/health", timeout=5).json()["replicas"] >= 1)
            return False

        wait_until(up, 180, "the application up under serve run", log, poll_s=0.5)
        yield {"http": http, "spawns": spawns, "log": log}
        http.close()
    finally:
        if serve is not None and serve.poll() is None:
            serve.send_signal(signal.SIGINT)  # serve run's Ctrl-C: the application is deleted
            try:
                serve.wait(90)
            except subprocess.TimeoutExpired:
                os.killpg(serve.pid, signal.SIGKILL)
        with contextlib.suppress(BrokenPipeError):
            assert host.stdin is not None
            host.stdin.close()  # the Ray host shuts its Ray down
        try:
            host.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(host.pid, signal.SIGKILL)
        host_log.close()
        serve_log.close()
        for line in spawns.read_text().splitlines():  # whatever a failed test left: reap it
            with contextlib.suppress(psutil.Error):
                psutil.Process(int(line.split()[0])).kill()


def test_the_config_file_serves_health_and_a_chat_request_under_serve_run(served: dict[str, Any]) -> None:
    http = served["http"]
    assert http.get("/health").json()["status"] == "ok"
    assert http.get("/api/status", headers={"authorization": "Bearer wrong"}).status_code == 401
    r = http.post("/v1/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"].startswith("[fast]")
    st = http.get("/api/status").json()
    assert (st["cluster"] is True and [r["gpu_ids"] for r in st["replicas"]] in (["0"], ["1"])) or st["replicas"]
    assert len(st["replicas"]) == 1 and len(st["replicas"][0]["gpu_ids"]) == 1  # a logical GPU of its own


def test_queued_load_scales_the_replicas_to_max_and_idle_back_to_min(served: dict[str, Any]) -> None:
    http = served["http"]

    def replicas() -> list[dict[str, Any]]:
        return list(http.get("/api/status").json()["replicas"])

    assert len(replicas()) == 1
    stop = threading.Event()
    answers: list[int] = []

    def load() -> None:  # "slow" answers after 2 s: eight of these keep ~8 requests ongoing
        with httpx.Client(base_url=str(http.base_url), timeout=120, trust_env=False, headers=dict(http.headers)) as c:
            while not stop.is_set():
                body = {"model": "slow", "messages": [{"role": "user", "content": "load"}]}
                answers.append(c.post("/v1/chat/completions", json=body).status_code)

    threads = [threading.Thread(target=load, daemon=True) for _ in range(8)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    try:
        two = wait_until(lambda: len(r := replicas()) == 2 and r, 150, "a second replica under load", served["log"])
        scaled_up_s = time.monotonic() - t0
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    assert sorted(len(r["gpu_ids"]) for r in two) == [1, 1] and two[0]["gpu_ids"] != two[1]["gpu_ids"]
    assert answers and set(answers) == {200}, answers
    t1 = time.monotonic()
    wait_until(lambda: len(replicas()) == 1, 150, "back to one replica when idle", served["log"])
    print(f"scaled 1 -> 2 in {scaled_up_s:.1f} s under load, 2 -> 1 in {time.monotonic() - t1:.1f} s idle")
    # The replica that went stopped its backends on the way out.
    gone = {r["pid"] for r in two} - {r["pid"] for r in replicas()}
    for line in served["spawns"].read_text().splitlines():
        pid, parent, _ = line.split()
        if int(parent) in gone:
            assert not alive(int(pid)), f"worker {pid} of a replica scaled away is still alive"
