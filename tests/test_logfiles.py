"""Per-model log files stay under their size cap and keep the newest lines."""

from __future__ import annotations

from pathlib import Path

import pytest

from vlmswap.backends.logfiles import RotatingLog


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").splitlines()


def test_log_past_its_cap_rotates_and_keeps_only_the_newest_files(tmp_path: Path):
    log = RotatingLog(tmp_path / "logs" / "m.log", max_bytes=1000, keep=2)
    lines = [f"line {i:04d} " + "x" * 40 for i in range(200)]  # 50 bytes a line, 10 kB in all
    for line in lines:
        log.write(line)
    log.close()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["m.log", "m.log.1", "m.log.2"]
    for name in files:
        assert (tmp_path / "logs" / name).stat().st_size <= 1000
    kept = (
        _lines(tmp_path / "logs" / "m.log.2")
        + _lines(tmp_path / "logs" / "m.log.1")
        + _lines(tmp_path / "logs" / "m.log")
    )
    assert kept == lines[-len(kept) :]  # in order, none lost in between, the newest last
    assert lines[-1] == _lines(tmp_path / "logs" / "m.log")[-1]
    assert 40 <= len(kept) < 200


def test_reopened_log_counts_what_is_already_there(tmp_path: Path):
    path = tmp_path / "m.log"
    path.write_text("old line\n" * 100, encoding="utf-8")  # 900 bytes from an earlier gateway
    log = RotatingLog(path, max_bytes=1000, keep=1)
    log.write("y" * 200)
    log.close()
    assert _lines(tmp_path / "m.log.1") == ["old line"] * 100
    assert _lines(path) == ["y" * 200]
    assert log.files() == [path, tmp_path / "m.log.1"]


def test_undecodable_output_and_percent_signs_are_written_as_they_come(tmp_path: Path):
    log = RotatingLog(tmp_path / "m.log", max_bytes=10_000, keep=1)
    log.write("100% done %s %(name)s")
    log.write("caf\udce9")  # a lone surrogate, as bytes decoded with surrogateescape give
    log.close()
    assert _lines(tmp_path / "m.log") == ["100% done %s %(name)s", "caf?"]


@pytest.mark.parametrize("max_bytes, keep", [(0, 3), (1000, 0)])
def test_a_cap_or_count_of_zero_is_refused(tmp_path: Path, max_bytes: int, keep: int):
    with pytest.raises(ValueError):
        RotatingLog(tmp_path / "m.log", max_bytes=max_bytes, keep=keep)
