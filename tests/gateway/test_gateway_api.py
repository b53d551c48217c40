"""The gateway's HTTP API against real backend processes (one gateway for this module)."""

from __future__ import annotations

import json
import threading
import time

import httpx
import openai
import pytest

from tests.gateway.conftest import Gateway, alive
from vlmswap.client import Client, SwitchError

PHASES = ["draining", "stopping", "waiting_vram", "starting", "loading", "ready"]


def test_routes_by_model_and_switches_between_two_models(two_models: Gateway):
    gw = two_models
    r = gw.chat("org/alpha", "one")
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == "[org/alpha] echo: one"
    assert gw.status()["resident"] == "alpha"
    before = gw.status()["switches"]
    r = gw.chat("b", "two")  # by alias; the backend only knows its served name
    assert r.json()["choices"][0]["message"]["content"] == "[org/beta] echo: two"
    assert r.json()["model"] == "org/beta"
    st = gw.status()
    assert st["resident"] == "beta" and st["models"]["alpha"]["state"] == "stopped"
    r = gw.chat("alpha", "three")  # by registry name
    assert r.json()["choices"][0]["message"]["content"] == "[org/alpha] echo: three"
    assert gw.status()["switches"] == before + 2


def test_completions_route(two_models: Gateway):
    r = two_models.post("/v1/completions", json={"model": "a", "prompt": "say this"})
    assert r.status_code == 200
    assert r.json()["choices"][0]["text"] == "[org/alpha] echo: say this"


def test_openai_client_non_stream_and_stream(two_models: Gateway):
    client = openai.OpenAI(base_url=two_models.url + "/v1", api_key="unused", max_retries=0)
    ids = {m.id for m in client.models.list()}
    assert {"org/alpha", "org/beta"} <= ids
    out = client.chat.completions.create(model="org/alpha", messages=[{"role": "user", "content": "hi there"}])
    assert out.choices[0].message.content == "[org/alpha] echo: hi there"
    chunks = list(
        client.chat.completions.create(model="org/beta", stream=True, messages=[{"role": "user", "content": "a b c"}])
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "[org/beta] echo: a b c"
    assert len(chunks) >= 5  # chunk by chunk, not one blob


def test_stream_is_relayed_chunk_by_chunk(two_models: Gateway):
    """Each chunk reaches the client when the backend sends it (0.2 s apart), not all at the end."""
    body = {"model": "org/trickle", "stream": True, "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
    arrivals = []
    with httpx.stream("POST", two_models.url + "/v1/chat/completions", json=body, trust_env=False, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        for line in r.iter_lines():
            if line.startswith("data:"):
                arrivals.append((time.monotonic(), line))
    assert arrivals[-1][1] == "data: [DONE]" and len(arrivals) == 7
    assert arrivals[-1][0] - arrivals[0][0] >= 0.7


def test_unknown_model_404_lists_known_names(two_models: Gateway):
    client = openai.OpenAI(base_url=two_models.url + "/v1", api_key="unused", max_retries=0)
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="nope", messages=[{"role": "user", "content": "x"}])
    msg = info.value.body["message"]
    assert "nope" in msg and "org/alpha" in msg and "beta" in msg
    assert info.value.body["code"] == "model_not_found"


def test_bad_requests_get_openai_errors_and_service_goes_on(two_models: Gateway):
    r = two_models.post("/v1/chat/completions", content=b"{not json", headers={"content-type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "invalid_json"
    r = two_models.post("/v1/chat/completions", json={"messages": []})
    assert r.status_code == 400 and r.json()["error"]["param"] == "model"
    r = two_models.post("/v1/chat/completions", json=[1, 2])
    assert r.status_code == 400
    assert two_models.chat("a").status_code == 200


def test_models_list_shows_state_capabilities_family_aliases(two_models: Gateway):
    two_models.chat("a")
    data = {m["name"]: m for m in two_models.get("/v1/models").json()["data"]}
    assert set(data) == {"alpha", "beta", "broken", "crashy", "slow", "trickle"}
    a = data["alpha"]
    assert a["id"] == "org/alpha" and a["state"] == "ready" and a["aliases"] == ["a"]
    assert a["capabilities"] == ["chat"] and a["family"] == "generic" and a["object"] == "model"
    assert data["beta"]["state"] == "stopped"


def test_status_fields(two_models: Gateway):
    two_models.chat("a")
    st = two_models.status()
    assert st["resident"] == "alpha"
    for key in ("queue_length", "in_flight", "switch", "gpu", "host", "models", "switches"):
        assert key in st
    m = st["models"]["alpha"]
    for key in (
        "name",
        "served_name",
        "aliases",
        "family",
        "capabilities",
        "vram_gb",
        "backend",
        "state",
        "since",
        "last_error",
        "last_start_s",
        "unavailable",
        "in_flight",
        "queued",
    ):
        assert key in m
    assert m["last_start_s"] > 0 and m["pids"]
    g = st["gpu"]
    assert g["available"] is False and g["reason"] == "no GPU found: CPU only" and g["vendor"] == ""
    assert "NVIDIA: " in g["detail"] and "AMD: " in g["detail"]  # both libraries asked, each answer kept
    assert st["host"]["ram_total_bytes"] > 0


def test_failed_start_gets_502_with_log_tail_then_backoff(two_models: Gateway):
    r = two_models.chat("org/broken")
    assert r.status_code == 502
    err = r.json()["error"]
    assert "exited during start" in err["message"] and "simulated failure while loading" in err["message"]
    st = two_models.status()
    assert st["models"]["broken"]["state"] == "failed"
    r = two_models.chat("org/broken")
    assert r.status_code == 503 and int(r.headers["retry-after"]) >= 1
    assert two_models.chat("a").status_code == 200  # the others work on


def test_crash_mid_stream_ends_with_an_error_event(two_models: Gateway):
    client = openai.OpenAI(base_url=two_models.url + "/v1", api_key="unused", max_retries=0)
    got = []
    with pytest.raises(openai.APIError) as info:
        for chunk in client.chat.completions.create(
            model="org/crashy", stream=True, messages=[{"role": "user", "content": "a b c d e f"}]
        ):
            got.append(chunk)
    assert len(got) == 2  # what was sent before the crash arrived
    assert "crashy" in str(info.value.message)
    st = two_models.wait_for(lambda s: s["models"]["crashy"]["state"] == "failed")
    assert "exited unexpectedly" in st["models"]["crashy"]["last_error"]
    assert two_models.post("/api/models/a/load", params={"wait": "true"}).status_code == 200


def test_crash_during_non_stream_request_is_502(two_models: Gateway):
    two_models.chat("a")
    r = two_models.chat("a", "please __crash__ now")
    assert r.status_code == 502
    assert "alpha" in r.json()["error"]["message"]
    two_models.wait_for(lambda s: s["models"]["alpha"]["state"] == "failed" and s["switch"] is None)
    r = two_models.chat("a")  # within the backoff
    assert r.status_code == 503 and "retry-after" in r.headers
    assert two_models.post("/api/models/a/load", params={"wait": "true"}).status_code == 200


def test_events_report_switch_phases_in_order(two_models: Gateway):
    Client(two_models.url).switch("a")
    seen = []
    st = Client(two_models.url).switch("beta", on_progress=seen.append)
    assert st["resident"] == "beta"
    phases = [e["phase"] for e in seen if e["type"] == "phase"]
    order = [p for p in PHASES if p in phases]
    assert order == PHASES, phases
    assert [p for p in phases if p in PHASES] == sorted([p for p in phases if p in PHASES], key=PHASES.index)
    vram = [e for e in seen if e.get("phase") == "waiting_vram"]
    assert "no GPU reading, skipped (no GPU found: CPU only)" in vram[0]["message"]
    elapsed = [e["elapsed_s"] for e in seen if e["type"] == "phase"]
    assert elapsed == sorted(elapsed) and all(isinstance(x, float) for x in elapsed)
    assert [e["seq"] for e in seen] == sorted(e["seq"] for e in seen)


def test_client_switch_failure_raises_with_log_lines(two_models: Gateway):
    with Client(two_models.url) as c:
        c.load("broken")  # clears the backoff, as an operator's load does
        two_models.wait_for(lambda s: s["switch"] is None)
        with pytest.raises(SwitchError) as info:
            c.switch("broken")
    assert "exited during start" in info.value.message
    assert any("simulated failure while loading" in line for line in info.value.log_tail)


def test_logs_tail(two_models: Gateway):
    two_models.chat("a")
    r = two_models.get("/api/models/alpha/logs", params={"tail": 3})
    assert r.status_code == 200
    lines = r.json()["lines"]
    assert len(lines) == 3
    full = two_models.get("/api/models/org%2Falpha/logs", params={"tail": 1000}).json()["lines"]
    assert any("fault_server" in line and "listening" in line for line in full)
    assert any("[vlmswap" in line and "starting alpha" in line for line in full)
    assert (two_models.state_dir / "logs" / "alpha.log").exists()
    assert two_models.get("/api/models/nope/logs").status_code == 404


def test_load_and_unload(two_models: Gateway):
    gw = two_models
    gw.chat("a")
    r = gw.post("/api/models/beta/load")
    assert r.status_code == 202 and r.json()["name"] == "beta"
    gw.wait_for(lambda s: s["resident"] == "beta")
    r = gw.post("/api/models/org%2Falpha/load", params={"wait": "true"})
    assert r.status_code == 200 and r.json()["state"] == "ready"
    pids = gw.status()["models"]["alpha"]["pids"]
    r = gw.post("/api/models/beta/unload")
    assert r.status_code == 200 and r.json()["unloading"] is False  # beta is not resident
    r = gw.post("/api/unload")
    assert r.status_code == 202 and r.json()["model"] == "alpha"
    st = gw.wait_for(lambda s: s["models"]["alpha"]["state"] == "stopped" and s["switch"] is None)
    assert st["resident"] is None
    assert not [p for p in pids if alive(p)]
    r = gw.post("/api/models/nope/load")
    assert r.status_code == 404


def test_client_api(two_models: Gateway):
    with Client(two_models.url) as c:
        c.switch("alpha")
        assert c.active_model() == "alpha"
        assert {m["id"] for m in c.models()} >= {"org/alpha", "org/beta"}
        assert c.chat("a", [{"role": "user", "content": "yo"}]) == "[org/alpha] echo: yo"
        from PIL import Image

        out = c.process_image(Image.new("RGB", (8, 8), "white"), "read this", model="a", max_tokens=5)
        assert out == "[org/alpha] echo: read this ok"  # the prompt and max_tokens arrived
        assert c.unload()["unloading"] is True
        two_models.wait_for(lambda s: s["resident"] is None and s["switch"] is None)
        assert c.active_model() is None


def test_metrics_names(two_models: Gateway):
    two_models.chat("a")
    text = two_models.get("/metrics").text
    for name in (
        "vlmswap_requests_total",
        "vlmswap_switches_total",
        "vlmswap_switch_phase_duration_seconds_bucket",
        "vlmswap_queue_depth",
        "vlmswap_resident_model",
        "vlmswap_gpu_available",
        "vlmswap_request_duration_seconds",
        "vlmswap_backend_crashes_total",
    ):
        assert name in text, name
    assert 'vlmswap_requests_total{model="alpha",status="200"}' in text
    assert 'vlmswap_resident_model{model="alpha"} 1.0' in text
    assert 'vlmswap_switch_phase_duration_seconds_count{phase="loading"}' in text


def test_client_that_disconnects_leaves_the_queue(two_models: Gateway):
    gw = two_models
    gw.post("/api/models/slow/load", params={"wait": "true"})
    starts = gw.status()["models"]["beta"]["starts"]
    t = threading.Thread(target=gw.chat, args=("org/slow",))  # holds slow for 3 s
    t.start()
    try:
        gw.wait_for(lambda s: s["models"]["slow"]["in_flight"] == 1)
        with pytest.raises(httpx.ReadTimeout):  # waits behind slow (grouping, max_wait_s 5), then gives up
            httpx.post(
                gw.url + "/v1/chat/completions", json={"model": "b", "messages": []}, timeout=0.5, trust_env=False
            )
        st = gw.wait_for(lambda s: s["queue_length"] == 0, timeout=2)
        assert st["models"]["slow"]["in_flight"] == 1  # still serving: the queue emptied by the disconnect
    finally:
        t.join(30)
    time.sleep(0.3)
    st = gw.status()
    assert st["resident"] == "slow" and st["models"]["beta"]["starts"] == starts  # nobody waited for beta


def test_switch_waits_for_requests_in_flight(two_models: Gateway):
    """A model with a request in flight is not stopped: the switch drains it first, then goes on."""
    from httpx_sse import connect_sse

    gw = two_models
    gw.post("/api/models/slow/load", params={"wait": "true"})
    result: dict = {}
    events: list[dict] = []
    listening = threading.Event()

    def listen():
        with (
            httpx.Client(base_url=gw.url, trust_env=False, timeout=30) as c,
            connect_sse(c, "GET", "/api/events") as src,
        ):
            listening.set()
            for sse in src.iter_sse():
                ev = json.loads(sse.data)
                events.append(ev)
                if ev.get("model") == "beta" and ev.get("phase") == "ready":
                    return

    def slow_request():
        result["r"] = gw.chat("org/slow", "take your time")
        result["done"] = time.time()

    listener = threading.Thread(target=listen, daemon=True)
    listener.start()
    assert listening.wait(10)
    t = threading.Thread(target=slow_request)
    t.start()
    try:
        gw.wait_for(lambda s: s["models"]["slow"]["in_flight"] == 1)
        assert gw.post("/api/models/beta/load").status_code == 202
        gw.wait_for(lambda s: (s["switch"] or {}).get("phase") == "draining", timeout=5)
        r = gw.chat("org/slow", "too late")  # a draining model admits no new work: this waits for the way back
    finally:
        t.join(30)
        listener.join(30)
    assert result["r"].status_code == 200
    assert result["r"].json()["choices"][0]["message"]["content"] == "[org/slow] echo: take your time"
    assert r.status_code == 200
    stopping = next(e for e in events if e["type"] == "state" and e["model"] == "slow" and e["state"] == "stopping")
    # its request takes 3 s; stopping it early would show up seconds before the answer arrived
    assert stopping["time"] >= result["done"] - 1.0
    phases = [e["phase"] for e in events if e["type"] == "phase" and e["model"] == "beta"]
    draining = next(e["message"] for e in events if e.get("phase") == "draining")
    assert phases[0] == "draining" and "1 in flight" in draining


def test_client_leaving_mid_stream_releases_the_model(two_models: Gateway):
    """The relay stops when the client goes: the lease is released long before the backend would finish."""
    gw = two_models
    body = {"model": "org/trickle", "stream": True, "max_tokens": 60, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", gw.url + "/v1/chat/completions", json=body, trust_env=False, timeout=30) as r:
        for line in r.iter_lines():
            if line.startswith("data:"):
                assert gw.status()["models"]["trickle"]["in_flight"] == 1
                break  # one chunk, then hang up (the whole answer would take 12 s)
    t0 = time.monotonic()
    gw.wait_for(lambda s: s["models"]["trickle"]["in_flight"] == 0, timeout=5)
    assert time.monotonic() - t0 < 5
