"""Specification of the spill store (kafkalog.spill.store).

The format: CRC-framed segments that survive truncation and bit rot (property-tested). The
store: FIFO replay with acknowledgement, the size cap, a full disk, adoption of the segments of
dead writers (exactly once, never a live writer's), file safety and the fsync policy.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kafkalog.spill import (
    DEAD_LETTER_SUFFIX,
    FRAME_OVERHEAD,
    LOCK_SUFFIX,
    SEGMENT_SUFFIX,
    SpillRecord,
    SpillStore,
    decode_header,
    encode_frame,
    encode_header,
    encode_payload,
    read_segment,
    scan_frames,
)
from kafkalog.spill import writer as spill

PACKAGE_ROOT = Path(spill.__file__).resolve().parents[2]  # children import this kafkalog
TOPIC = "app.logs"
OTHER_TOPIC = "other.logs"
WRITER = bytes.fromhex("0123456789abcdef")
HEADER_LEN = len(encode_header(WRITER, TOPIC, 0))
MIN_SEGMENT = 4096  # the smallest spill_segment_bytes the config accepts
LOOP_BOUND = 100_000  # no loop in this file runs longer than this

_real_write = os.write
# The fake disk and the descriptor check look at /proc/self/fd.
needs_proc = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs Linux /proc")


# -- helpers ---------------------------------------------------------------------------------------


def make_store(directory: Path, topic: str = TOPIC, **options: Any) -> SpillStore:
    options.setdefault("segment_bytes", MIN_SEGMENT)
    options.setdefault("fsync", "never")
    return SpillStore(directory, topic, **options)


def rec(i: int, size: int = 0, key: bytes | None = None) -> SpillRecord:
    """A record recognisable by its number ``i``, padded to about ``size`` bytes."""
    return (b"%06d|" % i + b"v" * size, key)


def frame_bytes(records: list[SpillRecord]) -> int:
    return sum(len(encode_frame(encode_payload(v, k))) for v, k in records)


def seg_files(directory: Path) -> list[Path]:
    """The segment files of ``directory``; for a single writer, name order is write order."""
    return sorted(directory.glob("*" + SEGMENT_SUFFIX))


def segments_on_disk(directory: Path) -> list[tuple[Path, list[SpillRecord]]]:
    """Every segment with its records, ordered by header creation time, then name."""
    found: list[tuple[int, str, Path, list[SpillRecord]]] = []
    for path in seg_files(directory):
        header, records, scan = read_segment(path)
        assert header is not None, f"{path.name} has no valid header"
        assert (scan.corrupt, scan.torn_tail_bytes) == (0, 0), f"{path.name}: {scan}"
        found.append((header.created_ms, path.name, path, records))
    found.sort(key=lambda s: (s[0], s[1]))
    return [(path, records) for _, _, path, records in found]


def drain(store: SpillStore, max_records: int = 7, max_bytes: int = 4096) -> list[SpillRecord]:
    """Replay everything, acknowledging each batch in full."""
    out: list[SpillRecord] = []
    for _ in range(LOOP_BOUND):
        batch = store.read_batch(max_records, max_bytes)
        if batch is None:
            return out
        assert batch.records, "read_batch returned an empty batch"
        out.extend(batch.records)
        store.ack(batch, len(batch.records))
    raise AssertionError("replay never ended")


def simulate_death(store: SpillStore) -> None:
    """What the kernel does when the writer process dies: every descriptor it held is closed.

    That releases its own flock and the locks of the dead writers it had adopted; nothing on
    disk changes. The store object must not be used afterwards.
    """
    writer = store._writer
    fds = {writer._fd, writer._lock_fd, *(seg.adopted_lock for seg in store._segments)}
    for fd in fds:
        if fd is not None:
            os.close(fd)
    writer._fd = writer._lock_fd = None
    for seg in store._segments:
        seg.adopted_lock = None


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


def write_segment(path: Path, records: list[SpillRecord], topic: str = TOPIC) -> bytes:
    data = encode_header(WRITER, topic, 1) + b"".join(
        encode_frame(encode_payload(v, k)) for v, k in records
    )
    path.write_bytes(data)
    return data


def read_blob(blob: bytes) -> tuple[Any, list[SpillRecord], Any]:
    """read_segment on a file holding exactly ``blob``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{WRITER.hex()}-0000000001{SEGMENT_SUFFIX}"
        path.write_bytes(blob)
        return read_segment(path)


def steady_wall_clock() -> types.SimpleNamespace:
    """A stand-in for the ``time`` module whose wall clock moves 2 ms forward per call.

    Segment headers carry their creation time in ms; this makes it strictly increasing, so
    write order across writers is unambiguous in the tests that need it.
    """
    ticks = iter(range(1_700_000_000_000, 1 << 62, 2))
    return types.SimpleNamespace(time=lambda: next(ticks) / 1000, monotonic=time.monotonic)


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


# -- 1. round trip ---------------------------------------------------------------------------


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


# -- 2. the format, property-tested ------------------------------------------------------------

# Values lean towards runs of zero bytes: twelve of them look like an empty frame.
VALUES = st.binary(max_size=40) | st.integers(0, 40).map(lambda n: b"\x00" * n)
RECORDS = st.tuples(VALUES, st.none() | st.binary(max_size=10))


def _layout(records: list[SpillRecord]) -> tuple[bytes, int, list[tuple[int, int]]]:
    """A segment holding ``records``: its bytes, header size and each frame's (start, end)."""
    header = encode_header(WRITER, TOPIC, 1_700_000_000_000)
    spans = []
    pos = len(header)
    frames = []
    for value, key in records:
        frame = encode_frame(encode_payload(value, key))
        spans.append((pos, pos + len(frame)))
        frames.append(frame)
        pos += len(frame)
    return header + b"".join(frames), len(header), spans


def test_header_round_trips_and_frame_layout_is_as_documented() -> None:
    header = encode_header(WRITER, "tøpic", 1234)
    parsed = decode_header(header + b"rest")
    assert parsed is not None
    assert (parsed.writer_id, parsed.topic, parsed.created_ms) == (WRITER.hex(), "tøpic", 1234)
    assert parsed.size == len(header)
    assert header[:4] == b"KLSP"
    payload = encode_payload(b"value", b"key")
    assert payload == b"\x00\x00\x00\x03keyvalue"
    assert encode_payload(b"value", None) == b"\xff\xff\xff\xffvalue"
    frame = encode_frame(payload)
    assert len(frame) == len(payload) + FRAME_OVERHEAD
    assert frame[:4] == frame[-4:] == len(payload).to_bytes(4, "big")


@settings(max_examples=200, deadline=None)
@given(records=st.lists(RECORDS, max_size=8), data=st.data())
def test_a_truncated_segment_yields_exactly_its_complete_frames(
    records: list[SpillRecord], data: st.DataObject
) -> None:
    blob, header_len, spans = _layout(records)
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    header, got, scan = read_blob(blob[:cut])
    if cut < header_len:
        assert header is None
        assert got == []
        return
    assert header is not None
    complete = [r for r, (_, end) in zip(records, spans, strict=True) if end <= cut]
    assert got == complete
    assert scan.corrupt == 0, "a cut is a torn tail, not corruption"
    last_end = spans[len(complete) - 1][1] if complete else header_len
    assert scan.torn_tail_bytes == cut - last_end


@settings(max_examples=250, deadline=None)
@given(records=st.lists(RECORDS, min_size=1, max_size=8), data=st.data())
def test_bit_flips_lose_only_the_damaged_frames(
    records: list[SpillRecord], data: st.DataObject
) -> None:
    """1-3 flipped bits in the body: every untouched frame is recovered, in order.

    A damaged frame followed by an intact one is a corrupt region (a run of consecutive damaged
    frames counts once). Damage in the last frame(s) is indistinguishable from a write cut short
    by a crash: it is reported as a torn tail, not as corruption. CRC32C detects every error of
    at most 3 bits in frames this short, so no damaged frame can pass for a valid one.
    """
    blob, header_len, spans = _layout(records)
    bits = data.draw(
        st.lists(
            st.integers(header_len * 8, len(blob) * 8 - 1), min_size=1, max_size=3, unique=True
        ),
        label="bits",
    )
    damaged_blob = bytearray(blob)
    for bit in bits:
        damaged_blob[bit // 8] ^= 0x80 >> (bit % 8)
    damaged = [any(s <= bit // 8 < e for bit in bits) for s, e in spans]

    header, got, scan = read_blob(bytes(damaged_blob))

    assert header is not None
    assert got == [r for r, bad in zip(records, damaged, strict=True) if not bad]
    last_intact = max((i for i, bad in enumerate(damaged) if not bad), default=-1)
    runs_before_intact = sum(
        1
        for i, bad in enumerate(damaged)
        if bad and (i == 0 or not damaged[i - 1]) and i < last_intact
    )
    assert scan.corrupt == runs_before_intact
    if last_intact == len(records) - 1:
        assert scan.torn_tail_bytes == 0
    else:
        assert scan.torn_tail_bytes == len(blob) - spans[last_intact + 1][0]


@pytest.mark.parametrize("zeros", [12, 13, 40])
def test_zero_bytes_after_a_damaged_frame_are_not_mistaken_for_an_empty_frame(zeros: int) -> None:
    """Twelve zero bytes look like ``length 0 | crc32c(b"") = 0 | length 0``.

    No record encodes to an empty payload (it has at least the key length), so such a "frame"
    is noise: it must neither become a record nor crash the reader.
    """
    records: list[SpillRecord] = [(b"\x00" * zeros, None), (b"after", None)]
    blob, _, spans = _layout(records)
    first_start, first_end = spans[0]
    broken = bytearray(blob)
    broken[first_start + 5] ^= 0x01  # the first frame's CRC no longer matches
    header, got, scan = read_blob(bytes(broken))
    assert header is not None
    assert got == [(b"after", None)]
    assert scan.corrupt == 1
    # ... and a torn last frame full of zeros is a torn tail, not a phantom record.
    header, got, scan = read_blob(blob[: first_end - 2])
    assert got == []
    assert scan.torn_tail_bytes == first_end - 2 - first_start
    assert scan_frames(b"\x00" * 64, 0).frames == []


OPS = st.lists(
    st.one_of(
        st.tuples(
            st.just("append"),
            st.lists(
                st.tuples(st.integers(0, 700), st.none() | st.binary(max_size=6)),
                min_size=1,
                max_size=6,
            ),
        ),
        st.tuples(st.just("replay"), st.integers(1, 12), st.integers(0, 12)),
        st.tuples(st.just("restart"), st.booleans()),
    ),
    max_size=40,
)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(ops=OPS)
def test_appends_replays_and_restarts_never_lose_duplicate_or_reorder_records(
    ops: list[tuple[Any, ...]],
) -> None:
    """Random appends, partial acknowledgements and writer restarts.

    Within one store every batch is exactly the next unacknowledged records. A restart (the
    writer dies, optionally after close(); a new store adopts its segments) resumes at the
    first record still on disk: that is the start of the segment being replayed, because
    segments are deleted whole and only once fully acknowledged. So redelivery is limited to
    the acknowledged part of that one segment (at-least-once), nothing is ever skipped, and
    the records on disk are always exactly the tail of the appended sequence.
    """
    with tempfile.TemporaryDirectory() as tmp, pytest.MonkeyPatch.context() as mp:
        mp.setattr(spill, "time", steady_wall_clock())
        directory = Path(tmp) / "spill"
        store = make_store(directory)
        appended: list[SpillRecord] = []
        pos = 0  # index in ``appended`` of the next record replay must deliver
        for op in ops:
            if op[0] == "append":
                batch = [
                    (b"%06d|" % (len(appended) + i) + b"x" * size, key)
                    for i, (size, key) in enumerate(op[1])
                ]
                assert store.append(batch) == len(batch)
                appended.extend(batch)
            elif op[0] == "replay":
                _, max_records, ack = op
                got = store.read_batch(max_records, 1 << 20)
                if got is None:
                    assert pos == len(appended), "read_batch gave up with records pending"
                    continue
                assert 1 <= len(got.records) <= max_records
                assert got.records == appended[pos : pos + len(got.records)]
                count = min(ack, len(got.records))
                store.ack(got, count)
                pos += count
                assert store.pending_records() == len(appended) - pos
            else:
                if op[1]:
                    store.close()
                simulate_death(store)
                segments = segments_on_disk(directory)
                on_disk = [r for _, records in segments for r in records]
                floor = len(appended) - len(on_disk)
                assert on_disk == appended[floor:], "disk holds exactly the tail"
                assert floor <= pos, "an unacknowledged record left the disk"
                if pos < len(appended):
                    assert pos < floor + len(segments[0][1]), "a fully acked segment stayed"
                store = make_store(directory)
                assert store.adopt_orphans() == len(segments)
                assert store.pending_records() == len(on_disk)
                pos = floor
        assert drain(store) == appended[pos:]
        assert store.pending_records() == 0
        store.close()
        assert seg_files(directory) == []
        assert not (directory / f"{store.writer_id}{LOCK_SUFFIX}").exists()


# -- 3. the size cap ---------------------------------------------------------------------------


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


def test_cap_with_drop_newest_refuses_and_counts_what_does_not_fit(spill_dir: Path) -> None:
    cap = 3 * MIN_SEGMENT
    store = make_store(spill_dir, max_bytes=cap, full_policy="drop_newest")
    accepted: list[SpillRecord] = []
    refused = 0
    for i in range(100):
        batch = [rec(i, 250), rec(i, 250, b"k")]
        snapshot = {p: p.read_bytes() for p in seg_files(spill_dir)}
        written = store.append(batch)
        assert written in (0, 2), "a batch is taken whole or not at all"
        if written:
            accepted.extend(batch)
        else:
            refused += 2
            assert {p: p.read_bytes() for p in seg_files(spill_dir)} == snapshot
        assert store.pending_bytes() <= cap + HEADER_LEN
    assert refused > 0
    assert store.dropped == refused
    assert accepted == [rec(i, 250, k) for i in range(len(accepted) // 2) for k in (None, b"k")]
    assert drain(store) == accepted, "the oldest records are all kept"
    assert store.append([rec(999)]) == 1, "replay made room again"


def test_an_oversized_batch_is_refused_without_destroying_anything(spill_dir: Path) -> None:
    store = make_store(spill_dir, max_bytes=2 * MIN_SEGMENT, full_policy="drop_newest")
    store.append([rec(0, 100)])
    assert store.append([rec(1, 3 * MIN_SEGMENT)]) == 0
    assert store.dropped == 1
    assert drain(store) == [rec(0, 100)]


# -- 4. a full disk ----------------------------------------------------------------------------


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
def test_disk_full_with_drop_oldest_sacrifices_at_most_one_old_segment_per_append(
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
    oldest = before[0]
    disk.fill()
    # More than the oldest segment frees: the retry fails too.
    big = [rec(9000 + i, 500) for i in range(12)]
    assert frame_bytes(big) > oldest[0].stat().st_size
    assert store.append(big) == 0
    assert not oldest[0].exists(), "the oldest segment was given up to make room"
    for path, records in before[1:]:
        assert read_segment(path)[1] == records, f"{path.name} was sacrificed for nothing"
    assert store.dropped == len(oldest[1]) + len(big)
    assert store.write_errors == 2

    small = [rec(9999, 10)]
    assert store.append(small) == 1, "the room freed by the dropped segment is usable"
    assert drain(store) == appended[len(oldest[1]) :] + small


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


# -- 5. adoption -------------------------------------------------------------------------------

_WRITER_SCRIPT = """
import sys
from pathlib import Path
from kafkalog.spill import SpillStore

store = SpillStore(Path(sys.argv[1]), sys.argv[2], fsync="always", segment_bytes=4096)
for i in range(int(sys.argv[3])):
    if store.append([(b"child-%05d " % i + b"v" * 200, b"key-%d" % i)]) != 1:
        sys.exit("append failed")
print("ready", store.writer_id, flush=True)
sys.stdin.read()
"""

_FORKING_ADOPTER_SCRIPT = """
import os
import sys
from pathlib import Path
from kafkalog.spill import SpillStore

store = SpillStore(Path(sys.argv[1]), sys.argv[2])
adopted = store.adopt_orphans()
# One os.write per line: parent and child share the pipe, and print() may write a line in
# pieces (unbuffered stdout), which would interleave.
if os.fork() == 0:
    store.forget_after_fork()
    os.write(1, f"child {os.getpid()}\\n".encode())
    sys.stdin.read()
    os._exit(0)
os.write(1, f"parent {adopted}\\n".encode())
sys.stdin.read()
"""


class Child:
    """A Python subprocess running ``script``; lines of its stdout, with a time limit."""

    def __init__(self, script: str, *args: str) -> None:
        env = dict(os.environ, PYTHONPATH=str(PACKAGE_ROOT))
        self.proc = subprocess.Popen(
            [sys.executable, "-c", script, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            cwd=PACKAGE_ROOT,
            env=env,
        )
        self._buf = b""

    def line(self, timeout: float = 60.0) -> str:
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError("the child printed nothing in time")
            readable, _, _ = select.select([fd], [], [], remaining)
            if readable:
                chunk = os.read(fd, 4096)
                if not chunk:
                    self.kill()
                    assert self.proc.stderr is not None
                    raise AssertionError(f"the child died: {self.proc.stderr.read()!r}")
                self._buf += chunk
        line, _, self._buf = self._buf.partition(b"\n")
        return line.decode()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def close(self) -> None:
        self.kill()
        for pipe in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


@contextlib.contextmanager
def child(script: str, *args: str) -> Iterator[Child]:
    c = Child(script, *args)
    try:
        yield c
    finally:
        c.close()


def test_adoption_takes_a_dead_writers_segments_exactly_once_and_never_a_live_ones(
    spill_dir: Path,
) -> None:
    spill_dir.mkdir(mode=0o700)
    # A dead writer of another topic shares the directory.
    stranger = make_store(spill_dir, OTHER_TOPIC)
    stranger.append([rec(1, 10), rec(2, 10)])
    simulate_death(stranger)
    strangers_files = {p: p.read_bytes() for p in spill_dir.iterdir()}

    count = 60
    with child(_WRITER_SCRIPT, str(spill_dir), TOPIC, str(count)) as writer:
        word, writer_id = writer.line().split()
        assert word == "ready"
        theirs = [p for p in seg_files(spill_dir) if p.name.startswith(writer_id)]
        assert len(theirs) >= 3
        snapshot = {p: p.read_bytes() for p in theirs}

        adopter = make_store(spill_dir)
        assert adopter.adopt_orphans() == 0, "a live writer's segments are not adopted"
        assert adopter.read_batch(10, 1 << 20) is None
        assert {p: p.read_bytes() for p in theirs} == snapshot

        writer.kill()  # SIGKILL: no cleanup, the kernel drops its lock

        assert adopter.adopt_orphans() == len(theirs)
        assert adopter.adopted_segments == len(theirs)
        rival = make_store(spill_dir)
        assert rival.adopt_orphans() == 0, "a segment is adopted exactly once"
        assert adopter.adopt_orphans() == 0, "and not twice by the same adopter"

        expected = [(b"child-%05d " % i + b"v" * 200, b"key-%d" % i) for i in range(count)]
        assert drain(adopter) == expected
        assert not any(p.exists() for p in theirs), "replayed segments are deleted"
        assert not (spill_dir / f"{writer_id}{LOCK_SUFFIX}").exists()
        assert rival.adopt_orphans() == 0
        assert rival.read_batch(10, 1 << 20) is None

    assert {p: p.read_bytes() for p in spill_dir.iterdir()} == strangers_files, (
        "another topic's segments are left alone"
    )


def test_a_forked_child_does_not_keep_the_adopted_writers_locks(spill_dir: Path) -> None:
    """After fork the child forgets the store; the adopted locks die with the parent."""
    dead = make_store(spill_dir)
    records = [rec(i, 300) for i in range(30)]
    for r in records:
        dead.append([r])
    simulate_death(dead)
    n_segments = len(seg_files(spill_dir))
    assert n_segments >= 2

    with child(_FORKING_ADOPTER_SCRIPT, str(spill_dir), TOPIC) as parent:
        lines = dict(parent.line().split() for _ in range(2))
        assert int(lines["parent"]) == n_segments
        grandchild = int(lines["child"])
        try:
            parent.kill()
            os.kill(grandchild, 0)  # the forked child lives on
            adopter = make_store(spill_dir)
            assert adopter.adopt_orphans() == n_segments
            assert drain(adopter) == records
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(grandchild, signal.SIGKILL)


def test_adoption_replays_a_writers_segments_in_its_order_even_if_the_clock_stepped_back(
    spill_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wall = iter([1000.0, 999.0, 998.0, 997.0, 996.0])  # an NTP step back before each roll
    monkeypatch.setattr(
        spill, "time", types.SimpleNamespace(time=lambda: next(wall), monotonic=time.monotonic)
    )
    dead = make_store(spill_dir)
    records = [rec(i, 1500) for i in range(8)]
    for r in records:
        dead.append([r])
    assert len(seg_files(spill_dir)) >= 3
    simulate_death(dead)
    adopter = make_store(spill_dir)
    assert adopter.adopt_orphans() == len(seg_files(spill_dir))
    assert drain(adopter) == records


def test_adopted_segments_are_replayed_before_our_own(spill_dir: Path) -> None:
    dead = make_store(spill_dir)
    theirs = [rec(i, 20) for i in range(5)]
    dead.append(theirs)
    simulate_death(dead)
    store = make_store(spill_dir)
    ours = [rec(100 + i, 20) for i in range(5)]
    store.append(ours)
    assert store.adopt_orphans() == 1
    assert drain(store) == theirs + ours


# -- 6. safety ---------------------------------------------------------------------------------


def test_a_symlink_named_like_a_segment_is_never_followed(spill_dir: Path, tmp_path: Path) -> None:
    spill_dir.mkdir(mode=0o700)
    secret = tmp_path / "secret.seg"
    secret_bytes = write_segment(secret, [(b"secret", None)])
    link = spill_dir / f"{'ab' * 8}-0000000001{SEGMENT_SUFFIX}"
    link.symlink_to(secret)

    with pytest.raises(OSError) as raised:
        read_segment(link)
    assert raised.value.errno == errno.ELOOP
    store = make_store(spill_dir)
    assert store.adopt_orphans() == 0
    assert store.read_batch(10, 1 << 20) is None
    assert link.is_symlink()
    assert secret.read_bytes() == secret_bytes


def test_a_segment_swapped_for_a_symlink_after_adoption_is_not_read(
    spill_dir: Path, tmp_path: Path
) -> None:
    dead = make_store(spill_dir)
    dead.append([rec(1, 10)])
    simulate_death(dead)
    store = make_store(spill_dir)
    assert store.adopt_orphans() == 1
    (path,) = seg_files(spill_dir)
    secret = tmp_path / "secret.seg"
    secret_bytes = write_segment(secret, [(b"secret", None)])
    path.unlink()
    path.symlink_to(secret)

    assert drain(store) == [], "nothing is read through the link"
    assert store.corrupt_frames == 1
    assert secret.read_bytes() == secret_bytes, "the link's target is never touched"


def test_a_corrupt_header_is_counted_once_and_the_other_segments_still_replay(
    spill_dir: Path,
) -> None:
    store = make_store(spill_dir)
    records = [rec(i, 400) for i in range(30)]
    for r in records:
        store.append([r])
    store._writer.seal()  # seal the active segment (read_batch would do it too)
    segments = segments_on_disk(spill_dir)
    assert len(segments) >= 3
    first = segments[0][0]
    data = bytearray(first.read_bytes())
    data[HEADER_LEN - 6] ^= 0xFF  # inside the topic: the header CRC fails
    first.write_bytes(bytes(data))

    assert drain(store) == [r for _, rs in segments[1:] for r in rs]
    assert store.corrupt_frames == 1


def test_a_dead_writers_segment_with_a_corrupt_header_is_left_alone(spill_dir: Path) -> None:
    dead = make_store(spill_dir)
    dead.append([rec(1, 10)])
    simulate_death(dead)
    (path,) = seg_files(spill_dir)
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))
    store = make_store(spill_dir)
    assert store.adopt_orphans() == 0
    assert path.read_bytes() == bytes(data)


def test_corrupt_frames_in_a_replayed_segment_are_counted_and_skipped(spill_dir: Path) -> None:
    dead = make_store(spill_dir)
    records = [rec(i, 30) for i in range(6)]
    dead.append(records)
    simulate_death(dead)
    (path,) = seg_files(spill_dir)
    _, _, scan = read_segment(path)
    start, _ = scan.frames[2]
    data = bytearray(path.read_bytes())
    data[start + 10] ^= 0x01
    path.write_bytes(bytes(data))
    store = make_store(spill_dir)
    assert store.adopt_orphans() == 1
    assert store.corrupt_frames == 1
    assert drain(store) == records[:2] + records[3:]
    assert store.corrupt_frames == 1, "a segment's corruption is counted once"


def test_forget_after_fork_starts_a_new_writer_and_leaves_the_parents_files_alone(
    spill_dir: Path,
) -> None:
    store = make_store(spill_dir)
    store.append([rec(1, 10), rec(2, 10)])
    parent_id = store.writer_id
    parents_files = {p: p.read_bytes() for p in spill_dir.iterdir()}

    store.forget_after_fork()

    assert store.writer_id != parent_id
    assert len(store.writer_id) == 16
    assert store.pending_records() == 0
    assert store.read_batch(10, 1 << 20) is None
    assert store.append([rec(3, 10)]) == 1
    own = [p for p in seg_files(spill_dir) if p.name.startswith(store.writer_id)]
    assert len(own) == 1
    assert drain(store) == [rec(3, 10)]
    assert {p: p.read_bytes() for p in parents_files} == parents_files


# -- 7. the fsync policy -----------------------------------------------------------------------


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
