"""Specification of the spill store's replay side (kafkalog.spill.store, .segments, .adoption).

Appends, partial acknowledgements and restarts never lose, duplicate or reorder a record
(property-tested); adoption of the segments of dead writers (exactly once, never a live
writer's, in their order); corrupt segments; file safety; fork.
"""

from __future__ import annotations

import contextlib
import errno
import os
import select
import signal
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from spill_store_helpers import (
    HEADER_LEN,
    OTHER_TOPIC,
    TOPIC,
    drain,
    make_store,
    rec,
    seg_files,
    segments_on_disk,
    simulate_death,
    write_segment,
)

from kafkalog.spill import LOCK_SUFFIX, SEGMENT_SUFFIX, SpillRecord, read_segment
from kafkalog.spill import writer as spill

PACKAGE_ROOT = Path(spill.__file__).resolve().parents[2]  # children import this kafkalog



def steady_wall_clock() -> types.SimpleNamespace:
    """A stand-in for the ``time`` module whose wall clock moves 2 ms forward per call.

    Segment headers carry their creation time in ms; this makes it strictly increasing, so
    write order across writers is unambiguous in the tests that need it.
    """
    ticks = iter(range(1_700_000_000_000, 1 << 62, 2))
    return types.SimpleNamespace(time=lambda: next(ticks) / 1000, monotonic=time.monotonic)


@pytest.fixture
def spill_dir(tmp_path: Path) -> Path:
    """A spill directory the store has to create itself."""
    return tmp_path / "spill"


# -- 1. restarts, property-tested --------------------------------------------------------------



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


# -- 2. adoption -------------------------------------------------------------------------------

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


# -- 3. safety ---------------------------------------------------------------------------------


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
