"""The file output: lines on disk before the acknowledgement, rotation, compression, crashes."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
from sink_fakes import record

from kafkalog.sink.documents import Preparer
from kafkalog.sink.outputs import StoreSetupError
from kafkalog.sink.outputs.file import FileOutput


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def docs(first: int, count: int, size: int = 10) -> list:
    records = [record(n, b'{"n":%d,"pad":"%s"}' % (n, b"x" * size)) for n in
               range(first, first + count)]
    return Preparer(None, "index").prepare(records)


def lines_in(directory: Path) -> list[bytes]:
    out: list[bytes] = []
    for path in sorted(directory.iterdir()):
        if path.name.endswith(".gz"):
            out.extend(gzip.decompress(path.read_bytes()).splitlines())
        elif ".ndjson" in path.name:
            out.extend(path.read_bytes().splitlines())
    return out


def test_every_document_is_one_line_and_on_disk_when_write_returns(tmp_path: Path) -> None:
    out = FileOutput(tmp_path, max_bytes=1 << 20, max_age_ms=60_000, clock=Clock())
    out.start()
    assert out.write(docs(0, 3)) == [None, None, None]
    (open_file,) = tmp_path.glob("*.ndjson.open")
    assert open_file.read_bytes().count(b"\n") == 3
    out.close()
    (done,) = tmp_path.glob("*.ndjson.gz")
    assert [line[:7] for line in lines_in(tmp_path)] == [b'{"n":0,', b'{"n":1,', b'{"n":2,']
    assert not list(tmp_path.glob("*.open"))
    assert done.name.startswith("kafkalog-20231114T221320-")


def test_a_file_is_rotated_when_it_reaches_max_bytes(tmp_path: Path) -> None:
    out = FileOutput(tmp_path, max_bytes=2048, max_age_ms=60_000)
    out.start()
    for first in range(0, 100, 10):
        out.write(docs(first, 10, size=30))
    out.close()
    assert out.rotations >= 2
    assert len(list(tmp_path.glob("*.ndjson.gz"))) == out.rotations
    assert len(lines_in(tmp_path)) == 100


def test_a_file_is_rotated_when_it_gets_older_than_max_age(tmp_path: Path) -> None:
    clock = Clock()
    out = FileOutput(tmp_path, max_bytes=1 << 20, max_age_ms=10_000, compression="none",
                     clock=clock)
    out.start()
    out.write(docs(0, 2))
    clock.now += 11
    out.write(docs(2, 2))
    assert out.rotations == 1
    assert len(list(tmp_path.glob("*.ndjson"))) == 1
    out.close()
    assert len(list(tmp_path.glob("*.ndjson"))) == 2
    assert len(lines_in(tmp_path)) == 4


def test_an_idle_file_is_rotated_by_age_without_a_write(tmp_path: Path) -> None:
    clock = Clock()
    out = FileOutput(tmp_path, max_bytes=1 << 20, max_age_ms=10_000, clock=clock)
    out.start()
    out.write(docs(0, 2))
    out.tick()
    assert out.rotations == 0
    clock.now += 11
    out.tick()
    assert out.rotations == 1
    assert not list(tmp_path.glob("*.open")) and len(lines_in(tmp_path)) == 2
    out.close()


def test_a_file_left_open_by_a_crash_is_finished_at_the_next_start(tmp_path: Path) -> None:
    crashed = FileOutput(tmp_path, max_bytes=1 << 20, max_age_ms=60_000)
    crashed.start()
    crashed.write(docs(0, 5))
    crashed._lock_file.close()  # the process died: its lock went with it
    after = FileOutput(tmp_path, max_bytes=1 << 20, max_age_ms=60_000)
    after.start()
    assert not list(tmp_path.glob("*.open"))
    assert len(lines_in(tmp_path)) == 5
    after.write(docs(5, 1))
    after.close()
    assert len(lines_in(tmp_path)) == 6


def test_a_second_sink_cannot_write_into_the_same_directory(tmp_path: Path) -> None:
    first = FileOutput(tmp_path, max_bytes=1 << 20, max_age_ms=60_000)
    first.start()
    with pytest.raises(StoreSetupError, match="in use"):
        FileOutput(tmp_path, max_bytes=1 << 20, max_age_ms=60_000).start()
    first.close()
