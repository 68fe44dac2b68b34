"""Putting new records into the spill: under ``spill_max_bytes`` and into the disk's free
space, in segments sized to that room, giving way per ``spill_full_policy`` when there is not
room for everything.

A small or nearly full disk must keep as much as fits, so:

- a segment is sized to the room there is (an eighth of it, at least a disk block, at most
  ``spill_segment_bytes``): giving up the oldest segment for room gives up a slice of the
  spill, never all of it;
- an append that does not fit whole keeps what fits: ``drop_oldest`` keeps its newest records
  (once older segments are given up), ``drop_newest`` its oldest;
- a write that fills the disk keeps the frames written whole, and under ``drop_oldest`` goes on
  once the oldest segment is given up (its descriptor closed, so that its blocks come back);
- no "disk full" state is kept: space that comes back is used by the next append.
"""

from __future__ import annotations

import errno
from collections.abc import Callable, Sequence
from pathlib import Path

from kafkalog.errors import InvariantError
from kafkalog.spill.durability import DurabilityTracker
from kafkalog.spill.files import disk_space
from kafkalog.spill.segments import SegmentList, SpillSegment
from kafkalog.spill.writer import SegmentWriter

# A segment holds at most this fraction of the room the spill has (cap, or disk if smaller).
SEGMENTS_PER_ROOM = 8
# The block size assumed when the filesystem cannot be asked.
DEFAULT_BLOCK_BYTES = 4096
# A reserved slot is written whole into one segment: its number is the only one kept free.
_UNLIMITED = 1 << 62
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)

#: How the appender reports records it could not keep: (count, why).
DropCounter = Callable[[int, str], None]


class SpillAppender:
    """Writes appends through a :class:`SegmentWriter` into a :class:`SegmentList`, and tells
    the :class:`DurabilityTracker` what was written and what was given up.

    Not thread-safe: the store calls it with its lock held.
    """

    def __init__(
        self,
        writer: SegmentWriter,
        segments: SegmentList,
        durability: DurabilityTracker,
        *,
        max_bytes: int,
        segment_bytes: int,
        full_policy: str,
        on_dropped: DropCounter,
        on_write_error: Callable[[], None],
        space: Callable[[Path], tuple[int, int] | None] = disk_space,
    ) -> None:
        self._writer = writer
        self._segments = segments
        self._durability = durability
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._drop_oldest = full_policy == "drop_oldest"
        self._on_dropped = on_dropped
        self._on_write_error = on_write_error
        self._space = space
        self._slot_segment: SpillSegment | None = None  # the slot being written, once created

    def append(
        self, frames: list[bytes], tag: Sequence[int] | None, *, durable: bool, slot: int | None
    ) -> int:
        """Write ``frames`` (one per record, ``tag`` their numbers) at the tail, or into the
        reserved ``slot``; how many were written. The others are counted dropped, and their
        numbers go to the listener as lost. ``durable``: being written is all it takes."""
        self._slot_segment = None
        try:
            start, stop = self._fit_under_cap([len(f) for f in frames], slot)
            self._give_up(tag, 0, start, "spill_max_bytes reached")
            self._give_up(tag, stop, len(frames), "spill_max_bytes reached")
            if start == stop:
                return 0
            reached, why = self._write(frames, tag, start, stop, durable=durable, slot=slot)
            self._give_up(tag, reached, stop, why)
            return reached - start
        finally:
            slot_segment, self._slot_segment = self._slot_segment, None
            if slot_segment is not None:
                self._writer.seal()  # the tail goes on in a segment numbered after the slot
                if slot_segment.records == 0:
                    self._segments.remove(slot_segment)

    # -- the cap -------------------------------------------------------------------------------

    def _fit_under_cap(self, sizes: list[int], slot: int | None) -> tuple[int, int]:
        """The records ``[start:stop]`` of an append that fit under ``spill_max_bytes``,
        older segments given up first under ``drop_oldest``."""
        total = sum(sizes)
        if self._segments.pending_bytes() + total <= self._max_bytes:
            return 0, len(sizes)
        if self._drop_oldest:
            while self._segments.pending_bytes() + total > self._max_bytes:
                if not self._drop_one("spill_max_bytes reached", slot):
                    break
        room = self._max_bytes - self._segments.pending_bytes()
        if total <= room:
            return 0, len(sizes)
        if self._drop_oldest:  # the newest records of the append that fit
            start = len(sizes)
            while start > 0 and sizes[start - 1] <= room:
                start -= 1
                room -= sizes[start]
            return start, len(sizes)
        stop = 0  # drop_newest: the oldest that fit
        while stop < len(sizes) and sizes[stop] <= room:
            room -= sizes[stop]
            stop += 1
        return 0, stop

    # -- the disk ------------------------------------------------------------------------------

    def _write(
        self,
        frames: list[bytes],
        tag: Sequence[int] | None,
        start: int,
        stop: int,
        *,
        durable: bool,
        slot: int | None,
    ) -> tuple[int, str]:
        """Write ``frames[start:stop]`` in order, as far as the disk takes them (making room
        per policy): the index reached, and why it stopped short if it did."""
        i = start
        why = "disk full"
        # Each round writes a frame or gives up a segment (or ends): this bounds the rounds.
        for _ in range(2 * (stop - start) + 2 * len(self._segments) + 4):
            if i >= stop:
                break
            segment: SpillSegment | None = None
            try:
                segment = self._segment_for(slot)
                end = self._chunk_end(frames, i, stop, segment)
                written, exc = self._writer.append(frames[i:end])
            except OSError as error:
                written, exc = 0, error
            if written and segment is not None:
                self._wrote(segment, tag, i, i + written, durable)
                i += written
            if exc is None:
                continue
            self._on_write_error()
            if segment is not None and segment.records == 0 and slot is None:
                # A new segment that got no frame: its file holds a block for nothing, which a
                # later, smaller write could take (out of order, under drop_newest).
                self._segments.remove(segment)
            why = f"cannot write spill segment: {exc}"
            if not (self._drop_oldest and exc.errno in _DISK_FULL):
                break
            if not self._drop_one("disk full", slot):
                break
        return i, why

    def _segment_for(self, slot: int | None) -> SpillSegment:
        """The segment the next frames go to, opened if need be (OSError if it cannot be)."""
        if slot is not None:
            if self._slot_segment is None:
                segment = self._writer.open_segment(_UNLIMITED, seq=slot)
                self._segments.insert_slot(segment, slot, self._writer.writer_id)
                self._slot_segment = segment
            elif self._writer.active is not self._slot_segment:
                raise InvariantError("the reserved spill segment was closed while written")
            return self._slot_segment
        active = self._writer.active
        if active is None or active.bytes >= self._writer.active_limit:
            active = self._writer.open_segment(self._segment_limit())
            self._segments.append(active)
        return active

    def _segment_limit(self) -> int:
        """The size a new tail segment stops at: an eighth of the room the spill has."""
        room = self._max_bytes
        block = DEFAULT_BLOCK_BYTES
        space = self._space(self._writer.directory)
        if space is not None:
            free, block = space
            room = min(room, self._segments.pending_bytes() + free)
        return min(self._segment_bytes, max(block, room // SEGMENTS_PER_ROOM))

    def _chunk_end(self, frames: list[bytes], i: int, stop: int, segment: SpillSegment) -> int:
        """Where the frames from ``i`` that go into ``segment`` end: it takes frames until it
        has reached its size (one at least)."""
        limit = self._writer.active_limit
        size = segment.bytes
        end = i
        while end < stop and (end == i or size < limit):
            size += len(frames[end])
            end += 1
        return end

    # -- accounting ----------------------------------------------------------------------------

    def _wrote(
        self, segment: SpillSegment, tag: Sequence[int] | None, i: int, j: int, durable: bool
    ) -> None:
        part = None if tag is None else tag[i:j]
        if part is not None:
            segment.tags.append(part)
        self._durability.wrote(part, j - i, durable=durable)

    def _give_up(self, tag: Sequence[int] | None, i: int, j: int, why: str) -> None:
        """The records ``[i:j]`` of the append were not written: count them, tell the listener."""
        if j <= i:
            return
        self._on_dropped(j - i, why)
        if tag is not None:
            self._durability.not_kept(tag[i:j])

    def _drop_one(self, why: str, slot: int | None) -> bool:
        """Give up the oldest segment for room; for a slot, only one older than the slot.
        False if there is none to give up."""
        if (
            slot is not None
            and self._slot_segment is None
            and self._segments.slot_index(slot, self._writer.writer_id) == 0
        ):
            return False
        dropped = self._segments.drop_oldest(keep_from=self._slot_segment)
        if dropped is None:
            return False
        segment, done, lost = dropped
        self._on_dropped(lost, f"{why}: dropped oldest spill segment")
        self._durability.note_lost(segment.tags, done, lost)
        return True
