"""A backend's output as lines: split across reads, cut when a line never ends, kept in a file."""

from __future__ import annotations

from vlmswap.backends.base import LogBuffer


def test_lines_split_across_reads_are_joined(tmp_path):
    logs = LogBuffer(tmp_path / "m.log", maxlen=10)
    logs.feed(b"loading wei")
    logs.feed(b"ghts\nready on port 8000\npartial")
    assert logs.tail(5) == ["loading weights", "ready on port 8000"]
    logs.flush()
    assert logs.tail(1) == ["partial"]
    logs.close()
    assert (tmp_path / "m.log").read_text().splitlines() == ["loading weights", "ready on port 8000", "partial"]


def test_a_line_that_never_ends_is_cut_and_invalid_utf8_replaced():
    logs = LogBuffer(None, maxlen=10)
    logs.feed(b"x" * (LogBuffer.MAX_LINE * 2 + 5))  # a progress bar that never prints a newline
    assert [len(line) for line in logs.tail(5)] == [LogBuffer.MAX_LINE, LogBuffer.MAX_LINE]
    logs.feed(b"\xff\n")
    assert logs.tail(1) == ["xxxxx\ufffd"]


def test_ring_buffer_keeps_the_last_lines():
    logs = LogBuffer(None, maxlen=3)
    logs.feed(b"".join(b"line %d\n" % i for i in range(10)))
    assert logs.tail(10) == ["line 7", "line 8", "line 9"]
    assert logs.tail(0) == []


def test_a_models_log_file_is_rotated_past_its_cap_and_keeps_n_files(tmp_path):
    from vlmswap.backends.base import LogBuffer

    path = tmp_path / "logs" / "m.log"
    buf = LogBuffer(path, 50, max_bytes=1000, keep=2)
    for i in range(200):
        buf.append(f"line {i:04d} " + "x" * 40)
    buf.close()
    files = sorted(p.name for p in path.parent.iterdir())
    assert files == ["m.log", "m.log.1", "m.log.2"]
    assert all(p.stat().st_size <= 1000 for p in path.parent.iterdir())
    assert path.read_text().splitlines()[-1].startswith("line 0199")
    assert buf.tail(1)[0].startswith("line 0199")  # the in-memory tail is unaffected
