"""Policy fit with real backend processes and a declared card: who is awake together, learned
numbers that survive a restart, eta_s on switch events."""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from tests.gateway_e2e.conftest import fault_model
from tests.gateway_e2e.test_stress import Events
from tests.servers.rawhttp import Conn, chat_body, post

SIZES = {"a": 4, "b": 4, "c": 6}


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fit_keeps_two_awake_makes_room_for_the_third_and_never_exceeds_the_budget(gateways, tmp_path):
    token = uuid.uuid4().hex[:8]
    models = {
        m: fault_model("--response-delay", "0.02", served_name=f"fit-{token}-{m}", vram_gb=g) for m, g in SIZES.items()
    }
    gw = gateways(models, policy="fit", gpu_memory_gb=16, gpu_budget_gb=10, max_wait_s=0.5, drain_timeout_s=10)
    sampled = tmp_path / "samples.json"
    sizes = "sizes=" + ",".join(f"{m}:{g}" for m, g in SIZES.items())
    sampler = subprocess.Popen(
        [sys.executable, str(Path(__file__).with_name("sampler.py")), f"fit-{token}", str(sampled), "0.010", sizes],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert sampler.stdout.readline().strip() == "sampling"
    # the first two first, together; then 30 clients over all three
    assert gw.chat(f"fit-{token}-a").status_code == 200
    assert gw.chat(f"fit-{token}-b").status_code == 200
    st = gw.status()
    assert sorted(st["awake"]) == ["a", "b"] and st["models"]["a"]["starts"] == 1
    rng = random.Random(7)
    order = [rng.choice("abc") for _ in range(150)]
    statuses: list[int] = []
    host, port = gw.url.split("//")[1].split(":")

    async def client(k: int) -> None:
        conn = await Conn(host, int(port)).open()
        try:
            for i in range(k, len(order), 30):
                raw = post("/v1/chat/completions", chat_body(f"fit-{token}-{order[i]}", f"r{i}"), host, int(port))
                status, _, _, _ = await conn.request(raw)
                statuses.append(status)
        finally:
            await conn.close()

    async def run_all() -> None:
        await asyncio.gather(*(client(k) for k in range(30)))

    try:
        asyncio.run(run_all())
    finally:
        sampler.terminate()
        sampler.wait(10)
        sampler.stdout.close()
    samples = json.loads(sampled.read_text())
    assert statuses.count(200) == len(order), sorted(set(statuses))
    assert samples["max"] <= 10, f"declared {samples['max']} GB alive at once: {samples['worst_pids']}"
    assert len(samples["worst_pids"]) == 2  # two were awake together
    st = gw.status()
    assert st["models"]["c"]["starts"] >= 1 and st["switches"] >= 3


def test_single_still_never_has_two(gateways):
    gw = gateways({"a": fault_model(vram_gb=1), "b": fault_model(vram_gb=1)}, gpu_memory_gb=16)
    assert gw.chat("a").status_code == 200
    assert gw.chat("b").status_code == 200
    st = gw.status()
    assert st["awake"] == ["b"] and st["models"]["a"]["state"] == "stopped"


def test_learned_numbers_survive_a_restart_and_give_an_eta_from_the_second_load_on(gateways):
    gw = gateways({"a": fault_model("--startup-delay", "0.3"), "b": fault_model()})
    events = Events(gw.url)
    events.start()
    assert events.connected.wait(10)
    for name in ("a", "b", "a"):
        assert gw.chat(name).status_code == 200
    loads = [
        e
        for e in events.events
        if e.get("type") == "phase" and e["model"] == "a" and e["phase"] in ("starting", "loading", "ready")
    ]
    first_ready = next(i for i, e in enumerate(loads) if e["phase"] == "ready")
    assert all("eta_s" not in e for e in loads[: first_ready + 1])  # nothing learned yet
    assert all(e.get("eta_s", 0) >= 0.3 for e in loads[first_ready + 1 :])  # learned from the first start
    stats = gw.model("a")["stats"]
    assert stats["cold_start_s"]["count"] == 2 and stats["cold_start_s"]["median"] >= 0.3
    gw.stop()
    gw2 = gateways({"a": fault_model("--startup-delay", "0.3"), "b": fault_model()}, state_dir=gw.state_dir)
    assert gw2.model("a")["stats"]["cold_start_s"]["count"] == 2
    out = subprocess.run(
        [sys.executable, "-m", "vlmswap", "stats", "--gateway", gw2.url], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0 and "cold start" in out.stdout and " a " in out.stdout.replace("│", " ")
    r = httpx.post(gw2.url + "/api/models/a/load", timeout=30, trust_env=False)
    assert r.status_code in (200, 202)


def test_a_streamed_request_that_waits_for_a_switch_sees_its_progress_as_reasoning(gateways):
    import openai

    gw = gateways({"a": fault_model(), "b": fault_model("--startup-delay", "0.5")}, stream_loading_status=True)
    assert gw.chat("a").status_code == 200
    client = openai.OpenAI(
        base_url=gw.url + "/v1", api_key="none", max_retries=0, http_client=httpx.Client(trust_env=False)
    )
    stream = client.chat.completions.create(
        model="b", messages=[{"role": "user", "content": "hello there"}], stream=True
    )
    reasoning, content = [], []
    for chunk in stream:
        delta = chunk.choices[0].delta
        extra = (delta.model_extra or {}).get("reasoning_content")
        if extra:
            assert not content, "progress after the answer began"
            reasoning.append(extra)
        if delta.content:
            content.append(delta.content)
    text = "".join(reasoning)
    assert "stopping a" in text and "b: starting" in text and "b: ready" in text, text
    assert "".join(content) == "[b] echo: hello there"
    # without a switch to wait for, nothing extra is sent
    stream = client.chat.completions.create(model="b", messages=[{"role": "user", "content": "again"}], stream=True)
    assert not any((c.choices[0].delta.model_extra or {}).get("reasoning_content") for c in stream if c.choices)


def test_loading_status_stream_ends_with_an_error_event_when_the_start_fails(gateways):
    gw = gateways({"a": fault_model(), "broken": fault_model("--exit-during-start", "3")}, stream_loading_status=True)
    assert gw.chat("a").status_code == 200
    with httpx.stream(
        "POST",
        gw.url + "/v1/chat/completions",
        timeout=60,
        trust_env=False,
        json={"model": "broken", "stream": True, "messages": [{"role": "user", "content": "x"}]},
    ) as r:
        assert r.status_code == 200  # opened by the progress
        lines = [line for line in r.iter_lines() if line.startswith("data: ")]
    last = json.loads(lines[-1][6:])
    assert last["error"]["code"] == "backend_start_failed" and "exited during start" in last["error"]["message"]
    assert any("reasoning_content" in line for line in lines[:-1])


def test_preload_under_fit_loads_every_model_that_fits_in_order(gateways):
    gw = gateways(
        {m: fault_model(vram_gb=g) for m, g in SIZES.items()},
        policy="fit",
        gpu_budget_gb=10,
        gpu_memory_gb=16,
        preload=["a", "b", "c"],
    )
    st = gw.wait_for(
        lambda: (s := gw.status())["awake"] == ["a", "b"] and s["switch"] is None and s, 60, "a and b preloaded"
    )
    assert st["models"]["c"]["starts"] == 0  # 4 + 4 + 6 > 10: c is not preloaded, and nobody was evicted for it


def test_preload_under_single_loads_the_first(gateways):
    gw = gateways({"a": fault_model(), "b": fault_model()}, preload=["b", "a"])
    gw.wait_for(lambda: gw.status()["awake"] == ["b"], 60, "b preloaded")
    assert gw.model("a")["starts"] == 0


def test_gpu_memory_utilization_is_the_models_share_of_the_card(gateways):
    import psutil

    model = fault_model(vram_gb=4, env={"VLMSWAP_TEST_UTIL": "${GPU_MEMORY_UTILIZATION}"})
    gw = gateways({"a": model}, gpu_memory_gb=16)
    assert gw.chat("a").status_code == 200
    pid = gw.model("a")["pids"][0]
    assert psutil.Process(pid).environ()["VLMSWAP_TEST_UTIL"] == "0.250"
