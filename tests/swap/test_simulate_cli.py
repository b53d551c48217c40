"""`vlmswap simulate` and `vlmswap trace generate` as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from tests.support import ROOT
from vlmswap.cli import app

REG = str(ROOT / "examples" / "sim-12gb.yaml")
BURSTY = str(ROOT / "examples" / "traces" / "bursty-groups.jsonl")
runner = CliRunner()


def test_simulate_prints_the_policies_side_by_side(tmp_path: Path):
    r = runner.invoke(app, ["simulate", "-c", REG, "-t", BURSTY, "--state-dir", str(tmp_path)])
    assert r.exit_code == 0, r.output
    for word in ("lru", "predictive", "cold starts", "wakes", "switches", "wait p99", "GPU busy", "declared start"):
        assert word in r.output


def test_simulate_json_is_one_object_per_policy(tmp_path: Path):
    r = runner.invoke(app, ["simulate", "-c", REG, "-t", BURSTY, "--json", "--policy", "lru", "--priors-only"])
    assert r.exit_code == 0, r.output
    one = json.loads(r.output)
    assert set(one) >= {"policy", "requests", "cold_starts", "wakes", "switches", "wait_s"}
    assert one["policy"] == "lru" and set(one["wait_s"]) == {"mean", "p95", "p99"}
    r = runner.invoke(app, ["simulate", "-c", REG, "-t", BURSTY, "--json", "--policy", "lru,predictive"])
    both = json.loads(r.output)
    assert [x["policy"] for x in both] == ["lru", "predictive"] and both[0] == one
    assert both[1]["cold_starts"] < both[0]["cold_starts"]


def test_a_bad_trace_line_is_one_line_naming_the_file_and_line_with_exit_code_2(tmp_path: Path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"t": 0, "model": "qwen3-vl-2b"}\n{"t": 1, "model": "llama"}\n')
    r = runner.invoke(app, ["simulate", "-c", REG, "-t", str(bad)])
    assert r.exit_code == 2
    assert r.output.strip().splitlines() == [
        f"vlmswap: {bad}:2: unknown model 'llama' " + r.output.split("'llama' ")[1].strip()
    ]
    r = runner.invoke(app, ["simulate", "-c", REG, "-t", BURSTY, "--policy", "fifo"])
    assert r.exit_code == 2 and "unknown policy fifo" in r.output


def test_trace_generate_writes_what_simulate_reads(tmp_path: Path):
    out = tmp_path / "t.jsonl"
    r = runner.invoke(app, ["trace", "generate", "documents-chat", "--seed", "4", "--out", str(out)])
    assert r.exit_code == 0, r.output
    r = runner.invoke(app, ["simulate", "-c", REG, "-t", str(out), "--json", "--policy", "predictive"])
    assert r.exit_code == 0 and json.loads(r.output)["requests"] == len(out.read_text().splitlines())
    r = runner.invoke(app, ["trace", "generate", "hourly"])
    assert r.exit_code == 2 and "unknown trace kind" in r.output
