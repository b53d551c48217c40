"""`POST /api/models/{name}/pull` on a real gateway: progress on /api/events, then the model starts."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import vlmswap
from tests.gateway.conftest import rapidocr_model, start_gateway
from tests.hub.conftest import TINY, worker_model
from tests.hub.test_pull_cli import NEEDED


def test_gateway_pulls_with_progress_events_one_at_a_time_and_the_model_then_runs(start_hub, repos, tmp_path: Path):
    hub = start_hub("--rate", "300000")  # ~3 s for the tiny model: progress can be seen, a second pull asked
    size = sum((repos[TINY] / n).stat().st_size for n in NEEDED)
    models = {"tiny": worker_model(TINY), "rapidocr": rapidocr_model()}
    with start_gateway(tmp_path / "gw", models) as gw:
        client = vlmswap.Client(gw.url)
        assert client.status()["models"]["tiny"]["unavailable"] == f"not downloaded ({size / 1e6:.1f} MB)"

        events: list[dict[str, Any]] = []
        outcome: dict[str, Any] = {}

        def follow() -> None:
            try:
                outcome["last"] = client.pull("tiny", on_progress=events.append)
            except vlmswap.client.GatewayError as exc:
                outcome["error"] = exc

        follower = threading.Thread(target=follow)
        follower.start()
        deadline = time.monotonic() + 30
        while not client.pull_status("tiny").get("pulling"):
            assert time.monotonic() < deadline, "the pull never started"
            time.sleep(0.05)
        again = gw.post("/api/models/tiny/pull")
        assert again.status_code == 409 and again.json()["error"]["code"] == "pull_in_progress"
        follower.join(120)
        assert "error" not in outcome, outcome

        assert events[0]["message"] == f"pulling {TINY}" and events[0]["done"] is False
        sizes = [e["downloaded_bytes"] for e in events]
        assert sizes == sorted(sizes) and len(set(sizes)) >= 3  # it moved, forward, more than once
        last = outcome["last"]
        assert last["done"] and last["ok"] and last["downloaded_bytes"] == last["total_bytes"] == size
        assert last["files_done"] == last["files_total"] == len(NEEDED)
        assert {e["type"] for e in events} == {"pull"} and {e["model"] for e in events} == {"tiny"}
        state = client.pull_status("tiny")
        assert state["ok"] is True and state["pulling"] is False and state["downloaded_bytes"] == size
        assert len(hub.gets("model.safetensors")) == 1

        # the status says it is there now (refreshed in the background), and the switch works
        deadline = time.monotonic() + 15
        while client.status()["models"]["tiny"]["unavailable"] is not None:
            assert time.monotonic() < deadline, "status still says not downloaded after the pull"
            time.sleep(0.2)
        client.switch("tiny", timeout=300)  # the worker loads what the pull fetched, from the cache
        assert client.chat("tiny", [{"role": "user", "content": "hello"}], max_tokens=4)


def test_gateway_pull_refuses_unknown_models_and_models_without_files(start_hub, tmp_path: Path):
    start_hub()
    with start_gateway(tmp_path / "gw", {"rapidocr": rapidocr_model()}) as gw:
        r = gw.post("/api/models/rapidocr/pull")
        assert r.status_code == 400 and r.json()["error"]["code"] == "nothing_to_pull"
        assert "needs no download" in r.json()["error"]["message"]
        r = gw.post("/api/models/nope/pull")
        assert r.status_code == 404 and r.json()["error"]["code"] == "model_not_found"
        assert gw.get("/api/models/rapidocr/pull").json()["pulling"] is False


def test_a_request_for_a_model_whose_files_are_missing_fails_at_once_and_says_how_to_get_them(
    start_hub, tmp_path: Path
):
    start_hub()
    with start_gateway(tmp_path / "gw", {"tiny": worker_model(TINY)}) as gw:
        t0 = time.monotonic()
        r = gw.chat("tiny")
        assert time.monotonic() - t0 < 30  # no worker started, nothing downloaded behind a spinner
        assert r.status_code == 502
        msg = r.json()["error"]["message"]
        assert "not downloaded" in msg and "vlmswap pull tiny" in msg
        assert gw.status()["models"]["tiny"]["starts"] == 0
