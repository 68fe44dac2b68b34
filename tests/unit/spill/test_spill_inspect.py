"""Specification of kafkalog.spill.inspect: a spill directory seen from outside its writers.

Which writers still run (a real ``flock`` stands for a live process), which topics a directory
holds, and a summary of each segment, damaged ones included. Looking never changes anything.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from spill_segments import dead_writer_segments, log_value

from kafkalog.spill import LOCK_SUFFIX, SEGMENT_SUFFIX
from kafkalog.spill.inspect import SegmentSummary, segment_summaries, topics_in, writer_alive

WRITER = "0123456789abcdef"


@pytest.fixture
def spill_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "spill"
    directory.mkdir()
    return directory


def hold_lock(path: Path, operation: int = fcntl.LOCK_EX) -> int:
    """What a live writer does: open its lock file and keep an flock on it. The descriptor."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    fcntl.flock(fd, operation | fcntl.LOCK_NB)
    return fd


@pytest.fixture
def live_writer(spill_dir: Path) -> Iterator[int]:
    """The lock of ``WRITER``, held for the duration of the test."""
    fd = hold_lock(spill_dir / f"{WRITER}{LOCK_SUFFIX}")
    yield fd
    os.close(fd)


# -- writers ---------------------------------------------------------------------------------------


def test_a_writer_holding_its_lock_is_alive(spill_dir: Path, live_writer: int) -> None:
    assert writer_alive(spill_dir, WRITER) is True


def test_a_writer_whose_lock_is_free_is_dead_and_its_lock_stays_free_for_adoption(
    spill_dir: Path,
) -> None:
    lock = spill_dir / f"{WRITER}{LOCK_SUFFIX}"
    fd = hold_lock(lock)
    os.close(fd)  # the process died: the kernel let go of its lock
    assert writer_alive(spill_dir, WRITER) is False
    adopter = hold_lock(lock)  # looking did not keep the lock: another process can adopt
    os.close(adopter)
    assert lock.exists(), "looking never removes a lock file"


def test_looking_does_not_disturb_a_live_writers_lock(spill_dir: Path, live_writer: int) -> None:
    for _ in range(3):
        assert writer_alive(spill_dir, WRITER) is True
    with pytest.raises(BlockingIOError):  # the writer still holds it exclusively
        hold_lock(spill_dir / f"{WRITER}{LOCK_SUFFIX}", fcntl.LOCK_SH)


def test_a_writer_without_a_lock_file_is_dead(spill_dir: Path) -> None:
    assert writer_alive(spill_dir, WRITER) is False


def test_a_symlink_in_place_of_a_lock_file_is_not_followed(
    spill_dir: Path, tmp_path: Path
) -> None:
    elsewhere = tmp_path / "held.lock"
    fd = hold_lock(elsewhere)
    try:
        (spill_dir / f"{WRITER}{LOCK_SUFFIX}").symlink_to(elsewhere)
        assert writer_alive(spill_dir, WRITER) is False
    finally:
        os.close(fd)


# -- topics ----------------------------------------------------------------------------------------


def test_topics_are_those_of_the_spill_segments_sorted_once_each(spill_dir: Path) -> None:
    dead_writer_segments(spill_dir, "orders", [b"1"])
    dead_writer_segments(spill_dir, "app.logs", [b"2"])
    dead_writer_segments(spill_dir, "orders", [b"3"])
    dead_writer_segments(spill_dir, "refused.only", [], dead_letters=[b"x"])  # never replayed
    (spill_dir / f"{WRITER}-0000000001{SEGMENT_SUFFIX}").write_bytes(b"not a segment header")
    (spill_dir / "notes.txt").write_text("not a segment")
    assert topics_in(spill_dir) == ["app.logs", "orders"]


def test_a_symlink_named_like_a_segment_is_not_followed_for_its_topic(
    spill_dir: Path, tmp_path: Path
) -> None:
    elsewhere = dead_writer_segments(tmp_path / "elsewhere", "secret.topic", [b"1"])[0]
    (spill_dir / f"{WRITER}-0000000009{SEGMENT_SUFFIX}").symlink_to(elsewhere)
    dead_writer_segments(spill_dir, "orders", [b"2"])
    assert topics_in(spill_dir) == ["orders"]


def test_an_empty_directory_has_no_topics(spill_dir: Path) -> None:
    assert topics_in(spill_dir) == []


# -- segment summaries -----------------------------------------------------------------------------


def test_a_dead_writers_segment_is_summarised(spill_dir: Path) -> None:
    [segment] = dead_writer_segments(spill_dir, "app.logs", [log_value(n) for n in (1, 2, 3)])
    assert segment_summaries(spill_dir) == [
        SegmentSummary(
            file=segment.name, kind="spill", writer=segment.name.split("-")[0],
            size_bytes=segment.stat().st_size, topic="app.logs", records=3,
            oldest="2026-03-01T12:00:01.000000Z", newest="2026-03-01T12:00:03.000000Z",
        )
    ]


def test_a_live_writers_segment_says_so(spill_dir: Path) -> None:
    [segment] = dead_writer_segments(spill_dir, "app.logs", [b"1"])
    fd = hold_lock(spill_dir / f"{segment.name.split('-')[0]}{LOCK_SUFFIX}")
    try:
        [summary] = segment_summaries(spill_dir)
    finally:
        os.close(fd)
    assert summary.writer_alive is True


def test_dead_letters_and_records_that_are_not_json_are_summarised(spill_dir: Path) -> None:
    dead_writer_segments(spill_dir, "app.logs", [b"plain text", b"[1, 2]"],
                         dead_letters=[log_value(7)])
    spill, dead = sorted(segment_summaries(spill_dir), key=lambda s: s.kind, reverse=True)
    assert (spill.kind, spill.records, spill.oldest, spill.newest) == ("spill", 2, None, None)
    assert (dead.kind, dead.records, dead.topic) == ("dead", 1, "app.logs")
    assert dead.oldest == dead.newest == "2026-03-01T12:00:07.000000Z"


def test_a_damaged_frame_is_a_corrupt_region_and_the_other_records_still_count(
    spill_dir: Path,
) -> None:
    [segment] = dead_writer_segments(spill_dir, "app.logs", [log_value(n) for n in (1, 2, 3)])
    data = bytearray(segment.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the middle record's frame
    segment.write_bytes(bytes(data))
    [summary] = segment_summaries(spill_dir)
    assert (summary.records, summary.corrupt_regions, summary.error) == (2, 1, None)
    assert (summary.oldest, summary.newest) == ("2026-03-01T12:00:01.000000Z",
                                                "2026-03-01T12:00:03.000000Z")


def test_a_torn_tail_is_counted_apart_from_corruption(spill_dir: Path) -> None:
    [segment] = dead_writer_segments(spill_dir, "app.logs", [log_value(1), log_value(2)])
    with open(segment, "r+b") as f:
        f.truncate(segment.stat().st_size - 5)  # the last write was cut short
    [summary] = segment_summaries(spill_dir)
    assert (summary.records, summary.corrupt_regions) == (1, 0)
    assert summary.torn_tail_bytes > 0


def test_a_segment_with_a_bad_header_has_no_topic_and_one_corrupt_region(
    spill_dir: Path,
) -> None:
    [segment] = dead_writer_segments(spill_dir, "app.logs", [log_value(1)])
    data = segment.read_bytes()
    segment.write_bytes(b"XXXX" + data[4:])  # not the magic any more
    [summary] = segment_summaries(spill_dir)
    assert summary.readable is True
    assert (summary.topic, summary.records, summary.corrupt_regions) == (None, 0, 1)
    assert summary.error == "bad or missing segment header"
    assert summary.size_bytes == len(data)


def test_a_segment_that_cannot_be_read_is_reported_not_followed(
    spill_dir: Path, tmp_path: Path
) -> None:
    [real] = dead_writer_segments(tmp_path / "elsewhere", "app.logs", [log_value(1)])
    name = f"{WRITER}-0000000001{SEGMENT_SUFFIX}"
    (spill_dir / name).symlink_to(real)
    [summary] = segment_summaries(spill_dir)
    assert (summary.file, summary.kind, summary.writer) == (name, "spill", WRITER)
    assert summary.readable is False
    assert summary.error
    assert (summary.records, summary.size_bytes, summary.topic) == (0, 0, None)


def test_summaries_follow_file_name_order_and_change_nothing(spill_dir: Path) -> None:
    dead_writer_segments(spill_dir, "b.logs", [b"1"])
    dead_writer_segments(spill_dir, "a.logs", [b"2"], dead_letters=[b"3"])
    before = {p.name: p.read_bytes() for p in spill_dir.iterdir()}
    summaries = segment_summaries(spill_dir)
    assert [s.file for s in summaries] == sorted(before)
    assert {p.name: p.read_bytes() for p in spill_dir.iterdir()} == before
