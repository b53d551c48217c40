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
