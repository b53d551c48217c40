"""Traces: what a line may hold, what a bad one says, the seeded generators, the recorder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support import ROOT
from vlmswap.registry.config import load_registry, parse_registry
from vlmswap.swap import traces
from vlmswap.swap.traces import Recorder, Request, TraceError

REG = parse_registry(
    {"models": {"qwen3-vl-2b": {"served_name": "Qwen/Qwen3-VL-2B-Instruct", "aliases": ["q3"], "cmd": ["x"]}}}
)


def write(tmp_path: Path, *lines: str) -> Path:
    p = tmp_path / "trace.jsonl"
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p


def test_lines_are_replayed_in_order_of_t_with_any_model_id_and_a_default_duration(tmp_path: Path):
    p = write(
        tmp_path,
        '{"t": 5, "model": "Qwen/Qwen3-VL-2B-Instruct", "duration_s": 2.5}',
        "",
        '{"t": 1.5, "model": "q3", "status": 200}',
    )
    assert traces.read(p, REG) == [Request(1.5, "qwen3-vl-2b", 1.0), Request(5.0, "qwen3-vl-2b", 2.5)]


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("{not json", "not JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"model": "q3"}', "`t` must be a number"),
        ('{"t": true, "model": "q3"}', "`t` must be a number"),
        ('{"t": 1, "model": ""}', "`model` must be a model id"),
        ('{"t": 1, "model": "gpt-4"}', "unknown model 'gpt-4' (the registry knows Qwen/Qwen3-VL-2B-Instruct, q3"),
        ('{"t": 1, "model": "q3", "duration_s": -1}', "`duration_s` must be a number of seconds >= 0"),
    ],
)
def test_a_bad_line_names_the_file_the_line_and_the_reason(tmp_path: Path, line: str, reason: str):
    p = write(tmp_path, '{"t": 0, "model": "q3"}', line)
    with pytest.raises(TraceError) as err:
        traces.read(p, REG)
    assert str(err.value).startswith(f"{p}:2: ") and reason in str(err.value)


def test_an_empty_or_missing_file_is_an_error(tmp_path: Path):
    with pytest.raises(TraceError, match="no requests"):
        traces.read(write(tmp_path, ""), REG)
    with pytest.raises(TraceError, match="No such file"):
        traces.read(tmp_path / "missing.jsonl", REG)


@pytest.mark.parametrize("kind", traces.KINDS)
def test_the_generators_are_seeded_and_their_traces_parse_against_the_example_registry(kind: str, tmp_path: Path):
    a, b, c = traces.generate(kind, 1), traces.generate(kind, 1), traces.generate(kind, 2)
    assert a == b and a != c
    assert [x.t for x in a] == sorted(x.t for x in a)
    p = tmp_path / f"{kind}.jsonl"
    p.write_text(traces.dumps(a), encoding="utf-8")
    reg = load_registry(ROOT / "examples" / "sim-12gb.yaml")
    assert traces.read(p, reg) == a


def test_the_shipped_traces_are_the_generators_seed_one():
    for kind in traces.KINDS:
        shipped = (ROOT / "examples" / "traces" / f"{kind}.jsonl").read_text(encoding="utf-8")
        assert shipped == traces.dumps(traces.generate(kind, 1)), kind


def test_an_unknown_kind_or_too_few_models_is_refused():
    with pytest.raises(ValueError, match="unknown trace kind"):
        traces.generate("weekly", 1)
    with pytest.raises(ValueError, match="needs 5 models"):
        traces.generate("diurnal", 1, ["a", "b"])


def test_the_recorder_appends_lines_the_reader_accepts(tmp_path: Path):
    rec = Recorder(tmp_path / "sub" / "trace.jsonl")
    rec.add(1700000000.25, "qwen3-vl-2b", 1.5)
    rec.add(1700000001.0, "qwen3-vl-2b", None)  # never granted: no duration, replayed with the default
    assert rec.pending() == 2
    rec.write(rec.take())
    rec.write(rec.take())  # nothing gathered: nothing written
    assert rec.pending() == 0 and rec.written == 2
    lines = rec.path.read_text().splitlines()
    assert json.loads(lines[0]) == {"t": 1700000000.25, "model": "qwen3-vl-2b", "duration_s": 1.5}
    assert traces.read(rec.path, REG)[1] == Request(1700000001.0, "qwen3-vl-2b", 1.0)
