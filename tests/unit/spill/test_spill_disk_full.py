"""Specification of the spill on a small or nearly full disk (kafkalog.spill.appender).

The spill keeps as much as the disk and ``spill_max_bytes`` allow: segments are sized to the
room there is, an append that does not fit whole keeps what fits (``drop_oldest``: the newest,
``drop_newest``: the oldest), a write that fills the disk is retried once room is made, space
that comes back is used again, and each record's outcome is reported truthfully. Most tests
run on a real tmpfs (root only; skipped with the reason otherwise).
"""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest
from spill_store_helpers import (
    LOOP_BOUND,
    deleted_but_open,
    drain,
    frame_bytes,
    make_store,
    rec,
    seg_files,
    segments_on_disk,
    small_filesystem,
)

from kafkalog.spill import SpillRecord, SpillStore
from kafkalog.spill import writer as spill_writer
from kafkalog.spill.segments import SpillSegment

RECORD_BYTES = 400
DISK_BYTES = 512 * 1024
_real_write = os.write


class Listener:
    """What the store reports of tagged records, by number."""

    def __init__(self) -> None:
        self.durable: list[int] = []
        self.lost: list[tuple[int, bool]] = []  # (number, after_durable)

    def spill_durable(self, tag: Sequence[int]) -> None:
        self.durable.extend(tag)

    def spill_lost(self, tag: Sequence[int] | None, count: int, *, after_durable: bool) -> None:
        assert tag is not None, "every record of these tests is tagged"
        assert len(tag) == count
        self.lost.extend((n, after_durable) for n in tag)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """An empty directory on a real filesystem of DISK_BYTES."""
    with small_filesystem(tmp_path / "mnt", DISK_BYTES) as mountpoint:
        yield mountpoint


def numbered(i: int) -> SpillRecord:
    return rec(i, RECORD_BYTES)


def number_of(record: SpillRecord) -> int:
    return int(record[0][:6])


def capacity(directory: Path) -> int:
    """How many records fit in the free space of ``directory``'s filesystem, frames only."""
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize // frame_bytes([numbered(0)])


def fill_up(store: SpillStore, count: int, batch: int = 40) -> list[SpillRecord]:
    """Append ``count`` numbered records in batches; what was offered."""
    offered = [numbered(i) for i in range(count)]
    for i in range(0, count, batch):
        store.append(offered[i : i + batch], tag=range(i, min(i + batch, count)))
    return offered


# -- a real small disk -------------------------------------------------------------------------


def test_drop_oldest_on_a_full_disk_keeps_the_newest_records_that_fit(small_disk: Path) -> None:
    spill = small_disk / "spill"
    fits = capacity(small_disk)
    store = make_store(spill, full_policy="drop_oldest", segment_bytes=16 * 1024**2)
    offered = fill_up(store, 5 * fits)
    kept = drain(store)
    assert kept == offered[len(offered) - len(kept) :], "the newest records, in order"
    assert len(kept) >= 0.7 * fits, f"kept {len(kept)} of the {fits} that fit"
    assert len(kept) + store.dropped == len(offered)
    assert deleted_but_open(spill) == [], "a dropped segment's blocks must come back"


def test_drop_newest_on_a_full_disk_keeps_the_oldest_records_that_fit(small_disk: Path) -> None:
    spill = small_disk / "spill"
    fits = capacity(small_disk)
    store = make_store(spill, full_policy="drop_newest", segment_bytes=16 * 1024**2)
    offered = fill_up(store, 5 * fits)
    kept = drain(store)
    assert kept == offered[: len(kept)], "the oldest records, in order"
    assert len(kept) >= 0.7 * fits, f"kept {len(kept)} of the {fits} that fit"
    assert len(kept) + store.dropped == len(offered)


def test_segments_are_sized_to_the_free_space_so_a_drop_gives_up_only_a_slice(
    small_disk: Path,
) -> None:
    spill = small_disk / "spill"
    store = make_store(spill, full_policy="drop_oldest", segment_bytes=16 * 1024**2)
    fill_up(store, 3 * capacity(small_disk))
    sizes = [path.stat().st_size for path in seg_files(spill)]
    assert len(sizes) >= 6, f"a 16 MiB segment_bytes must not make one segment: {sizes}"
    assert max(sizes) <= DISK_BYTES // 8 + frame_bytes([numbered(0)]) + 64


def test_space_that_comes_back_is_used_again_without_a_restart(small_disk: Path) -> None:
    spill = small_disk / "spill"
    store = make_store(spill, full_policy="drop_newest")
    assert store.append([numbered(0)]) == 1
    other = small_disk / "someone-elses-file"
    fd = os.open(other, os.O_WRONLY | os.O_CREAT, 0o600)
    try:  # fill the disk to the last block
        for _ in range(LOOP_BOUND):
            try:
                os.write(fd, b"x" * 4096)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    full = [numbered(i) for i in range(1, 21)]  # more than the last block of a segment holds
    written = store.append(full)
    assert written < len(full)
    assert store.dropped == len(full) - written
    other.unlink()
    later = [numbered(i) for i in range(100, 120)]
    assert store.append(later) == len(later), "the room that came back is used"
    assert drain(store) == [numbered(0), *full[:written], *later]


def test_outcomes_are_truthful_on_a_full_disk(small_disk: Path) -> None:
    listener = Listener()
    spill = small_disk / "spill"
    store = SpillStore(spill, "t", fsync="interval", fsync_interval_s=3600.0,
                       segment_bytes=16 * 1024**2, listener=listener)
    offered = fill_up(store, 3 * capacity(small_disk))
    lost_unwritten = {n for n, after in listener.lost if not after}
    assert listener.durable == [], "nothing is durable before an fsync covered it"
    store.sync()
    durable = set(listener.durable)
    assert not durable & lost_unwritten, "a record lost before its fsync is never durable"
    on_disk = {number_of(r) for _, records in segments_on_disk(spill) for r in records}
    gone = {n for n, _ in listener.lost}
    assert on_disk == durable - gone, "durable means on disk, until it is reported lost"
    assert on_disk | gone == set(range(len(offered))), "every record has an outcome"
    assert len(listener.lost) == len(gone) == store.dropped, "each loss reported once"


# -- the write that fills the disk -------------------------------------------------------------


class ShortDisk:
    """os.write for files under ``directory`` as on a disk with ``room`` bytes left: a write
    that does not fit writes what fits, the next one fails with ENOSPC. Deleting (and
    closing) a file of the directory gives its bytes back."""

    def __init__(self, directory: Path, room: int) -> None:
        self.prefix = str(directory.resolve()) + os.sep
        self.room = room
        self.refused = 0

    def write(self, fd: int, data: bytes | memoryview) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not target.startswith(self.prefix):
            return _real_write(fd, data)
        if self.room <= 0:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written = _real_write(fd, bytes(data[: self.room]))
        self.room -= written
        return written


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")
def test_enospc_mid_write_keeps_the_whole_frames_and_retries_the_rest_after_freeing_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spill = tmp_path / "spill"
    store = make_store(spill, full_policy="drop_oldest")
    old = [numbered(i) for i in range(30)]
    for record in old:
        store.append([record])
    segments = segments_on_disk(spill)
    assert len(segments) >= 3
    disk = ShortDisk(spill, room=frame_bytes([numbered(0)]) * 2 + 100)
    monkeypatch.setattr(spill_writer.os, "write", disk.write)
    real_remove = store._segments.remove

    def remove_and_give_back(segment: SpillSegment) -> None:
        disk.room += segment.bytes  # its descriptor is closed: the blocks are free again
        real_remove(segment)

    monkeypatch.setattr(store._segments, "remove", remove_and_give_back)
    new = [numbered(100 + i) for i in range(6)]
    assert store.append(new) == len(new), "written in parts, as room was made"
    assert disk.refused >= 1 and store.write_errors >= 1
    gone = [records for path, records in segments if not path.exists()]
    assert gone, "the oldest segment was given up for room"
    lost = sum(len(records) for records in gone)
    assert store.dropped == lost
    assert drain(store) == old[lost:] + new, "no torn frame, nothing twice, in order"


# -- the cap -----------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_an_append_larger_than_the_cap_keeps_what_fits_per_policy(
    tmp_path: Path, policy: str
) -> None:
    listener = Listener()
    store = SpillStore(tmp_path / "spill", "t", fsync="never", max_bytes=20 * 1024,
                       segment_bytes=4096, full_policy=policy, listener=listener)
    offered = [numbered(i) for i in range(200)]
    written = store.append(offered, tag=range(200))
    kept = drain(store)
    assert 0 < written == len(kept) < len(offered)
    expected = offered[-len(kept):] if policy == "drop_oldest" else offered[: len(kept)]
    assert kept == expected
    assert sorted(n for n, _ in listener.lost) == sorted(
        set(range(200)) - {number_of(r) for r in kept}
    )


def test_segment_size_follows_the_room_there_is(tmp_path: Path) -> None:
    def roomy(_: Path) -> tuple[int, int]:
        return 1 << 40, 4096

    def cramped(directory: Path) -> tuple[int, int]:  # a 256 KiB disk
        used = sum(p.stat().st_size for p in directory.iterdir()) if directory.exists() else 0
        return 256 * 1024 - used, 4096

    sizes = {}
    for name, space in (("roomy", roomy), ("cramped", cramped)):
        store = SpillStore(tmp_path / name, "t", fsync="never", segment_bytes=64 * 1024,
                           space=space)
        for i in range(0, 600, 20):
            store.append([numbered(j) for j in range(i, i + 20)])
        sizes[name] = [p.stat().st_size for p in seg_files(tmp_path / name)]
    slack = frame_bytes([numbered(0)])  # a segment takes frames until it reached its size
    assert all(size <= 64 * 1024 + slack for size in sizes["roomy"])
    assert len(sizes["roomy"]) < len(sizes["cramped"])
    assert all(size <= 256 * 1024 // 8 + slack for size in sizes["cramped"])
