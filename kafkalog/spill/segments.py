"""The segments waiting for replay, oldest first, and how far replay has got in the head one.

Replay reads only sealed segments: when it reaches the one this process still appends to, it
has the writer seal it first. A segment is deleted whole, once every record in it was
acknowledged (or when it is dropped for room).
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Protocol

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.spill.files import release_adopted
from kafkalog.spill.format import NAME_RE, ScanResult, SegmentHeader, SpillRecord, read_segment


@dataclasses.dataclass
class SpillSegment:
    """A segment file in the replay order."""

    path: Path
    records: int
    bytes: int
    adopted_lock: int | None = None  # fd of a dead writer's lock we hold, for adopted ones
    corrupt_counted: int = 0  # corrupt regions already counted (it may be read more than once)
    # The tags of the records appended to it, in order (see SpillListener).
    tags: list[Sequence[int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class ReplayBatch:
    """Records read from the head segment, to be acknowledged with :meth:`SpillStore.ack`."""

    segment: SpillSegment
    records: list[SpillRecord]
    start: int  # index of the first record in the segment


@dataclasses.dataclass
class LoadedSegment:
    """A segment read from disk, before the list takes note of it."""

    segment: SpillSegment
    header: SegmentHeader | None
    records: list[SpillRecord]
    scan: ScanResult
    error: OSError | None


def load_segment(segment: SpillSegment) -> LoadedSegment:
    """Read ``segment``'s file (no lock needed); a failure is kept in it, not raised."""
    try:
        header, records, scan = read_segment(segment.path)
    except OSError as exc:
        return LoadedSegment(segment, None, [], ScanResult(frames=[]), exc)
    return LoadedSegment(segment, header, records, scan, None)


class OpenTail(Protocol):
    """What the list needs of this process's writer."""

    @property
    def active(self) -> SpillSegment | None:
        """The segment being appended to (the list's last), if any."""

    def seal(self) -> None:
        """Stop appending to the active segment; the next append starts a new one."""

    def discard(self, segment: SpillSegment) -> None:
        """``segment`` is being deleted: close any descriptor of it now (frees its blocks)."""


class SegmentList:
    """The segments on disk still to be replayed, in replay order, with the replay position.

    Not thread-safe: the store calls it with its lock held. Problems found while reading go
    to ``on_corrupt`` (a count of new corrupt regions) and ``on_unsafe`` (names of entries
    that are not regular files).
    """

    def __init__(
        self,
        tail: OpenTail,
        warnings: RateLimitedWarnings,
        *,
        on_corrupt: Callable[[int], None],
        on_unsafe: Callable[[list[str]], None],
    ) -> None:
        self._tail = tail
        self._warnings = warnings
        self._on_corrupt = on_corrupt
        self._on_unsafe = on_unsafe
        self._pending: deque[SpillSegment] = deque()  # sealed and active segments, oldest first
        self._replay_index = 0  # records of the head segment already acknowledged
        self._read_cache: tuple[Path, list[SpillRecord]] | None = None

    def __iter__(self) -> Iterator[SpillSegment]:
        return iter(self._pending)

    def __len__(self) -> int:
        return len(self._pending)

    def pending_records(self) -> int:
        """Records not yet acknowledged (adopted ones counted once read)."""
        total = sum(seg.records for seg in self._pending)
        return max(0, total - self._replay_index)

    def pending_bytes(self) -> int:
        """Bytes of the segments still on disk."""
        return sum(seg.bytes for seg in self._pending)

    # -- new segments --------------------------------------------------------------------------

    def append(self, segment: SpillSegment) -> None:
        """The writer started ``segment``: it comes last."""
        self._pending.append(segment)

    def slot_index(self, slot: int, writer: str) -> int:
        """Where ``writer``'s segment number ``slot`` goes: before that writer's first segment
        numbered after it (adopted segments of dead writers stay first); never before a head
        segment that is partly replayed."""
        index = len(self._pending)
        for i, other in enumerate(self._pending):
            match = NAME_RE.match(other.path.name)
            if match and match["writer"] == writer and int(match["seq"]) > slot:
                index = i
                break
        if index == 0 and self._replay_index > 0:
            index = 1
        return index

    def insert_slot(self, segment: SpillSegment, slot: int, writer: str) -> None:
        """Put ``segment``, ``writer``'s segment number ``slot``, in its place (see
        :meth:`slot_index`)."""
        self._pending.insert(self.slot_index(slot, writer), segment)

    def adopt(self, segments: list[SpillSegment]) -> None:
        """Dead writers' segments are older than anything this process wrote: replay them
        first (after the head segment if its replay has begun), and count their records."""
        if self._replay_index > 0 and self._pending:
            first = self._pending.popleft()
            self._pending.extendleft(reversed(segments))
            self._pending.appendleft(first)
        else:
            self._pending.extendleft(reversed(segments))
        for seg in segments:
            self._records_of(seg)  # count its records now
        self._read_cache = None

    # -- replay --------------------------------------------------------------------------------

    def head_to_load(self) -> SpillSegment | None:
        """The head segment if replay must read it from disk first."""
        if not self._pending:
            return None
        head = self._pending[0]
        if head is self._tail.active:
            if head.records == self._replay_index:
                return None
            self._tail.seal()  # replay reads only sealed segments
        cached = self._read_cache
        return None if cached is not None and cached[0] == head.path else head

    def next_batch(
        self, max_records: int, max_bytes: int, loaded: LoadedSegment | None = None
    ) -> ReplayBatch | None:
        """The next unacknowledged records of the oldest segment, or None if none are left.

        ``loaded``: the head segment, read from disk without the store's lock.
        """
        while self._pending:
            head = self._pending[0]
            if head is self._tail.active:
                if head.records == self._replay_index:
                    return None
                self._tail.seal()  # replay reads only sealed segments
            records = self._records_of(head, loaded)
            if self._replay_index >= len(records):
                self.remove(head)
                continue
            batch: list[SpillRecord] = []
            size = 0
            for record in records[self._replay_index :]:
                if batch and (len(batch) >= max_records or size + len(record[0]) > max_bytes):
                    break
                batch.append(record)
                size += len(record[0])
            return ReplayBatch(head, batch, self._replay_index)
        return None

    def _records_of(
        self, segment: SpillSegment, loaded: LoadedSegment | None = None
    ) -> list[SpillRecord]:
        cached = self._read_cache
        if cached is not None and cached[0] == segment.path:
            return cached[1]
        if loaded is None or loaded.segment is not segment:
            loaded = load_segment(segment)
        header, records, scan, exc = loaded.header, loaded.records, loaded.scan, loaded.error
        if exc is not None:
            if exc.errno == errno.ELOOP:  # swapped for a symlink since it was listed
                self._on_unsafe([segment.path.name])
            else:
                self._warnings.warn(
                    "spill-read", "cannot read spill segment %s: %s", segment.path, exc
                )
        corrupt = scan.corrupt  # read_segment counts a bad header of a non-empty file
        if header is None and not corrupt and segment.path.exists():
            corrupt = 1  # unreadable, or empty
        if corrupt > segment.corrupt_counted:
            self._on_corrupt(corrupt - segment.corrupt_counted)
            segment.corrupt_counted = corrupt
            self._warnings.warn(
                "spill-corrupt",
                "spill segment %s has %d corrupt region(s); skipped them",
                segment.path,
                corrupt,
            )
        segment.records = len(records)
        self._read_cache = (segment.path, records)
        return records

    def ack(self, batch: ReplayBatch, count: int) -> bool:
        """The first ``count`` records of ``batch`` were acknowledged; False if the batch is
        stale (its segment is no longer the head)."""
        if not self._pending or self._pending[0] is not batch.segment:
            return False
        self._replay_index = batch.start + count
        if self._replay_index >= batch.segment.records and batch.segment is not self._tail.active:
            self.remove(batch.segment)
        return True

    # -- removing ------------------------------------------------------------------------------

    def remove(self, segment: SpillSegment) -> None:
        """Delete a whole segment; release a dead writer's lock with its last segment."""
        if self._pending and self._pending[0] is segment:
            self._replay_index = 0
        with contextlib.suppress(ValueError):
            self._pending.remove(segment)
        if self._read_cache is not None and self._read_cache[0] == segment.path:
            self._read_cache = None
        self._tail.discard(segment)
        try:
            segment.path.unlink()
        except FileNotFoundError:
            pass
        except OSError as exc:
            self._warnings.warn("spill-unlink", "cannot delete spill segment: %s", exc)
        if segment.adopted_lock is not None and not any(
            s.adopted_lock == segment.adopted_lock for s in self._pending
        ):
            release_adopted(segment.adopted_lock, segment.path)

    def drop_oldest(
        self, keep_from: SpillSegment | None = None
    ) -> tuple[SpillSegment, int, int] | None:
        """Delete the oldest segment (sealing the active one if it is the only one with
        records): it, how many of its records were acknowledged and how many are lost.
        None if there is none, or if the oldest is ``keep_from`` (older ones only, then)."""
        for segment in list(self._pending):
            if segment is keep_from:
                return None
            if segment is self._tail.active:
                if segment.records == 0:
                    continue
                self._tail.seal()  # the only one with records: drop_oldest keeps the newest
            done = self._replay_index if segment is self._pending[0] else 0
            lost = max(0, segment.records - done)
            self.remove(segment)
            return segment, done, lost
        return None

    def release_adopted(self) -> None:
        """Let another process adopt what this one adopted but did not finish replaying."""
        head = self._pending[0] if self._pending else None
        released: set[int] = set()
        for segment in list(self._pending):
            fd = segment.adopted_lock
            if fd is not None:
                self._pending.remove(segment)
                if fd not in released:
                    released.add(fd)
                    with contextlib.suppress(OSError):
                        os.close(fd)
        if head is not None and (not self._pending or self._pending[0] is not head):
            self._replay_index = 0

    def forget(self) -> None:
        """In a forked child: close our copies of the adopted locks and forget every segment
        (the parent's locks stay held by the parent)."""
        for fd in {s.adopted_lock for s in self._pending if s.adopted_lock is not None}:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pending = deque()
        self._replay_index = 0
        self._read_cache = None
