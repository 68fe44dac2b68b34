"""Specification of the spill store's writing side (kafkalog.spill.store, .writer).

FIFO replay of what was appended, with acknowledgement; dead letters; the size cap; a full
disk; the fsync policy; the counters.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
import threading
from pathlib import Path

import pytest
from spill_store_helpers import (
    HEADER_LEN,
    LOOP_BOUND,
    MIN_SEGMENT,
    TOPIC,
    drain,
    frame_bytes,
    make_store,
    rec,
    seg_files,
    segments_on_disk,
    simulate_death,
)

from kafkalog.spill import (
    DEAD_LETTER_SUFFIX,
    LOCK_SUFFIX,
    SEGMENT_SUFFIX,
    SpillRecord,
    encode_frame,
    encode_payload,
    read_segment,
)
from kafkalog.spill import writer as spill

_real_write = os.write
# The fake disk and the descriptor check look at /proc/self/fd.
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")




def open_files_under(directory: Path) -> list[str]:
    """Paths under ``directory`` this process holds a descriptor for."""
    prefix = str(directory.resolve()) + os.sep
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith(prefix):
                found.append(target)
    return found



class FakeDisk:
    """os.write for files under ``directory`` as on a disk of ``capacity`` bytes.

    Usage is what the directory's files occupy plus ``other`` (somebody else's files). A
    write that does not fit writes what fits and the next one fails with ENOSPC, as a real
    disk does. Deleting files frees space.
    """

    def __init__(self, directory: Path, capacity: int) -> None:
        self.prefix = str(directory.resolve()) + os.sep
        self.directory = directory
        self.capacity = capacity
        self.other = 0
        self.refused = 0

    def used(self) -> int:
        return self.other + sum(p.lstat().st_size for p in self.directory.iterdir())

    def fill(self) -> None:
        """No room left from now on."""
        self.capacity = self.used()

    def write(self, fd: int, data: bytes | memoryview) -> int:
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            target = ""
        if not target.startswith(self.prefix):
            return _real_write(fd, data)
        room = self.capacity - self.used()
        if room <= 0:
            self.refused += 1
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return _real_write(fd, bytes(data[:room]))



@pytest.fixture
def spill_dir(tmp_path: Path) -> Path:
    """A spill directory the store has to create itself."""
    return tmp_path / "spill"


# -- 1. round trip -----------------------------------------------------------------------------


def test_round_trip_across_segment_rolls_replays_exactly_what_was_appended(
    spill_dir: Path,
) -> None:
    store = make_store(spill_dir)
    odd: list[SpillRecord] = [
        (b"", None),
        (b"", b""),
        (b"\x00" * 40, None),  # zero runs must never read as frames
        (bytes(range(256)), b"\xff\x00key"),
        (b"\x00" * 12, b"\x00" * 12),
        (encode_frame(encode_payload(b"nested", None)), None),  # a frame inside a value
    ]
    appended = odd + [
        (b"record %d " % i * (i % 37), b"key-%d" % i if i % 3 else None) for i in range(300)
    ]
    chunks = [appended[i : i + 5] for i in range(0, len(appended), 5)]
    for chunk in chunks:
        assert store.append(chunk) == len(chunk)
    assert store.spilled == len(appended)
    assert store.pending_records() == len(appended)
    assert store.has_pending()

    files = seg_files(spill_dir)
    assert len(files) >= 4, "small segment_bytes must roll segments"
    biggest_batch = max(frame_bytes(c) for c in chunks)
    for sealed in files[:-1]:  # a segment rolls once it reached segment_bytes, not before
        assert MIN_SEGMENT <= sealed.stat().st_size < MIN_SEGMENT + biggest_batch
    assert stat.S_IMODE(spill_dir.stat().st_mode) == 0o700
    for path in spill_dir.iterdir():
        assert stat.S_IMODE(path.lstat().st_mode) == 0o600, path.name
    assert {p.name for p in spill_dir.glob("*" + LOCK_SUFFIX)} == {
        f"{store.writer_id}{LOCK_SUFFIX}"
    }
    assert store.pending_bytes() == sum(p.stat().st_size for p in files)

    replayed: list[SpillRecord] = []
    for _ in range(LOOP_BOUND):
        batch = store.read_batch(max_records=9, max_bytes=2048)
        if batch is None:
            break
        assert 1 <= len(batch.records) <= 9
        replayed.extend(batch.records)
        store.ack(batch, len(batch.records))
        # What is left on disk is exactly the unacknowledged tail, plus the acknowledged
        # part of the segment being replayed: fully acknowledged segments are gone.
        segments = segments_on_disk(spill_dir)
        on_disk = [r for _, records in segments for r in records]
        floor = len(appended) - len(on_disk)
        assert on_disk == appended[floor:]
        if on_disk:
            assert floor <= len(replayed) < floor + len(segments[0][1])
    assert replayed == appended
    assert store.replayed == len(appended)
    assert store.pending_records() == 0
    assert not store.has_pending()
    assert store.read_batch(10, 10_000) is None
    counters = store.counters()
    assert counters["spilled"] == counters["replayed"] == len(appended)
    assert counters["spill_dropped"] == counters["corrupt_frames"] == 0

    store.close()
    assert list(spill_dir.iterdir()) == [], "close() leaves no segment and no lock file"


def test_partial_ack_redelivers_the_rest_and_a_stale_ack_is_ignored(spill_dir: Path) -> None:
    store = make_store(spill_dir)
    appended = [rec(i, 40) for i in range(20)]
    store.append(appended)
    first = store.read_batch(8, 1 << 20)
    assert first is not None
    assert first.records == appended[:8]
    store.ack(first, 3)
    second = store.read_batch(8, 1 << 20)
    assert second is not None
    assert second.records == appended[3:11]
    store.ack(first, 0)  # nothing acknowledged: no effect
    store.ack(second, 8)
    assert drain(store) == appended[11:]
    store.ack(second, 5)  # its segment is gone: ignored, not applied to another segment
    assert store.replayed == 20
    store.close()
    assert list(spill_dir.iterdir()) == []


def test_read_batch_respects_max_records_and_max_bytes_but_always_makes_progress(
    spill_dir: Path,
) -> None:
    store = make_store(spill_dir)
    store.append([(b"a" * 100, None), (b"b" * 100, None), (b"c" * 5000, None), (b"d", None)])
    sizes = []
    for _ in range(10):
        batch = store.read_batch(max_records=3, max_bytes=150)
        if batch is None:
            break
        sizes.append([len(v) for v, _ in batch.records])
        store.ack(batch, len(batch.records))
    # 100+100 > 150 splits; a single record over max_bytes still goes, alone.
    assert sizes == [[100], [100], [5000], [1]]


def test_append_from_many_threads_keeps_each_threads_order(spill_dir: Path) -> None:
    store = make_store(spill_dir)
    per_thread = 150

    def writer(t: int) -> None:
        for i in range(per_thread):
            assert store.append([(b"%d:%06d" % (t, i) + b"." * (i % 50), None)], sync=False) == 1

    threads = [threading.Thread(target=writer, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
        assert not thread.is_alive()
    values = [v for v, _ in drain(store)]
    assert len(values) == 4 * per_thread
    for t in range(4):
        mine = [v.split(b".")[0] for v in values if v.startswith(b"%d:" % t)]
        assert mine == [b"%d:%06d" % (t, i) for i in range(per_thread)]


def test_dead_letters_go_to_their_own_files_and_are_never_replayed(spill_dir: Path) -> None:
    store = make_store(spill_dir)
    dead = [rec(1, 10, b"k"), rec(2)]
    assert store.append(dead, dead_letter=True) == 2
    assert store.dead_lettered == 2
    assert store.read_batch(10, 1 << 20) is None
    files = list(spill_dir.glob("*" + DEAD_LETTER_SUFFIX))
    assert len(files) == 1
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    header, records, _ = read_segment(files[0])
    assert header is not None
    assert header.topic == TOPIC
    assert records == dead
    store.close()
    simulate_death(store)
    other = make_store(spill_dir)
    assert other.adopt_orphans() == 0, "dead letters are not replayed by an adopter either"
    assert files[0].exists()



# -- 2. the size cap ---------------------------------------------------------------------------


def test_cap_with_drop_oldest_deletes_the_oldest_sealed_segment_and_counts_its_records(
    spill_dir: Path,
) -> None:
    cap = 4 * MIN_SEGMENT
    store = make_store(spill_dir, max_bytes=cap, full_policy="drop_oldest")
    appended: list[SpillRecord] = []
    for i in range(200):
        before = {p: len(r) for p, r in segments_on_disk(spill_dir)}
        dropped_before = store.dropped
        record = rec(i, 300, b"k")
        assert store.append([record]) == 1, "drop_oldest always makes room for new records"
        appended.append(record)
        after = seg_files(spill_dir)
        gone = [p for p in before if p not in after]
        assert gone == sorted(before)[: len(gone)], "only the oldest segments are deleted"
        assert store.dropped - dropped_before == sum(before[p] for p in gone)
        # The cap is checked before a new segment's header is written: at most one header over.
        assert store.pending_bytes() <= cap + HEADER_LEN
        assert store.pending_bytes() == sum(p.stat().st_size for p in after)
    assert store.dropped > 0
    kept = drain(store)
    assert kept == appended[len(appended) - len(kept) :], "what is kept is the newest records"
    assert len(kept) + store.dropped == len(appended)


def test_cap_with_drop_oldest_counts_only_unacknowledged_records_of_a_replaying_segment(
    spill_dir: Path,
) -> None:
    cap = 3 * MIN_SEGMENT
    store = make_store(spill_dir, max_bytes=cap, full_policy="drop_oldest")
    appended = [rec(i, 300) for i in range(20)]
    for r in appended:
        store.append([r])
    head = store.read_batch(5, 1 << 20)
    assert head is not None
    head_records = len(read_segment(head.segment.path)[1])
    store.ack(head, 3)
    i = len(appended)
    for _ in range(200):
        if not head.segment.path.exists():
            break
        dropped_before = store.dropped
        appended.append(rec(i, 300))
        store.append([appended[-1]])
        i += 1
    else:
        raise AssertionError("the head segment was never dropped")
    assert store.dropped - dropped_before == head_records - 3
    store.ack(head, 5)  # its segment was dropped meanwhile: a no-op, not an error
    kept = drain(store)
    assert kept == appended[len(appended) - len(kept) :]
    assert 3 + store.dropped + len(kept) == len(appended)


def test_cap_with_drop_oldest_keeps_the_newest_even_when_the_cap_is_below_a_segment(
    spill_dir: Path,
) -> None:
    cap = 3000  # smaller than segment_bytes: there is never a second, sealed segment
    store = make_store(spill_dir, max_bytes=cap, full_policy="drop_oldest")
    appended = [rec(i, 100) for i in range(100)]
    for r in appended:
        assert store.append([r]) == 1
        assert store.pending_bytes() <= cap + HEADER_LEN
    kept = drain(store)
    assert kept, "the newest records are kept"
    assert kept == appended[-len(kept) :]
    assert len(kept) + store.dropped == len(appended)


def test_cap_with_drop_newest_keeps_the_oldest_that_fit_and_counts_the_rest(
    spill_dir: Path,
) -> None:
    cap = 3 * MIN_SEGMENT
    store = make_store(spill_dir, max_bytes=cap, full_policy="drop_newest")
    offered: list[SpillRecord] = []
    for i in range(100):
        batch = [rec(i, 250), rec(i, 250, b"k")]
        offered.extend(batch)
        before = {p: p.read_bytes() for p in seg_files(spill_dir)}
        written = store.append(batch)
        if written < len(batch):  # what was on disk stays as it was
            after = {p: p.read_bytes() for p in seg_files(spill_dir)}
            assert all(after[p].startswith(data) for p, data in before.items())
        assert store.pending_bytes() <= cap + HEADER_LEN
    kept = drain(store)
    assert store.dropped > 0
    assert kept == offered[: len(kept)], "the oldest records are the ones kept"
    assert len(kept) + store.dropped == len(offered)
    assert store.append([rec(999)]) == 1, "replay made room again"


def test_an_oversized_batch_is_refused_without_destroying_anything(spill_dir: Path) -> None:
    store = make_store(spill_dir, max_bytes=2 * MIN_SEGMENT, full_policy="drop_newest")
    store.append([rec(0, 100)])
    assert store.append([rec(1, 3 * MIN_SEGMENT)]) == 0
    assert store.dropped == 1
    assert drain(store) == [rec(0, 100)]


# -- 3. a full disk ----------------------------------------------------------------------------


@pytest.fixture
def disk(spill_dir: Path, monkeypatch: pytest.MonkeyPatch) -> FakeDisk:
    fake = FakeDisk(spill_dir, capacity=1 << 40)
    spill_dir.mkdir(mode=0o700)
    monkeypatch.setattr(spill.os, "write", fake.write)
    return fake


@needs_proc
def test_disk_full_mid_frame_drops_the_batch_and_leaves_no_torn_frame(
    spill_dir: Path, disk: FakeDisk
) -> None:
    store = make_store(spill_dir, full_policy="drop_newest")
    first = [rec(i, 50) for i in range(5)]
    assert store.append(first) == 5
    disk.capacity = disk.used() + 70  # half of the next batch's first frame fits
    batch = [rec(10, 100), rec(11, 100)]
    assert store.append(batch) == 0
    assert (store.dropped, store.write_errors) == (2, 1)
    (path,) = seg_files(spill_dir)
    header, records, scan = read_segment(path)
    assert header is not None
    assert records == first
    assert (scan.corrupt, scan.torn_tail_bytes) == (0, 0), "the partial frame was cut back"
    assert store.pending_bytes() == path.stat().st_size

    disk.capacity = 1 << 40  # space returns
    later = [rec(20, 10), rec(21, 10)]
    assert store.append(later) == 2
    assert drain(store) == first + later
    assert store.counters()["spill_write_errors"] == 1


@needs_proc
def test_disk_full_while_starting_a_segment_leaves_no_torn_header_and_no_open_file(
    spill_dir: Path, disk: FakeDisk
) -> None:
    store = make_store(spill_dir, full_policy="drop_newest")
    accepted: list[SpillRecord] = []
    for i in range(100):  # fill the first segment up to segment_bytes
        accepted.append(rec(i, 200))
        assert store.append([accepted[-1]]) == 1
        if seg_files(spill_dir)[0].stat().st_size >= MIN_SEGMENT:
            break
    assert len(seg_files(spill_dir)) == 1
    disk.capacity = disk.used() + 10  # the next append rolls; its header does not fit
    assert store.append([rec(500)]) == 0
    assert (store.dropped, store.write_errors) == (1, 1)
    for path in seg_files(spill_dir):
        assert read_segment(path)[0] is not None, f"{path.name}: torn header left behind"
    assert not [f for f in open_files_under(spill_dir) if f.endswith(SEGMENT_SUFFIX)]

    disk.capacity = 1 << 40
    assert store.append([rec(501)]) == 1
    assert drain(store) == [*accepted, rec(501)]
    store.close()
    assert list(spill_dir.iterdir()) == []


@needs_proc
def test_disk_full_with_drop_oldest_gives_up_old_segments_until_the_whole_append_fits(
    spill_dir: Path, disk: FakeDisk
) -> None:
    store = make_store(spill_dir, full_policy="drop_oldest")
    appended: list[SpillRecord] = []
    for i in range(LOOP_BOUND):
        if len(seg_files(spill_dir)) == 4:
            break
        appended.append(rec(i, 500))
        assert store.append([appended[-1]]) == 1
    before = segments_on_disk(spill_dir)
    disk.fill()
    # More than the oldest segment frees: a second one has to go too.
    big = [rec(9000 + i, 500) for i in range(12)]
    assert frame_bytes(big) > before[0][0].stat().st_size
    assert store.append(big) == len(big), "the newest records are kept"
    gone = [(path, records) for path, records in before if not path.exists()]
    assert len(gone) >= 2
    assert [path for path, _ in gone] == [path for path, _ in before[: len(gone)]]
    lost = sum(len(records) for _, records in gone)
    assert store.dropped == lost
    assert store.write_errors >= 2
    # segments_on_disk checks every frame: the writes cut short left no torn one
    assert [r for _, records in segments_on_disk(spill_dir) for r in records][-len(big):] == big
    assert drain(store) == appended[lost:] + big


@needs_proc
def test_disk_full_with_drop_oldest_makes_room_and_succeeds(
    spill_dir: Path, disk: FakeDisk
) -> None:
    store = make_store(spill_dir, full_policy="drop_oldest")
    appended = [rec(i, 500) for i in range(20)]
    for r in appended:
        store.append([r])
    oldest_path, oldest_records = segments_on_disk(spill_dir)[0]
    disk.fill()
    new = [rec(100, 500)]
    assert store.append(new) == 1
    assert not oldest_path.exists()
    assert store.dropped == len(oldest_records)
    assert store.write_errors == 1
    assert drain(store) == appended[len(oldest_records) :] + new


def test_a_failing_fsync_is_counted_and_never_raised(
    spill_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "I/O error")

    monkeypatch.setattr(spill.os, "fsync", broken_fsync)
    now = [0.0]
    store = make_store(spill_dir, fsync="interval", fsync_interval_s=10.0, clock=lambda: now[0])
    records = [rec(i, 100) for i in range(5)]
    assert store.append(records) == 5
    assert drain(store) == records, "sealing a segment for replay survives a failed fsync"
    assert store.write_errors >= 1
    always = make_store(spill_dir / "always", fsync="always")
    assert always.append([rec(1)]) == 1
    assert always.write_errors == 1
    always.close()
    assert always.write_errors == 2
    assert drain(always) == [rec(1)]



# -- 4. the fsync policy -----------------------------------------------------------------------


@pytest.fixture
def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The descriptors os.fsync was called on, in order (nothing is really synced)."""
    calls: list[int] = []
    monkeypatch.setattr(spill.os, "fsync", calls.append)
    return calls


def test_fsync_always_syncs_every_append(spill_dir: Path, fsyncs: list[int]) -> None:
    store = make_store(spill_dir, fsync="always")
    for i in range(12):
        assert store.append([rec(i, 900)]) == 1
        assert len(fsyncs) == i + 1, "one fsync per append, rolls included"
    assert len(seg_files(spill_dir)) >= 2
    store.append([rec(99)], sync=False)
    assert len(fsyncs) == 12, "sync=False leaves it to the next sync"
    store.close()
    assert len(fsyncs) == 13, "close() syncs what is not synced yet"


def test_fsync_never_never_syncs(spill_dir: Path, fsyncs: list[int]) -> None:
    store = make_store(spill_dir, fsync="never")
    for i in range(12):
        store.append([rec(i, 900)])
    store.sync()
    drain(store)
    store.append([rec(100)])
    store.close()
    assert fsyncs == []


def test_fsync_interval_follows_the_clock(spill_dir: Path, fsyncs: list[int]) -> None:
    now = [0.0]
    store = make_store(spill_dir, fsync="interval", fsync_interval_s=0.5, clock=lambda: now[0])
    for t, want in [(0.1, 0), (0.49, 0), (0.5, 1), (0.6, 1), (0.99, 1), (1.0, 2), (1.2, 2)]:
        now[0] = t
        store.append([rec(int(t * 100))])
        assert len(fsyncs) == want, f"at t={t}"
    now[0] = 5.0
    store.append([rec(500)], sync=False)
    assert len(fsyncs) == 2, "sync=False never syncs by itself"
    store.append([rec(501)])
    assert len(fsyncs) == 3
    now[0] = 5.1
    store.append([rec(510, 5000)])  # fills the segment; the next append rolls it
    assert len(fsyncs) == 3
    store.append([rec(511)])
    assert len(fsyncs) == 4, "a segment is synced when it is sealed"


def test_counters_snapshot_has_every_key(spill_dir: Path) -> None:
    store = make_store(spill_dir)
    store.append([rec(1)])
    assert store.counters() == {
        "spilled": 1,
        "replayed": 0,
        "spill_dropped": 0,
        "dead_letter_segment_records": 0,
        "corrupt_frames": 0,
        "adopted_segments": 0,
        "spill_write_errors": 0,
        "spill_unsafe_entries": 0,
        "spill_pending_records": 1,
        "spill_bytes": HEADER_LEN + frame_bytes([rec(1)]),
    }
