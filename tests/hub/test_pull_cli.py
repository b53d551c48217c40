"""`vlmswap pull` and `vlmswap config show` against the local hub server, as a user runs them."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

from tests.hub.conftest import BIG, TINY, vlmswap
from tests.support import PY, ROOT

NEEDED = {
    "chat_template.jinja",
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
}


def _snapshot(home: Path, repo: str) -> Path:
    snaps = list((home / "hub" / f"models--{repo.replace('/', '--')}" / "snapshots").iterdir())
    assert len(snaps) == 1, snaps
    return snaps[0]


def _shown(registry: Path, name: str) -> str | None:
    out = vlmswap("config", "show", str(registry), "--json")
    assert out.returncode == 0, out.stderr
    return {m["name"]: m for m in json.loads(out.stdout)["models"]}[name]["unavailable"]


def _selected_size(folder: Path) -> int:
    return sum((folder / n).stat().st_size for n in NEEDED)


def test_pull_fetches_what_a_server_needs_with_progress_and_config_show_follows(start_hub, registry, repos):
    hub = start_hub()
    size_mb = _selected_size(repos[TINY]) / 1e6
    assert _shown(registry, "tiny") == f"not downloaded ({size_mb:.1f} MB)"

    out = vlmswap("pull", "--config", str(registry), "tiny")
    assert out.returncode == 0, out.stderr
    assert "tiny: 7/7 files, 0.9 MB of 0.9 MB" in out.stderr  # progress, one line per file when not a terminal
    assert "tiny: 0/7 files" in out.stderr
    snap = _snapshot(hub.home, TINY)
    assert {p.name for p in snap.iterdir()} == NEEDED  # no README, no ONNX export
    for name in NEEDED:
        assert (snap / name).read_bytes() == (repos[TINY] / name).read_bytes()
    assert not hub.gets("README.md") and not hub.gets("onnx/model.onnx")
    assert f"{TINY} is in {snap}" in out.stdout
    assert _shown(registry, "tiny") is None

    again = vlmswap("pull", "--config", str(registry), "tiny-qwen2vl")  # by alias; nothing left to fetch
    assert again.returncode == 0, again.stderr
    assert len(hub.gets("model.safetensors")) == 1


def test_a_complete_copy_needs_no_hub(start_hub, registry, monkeypatch):
    hub = start_hub()
    assert vlmswap("pull", "--config", str(registry), "tiny").returncode == 0
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    out = vlmswap("pull", "--config", str(registry), "tiny")
    assert out.returncode == 0 and f"{TINY} is in {_snapshot(hub.home, TINY)}" in out.stdout, out.stderr
    out = vlmswap("pull", "--config", str(registry), "big")
    assert out.returncode == 1 and "could not list its files on the hub: OfflineModeIsEnabled" in out.stderr


def test_config_show_offline_says_not_downloaded_without_a_size(start_hub, registry, monkeypatch):
    start_hub()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert _shown(registry, "tiny") == "not downloaded (size unknown)"


def test_a_transfer_cut_mid_body_resumes_with_a_range_request(start_hub, registry, repos):
    cut = 15_000_000
    hub = start_hub("--cut-once", f"model.safetensors:{cut}")
    out = vlmswap("pull", "--config", str(registry), "big")
    assert out.returncode == 0, out.stderr

    first, second = hub.gets("model.safetensors")
    assert first["range"] is None and first["bytes"] == cut and first["cut"]
    size = (repos[BIG] / "model.safetensors").stat().st_size
    start = int(second["range"].removeprefix("bytes=").rstrip("-"))
    assert 0 < start <= cut  # it asked only for what it did not have...
    assert second["status"] == 206 and second["bytes"] == size - start  # ...and got only that
    data = (_snapshot(hub.home, BIG) / "model.safetensors").read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256((repos[BIG] / "model.safetensors").read_bytes()).digest()


def test_a_pull_stopped_mid_file_is_resumed_by_the_next_pull_with_a_range_request(start_hub, registry, repos):
    hub = start_hub("--rate", "3000000")  # 24 MB at 3 MB/s: time to stop it part way
    first = subprocess.Popen(
        [PY, "-m", "vlmswap", "pull", "--config", str(registry), "big"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    blobs = hub.home / "hub" / f"models--{BIG.replace('/', '--')}" / "blobs"
    deadline = time.monotonic() + 60
    while not [p for p in blobs.glob("*.vlmswap.incomplete") if p.stat().st_size >= 10 * 1024 * 1024]:
        assert time.monotonic() < deadline and first.poll() is None, first.communicate()
        time.sleep(0.05)
    first.send_signal(signal.SIGINT)  # Ctrl-C
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130, err
    assert "interrupted; the files finished so far are kept" in err
    kept = next(blobs.glob("*.vlmswap.incomplete")).stat().st_size

    out = vlmswap("pull", "--config", str(registry), "big")
    assert out.returncode == 0, out.stderr
    gets = hub.gets("model.safetensors")
    size = (repos[BIG] / "model.safetensors").stat().st_size
    assert gets[0]["range"] is None and gets[0]["bytes"] >= kept
    assert gets[-1]["range"] == f"bytes={kept}-" and gets[-1]["status"] == 206 and gets[-1]["bytes"] == size - kept
    assert len(gets) == 2
    data = (_snapshot(hub.home, BIG) / "model.safetensors").read_bytes()
    assert hashlib.sha256(data).digest() == hashlib.sha256((repos[BIG] / "model.safetensors").read_bytes()).digest()
    assert not list(blobs.glob("*.incomplete"))


def test_a_failed_pull_says_why_keeps_finished_files_and_the_next_pull_fetches_only_the_rest(start_hub, registry):
    hub = start_hub("--fail-get", "model.safetensors:1")
    out = vlmswap("pull", "--config", str(registry), "tiny")
    assert out.returncode == 1
    err = [line for line in out.stderr.splitlines() if line.startswith("vlmswap:")]
    assert len(err) == 1 and "model.safetensors: download failed" in err[0] and "503" in err[0], out.stderr
    assert _shown(registry, "tiny").startswith("not downloaded")

    out = vlmswap("pull", "--config", str(registry), "tiny")
    assert out.returncode == 0, out.stderr
    for done_before in ("chat_template.jinja", "config.json", "generation_config.json"):
        assert len(hub.gets(done_before)) == 1, done_before  # fetched once, by the first pull
    assert [r["status"] for r in hub.gets("model.safetensors")] == [503, 200]
    assert _shown(registry, "tiny") is None


def test_unknown_model_or_nothing_to_download_exits_2_with_one_line(start_hub, registry):
    hub = start_hub()
    for args, expect in (
        (["nope"], "vlmswap: nope: unknown model (known: "),
        (["rapidocr"], "vlmswap: rapidocr: needs no download"),
        (["tiny", "nope"], "vlmswap: nope: unknown model"),
    ):
        out = vlmswap("pull", "--config", str(registry), *args)
        assert out.returncode == 2, (args, out.stderr)
        assert out.stderr.startswith(expect) and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert not [r for r in hub.requests() if "/resolve/" in r["path"]]  # every name checked before any download


def test_network_errors_and_tokens(start_hub, registry, monkeypatch):
    hub = start_hub("--token", "s3cret")
    out = vlmswap("pull", "--config", str(registry), "tiny")
    assert out.returncode == 1
    assert (
        out.stderr.strip() == f"vlmswap: tiny: {TINY}: no such repository on the hub (or it is private: set HF_TOKEN)"
    )

    monkeypatch.setenv("HF_TOKEN", "s3cret")
    out = vlmswap("pull", "--config", str(registry), "tiny")
    assert out.returncode == 0, out.stderr
    assert {r["auth"] for r in hub.requests() if "/resolve/" in r["path"]} == {"Bearer s3cret"}

    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")  # nothing listens there
    out = vlmswap("pull", "--config", str(registry), "big")
    assert out.returncode == 1
    assert out.stderr.strip() == (
        f"vlmswap: big: {BIG}: could not list its files on the hub: ConnectError: [Errno 111] Connection refused"
    )
