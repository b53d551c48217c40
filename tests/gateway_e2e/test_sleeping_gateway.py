"""The sleeping pool through a real gateway process: the operator's view, the dev endpoints, and
what a killed gateway leaves behind."""

from __future__ import annotations

import signal

import pytest

from tests.gateway_e2e.conftest import fault_model, fault_servers_of


def sleepy(**fields):
    return fault_model(sleep_mode=True, vram_gb=1, **fields)


@pytest.mark.parametrize(
    "path",
    ["/sleep?level=1", "/wake_up", "/is_sleeping", "/collective_rpc", "/reset_prefix_cache", "/v1/../sleep", "//sleep"],
)
def test_clients_never_reach_vllms_dev_endpoints(gateways, path):
    gw = gateways({"alpha": sleepy()})
    assert gw.chat("alpha").status_code == 200
    for method in ("GET", "POST"):
        r = gw.http.request(method, path, json={"method": "reload_weights"})
        assert r.status_code == 404, (method, path, r.status_code, r.text)
    assert gw.model("alpha")["state"] == "ready"
    assert gw.chat("alpha").status_code == 200  # still awake and serving


def test_status_events_and_metrics_show_the_pool(gateways):
    gw = gateways({"alpha": sleepy(), "beta": sleepy()})
    assert gw.chat("alpha").status_code == 200
    assert gw.chat("beta").status_code == 200
    st = gw.status()
    assert st["models"]["alpha"]["state"] == "sleeping"
    assert st["models"]["alpha"]["sleep_ram_bytes"] > 0 and st["models"]["alpha"]["sleep_ram_measured"]
    assert st["pool"]["sleeping"] == ["alpha"] and st["pool"]["ram_budget_bytes"] > 0
    assert gw.chat("alpha").status_code == 200
    st = gw.status()
    assert st["models"]["alpha"]["wakes"] == 1 and st["models"]["alpha"]["starts"] == 1
    metrics = gw.http.get("/metrics").text
    assert 'vlmswap_switch_duration_seconds_count{kind="warm"} 1.0' in metrics
    assert 'vlmswap_switch_duration_seconds_count{kind="cold"} 2.0' in metrics
    assert "vlmswap_sleep_pool_ram_bytes" in metrics


def test_operator_sleep_route(gateways):
    gw = gateways({"alpha": sleepy(), "cold": fault_model()})
    assert gw.chat("alpha").status_code == 200
    r = gw.http.post("/api/models/alpha/sleep")
    assert r.status_code == 202 and r.json()["sleeping"] is True
    gw.wait_for(lambda: gw.model("alpha")["state"] == "sleeping", what="alpha asleep")
    assert gw.status()["resident"] is None
    r = gw.http.post("/api/models/cold/sleep")
    assert r.status_code == 409 and r.json()["error"]["code"] == "no_sleep_mode"
    assert gw.chat("alpha").status_code == 200
    assert gw.model("alpha")["wakes"] == 1


def test_sigkilled_gateway_leaves_no_sleeper_behind(gateways, tmp_path):
    gw = gateways({"alpha": sleepy(), "beta": sleepy()})
    assert gw.chat("alpha").status_code == 200
    assert gw.chat("beta").status_code == 200
    pids = {p for m in ("alpha", "beta") for p in gw.model(m)["pids"]}
    assert gw.model("alpha")["state"] == "sleeping" and len(pids) == 2
    gw.signal(signal.SIGKILL)
    gw.proc.wait(10)
    assert len(fault_servers_of(pids)) == 2  # a sleeper and the awake one outlive a SIGKILLed gateway
    gw2 = gateways({"alpha": sleepy(), "beta": sleepy()}, state_dir=gw.state_dir)
    assert not fault_servers_of(pids), "the next gateway stops what the killed one left, sleepers too"
    assert gw2.log().count("stopped orphaned backend") == 2


def test_graceful_shutdown_stops_sleepers(gateways):
    gw = gateways({"alpha": sleepy(), "beta": sleepy()})
    assert gw.chat("alpha").status_code == 200
    assert gw.chat("beta").status_code == 200
    pids = {p for m in ("alpha", "beta") for p in gw.model(m)["pids"]}
    gw.stop()
    assert not fault_servers_of(pids)


def test_unload_stops_the_awake_model_and_every_sleeper(gateways):
    gw = gateways({"alpha": sleepy(), "beta": sleepy(), "gamma": sleepy()})
    for name in ("alpha", "beta", "gamma"):
        assert gw.chat(name).status_code == 200
    r = gw.http.post("/api/models/alpha/unload")  # a sleeper, by name
    assert r.status_code == 202 and r.json()["unloading"] is True
    gw.wait_for(lambda: gw.model("alpha")["state"] == "stopped", what="alpha stopped")
    assert gw.model("beta")["state"] == "sleeping" and gw.status()["resident"] == "gamma"
    r = gw.http.post("/api/unload")
    assert r.status_code == 202 and r.json()["sleepers"] == ["beta"]
    gw.wait_for(lambda: all(m["state"] == "stopped" for m in gw.status()["models"].values()), what="all stopped")
    assert gw.status()["pool"]["count"] == 0


def test_status_cli_and_metrics_say_why_each_sleeper_is_kept_and_count_staging(gateways):
    import subprocess
    import sys

    gw = gateways({"alpha": sleepy(expected_start_s=90), "beta": sleepy()})
    for name in ("alpha", "beta"):
        assert gw.chat(name).status_code == 200
    st = gw.status()
    assert st["pool"]["order"] == "predictive" and list(st["pool"]["kept"]) == ["alpha"]
    assert "keeping it saves" in st["pool"]["kept"]["alpha"]["why"]
    assert {p["model"] for p in st["predicted"]} == {"alpha", "beta"}
    assert st["staging"]["enabled"] is True and st["staging"]["staged"] == {}
    out = subprocess.run(
        [sys.executable, "-m", "vlmswap", "status", "--gateway", gw.url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert "alpha kept: keeping it saves" in out.stdout
    metrics = gw.http.get("/metrics").text
    for key in ("loads", "used", "abandoned"):
        assert f'vlmswap_staged_{key}_total{{kind="page_cache"}} 0.0' in metrics
