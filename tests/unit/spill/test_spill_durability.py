"""SpillStore tells its listener when tagged records are durable, and when they are lost."""

from __future__ import annotations

import errno
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from kafkalog.errors import InvariantError
from kafkalog.spill import SpillStore


class Listener:
    def __init__(self) -> None:
        self.durable: list[list[int]] = []
        self.lost: list[tuple[list[int] | None, int, bool]] = []

    def spill_durable(self, tag: Sequence[int]) -> None:
        self.durable.append(list(tag))

    def spill_lost(self, tag: Sequence[int] | None, count: int, *, after_durable: bool) -> None:
        self.lost.append((None if tag is None else list(tag), count, after_durable))


def rec(i: int, size: int = 100) -> tuple[bytes, None]:
    return b"%06d" % i + b"." * (size - 6), None


def test_durable_only_after_the_fsync_that_covers_it(tmp_path: Path) -> None:
    listener = Listener()
    store = SpillStore(tmp_path, "t", fsync="interval", fsync_interval_s=3600.0,
                       listener=listener)
    assert store.append([rec(1), rec(2)], sync=False, tag=range(1, 3)) == 2
    assert store.append([rec(3)], tag=range(3, 4)) == 1
    assert listener.durable == [] and store.spilled == 0, "written is not yet durable"
    store.sync()
    assert listener.durable == [[1, 2], [3]]
    assert store.spilled == 3
    store.close()


def test_with_fsync_never_written_counts_as_durable(tmp_path: Path) -> None:
    listener = Listener()
    store = SpillStore(tmp_path, "t", fsync="never", listener=listener)
    assert store.append([rec(1)], sync=False, tag=range(7, 8)) == 1
    assert listener.durable == [[7]]
    store.close()


def test_a_failed_fsync_reports_the_records_lost(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    listener = Listener()
    store = SpillStore(tmp_path, "t", fsync="interval", fsync_interval_s=3600.0,
                       listener=listener)
    store.append([rec(1), rec(2)], tag=range(1, 3))

    def broken(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(os, "fsync", broken)
    store.sync()
    assert listener.durable == []
    assert listener.lost == [([1, 2], 2, False)]
    assert store.dropped == 2
    monkeypatch.undo()
    store.close()


def test_a_segment_dropped_for_room_reports_its_records_again(tmp_path: Path) -> None:
    listener = Listener()
    store = SpillStore(tmp_path, "t", fsync="always", max_bytes=8192, segment_bytes=4096,
                       full_policy="drop_oldest", listener=listener)
    for i in range(1, 12):
        assert store.append([rec(i, 1000)], tag=range(i, i + 1)) == 1
    lost = [tag for tag, _, after in listener.lost if after]
    assert lost and lost[0] == [1], "the oldest go first, reported after being durable"
    assert all(count == len(tag or ()) for tag, count, _ in listener.lost)
    assert store.dropped == sum(count for _, count, _ in listener.lost)
    store.close()


def test_a_tag_must_match_the_records(tmp_path: Path) -> None:
    store = SpillStore(tmp_path, "t")
    with pytest.raises(InvariantError):
        store.append([rec(1)], tag=range(1, 3))
    store.close()
