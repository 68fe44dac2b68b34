"""The local spill store: keeps the records Kafka could not take yet in segment files, and
gives them back, oldest first, for replay.

It owns the policies (the size cap, what gives way when it is reached or the disk is full,
when to fsync) and puts the parts together under one lock: this process's files
(:mod:`~kafkalog.spill.writer`), the replay order (:mod:`~kafkalog.spill.segments`), dead
writers' segments (:mod:`~kafkalog.spill.adoption`) and the listener's notices
(:mod:`~kafkalog.spill.durability`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.errors import InvariantError
from kafkalog.spill.adoption import find_orphans
from kafkalog.spill.appender import SpillAppender
from kafkalog.spill.durability import DurabilityTracker, SpillListener
from kafkalog.spill.files import disk_space, fsync_and_close, warn_unsafe
from kafkalog.spill.format import SpillRecord, encode_frame, encode_frames, encode_payload
from kafkalog.spill.segments import LoadedSegment, ReplayBatch, SegmentList, load_segment
from kafkalog.spill.writer import SegmentWriter

__all__ = ["ReplayBatch", "SpillListener", "SpillStore"]


class SpillStore:
    """A directory of segment files, written by this process and replayed in FIFO order.

    Thread-safe: the worker appends and replays; application threads append when the queue
    overflows. Nothing here raises into the caller: write failures are counted and reported.
    """

    def __init__(
        self,
        directory: Path,
        topic: str,
        *,
        fsync: str = "interval",
        fsync_interval_s: float = 0.5,
        max_bytes: int = 1024**3,
        segment_bytes: int = 16 * 1024**2,
        full_policy: str = "drop_oldest",
        warnings: RateLimitedWarnings | None = None,
        clock: Callable[[], float] = time.monotonic,
        listener: SpillListener | None = None,
        space: Callable[[Path], tuple[int, int] | None] = disk_space,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self._fsync = fsync
        self._fsync_interval_s = fsync_interval_s
        self._warnings = warnings or RateLimitedWarnings()
        self._clock = clock
        self._lock = threading.RLock()
        self._writer = SegmentWriter(directory, topic, self._warnings, fsync=fsync)
        self._segments = SegmentList(
            self._writer, self._warnings, on_corrupt=self._count_corrupt,
            on_unsafe=self._count_unsafe,
        )
        self._durability = DurabilityTracker(listener)
        self._appender = SpillAppender(
            self._writer, self._segments, self._durability, max_bytes=max_bytes,
            segment_bytes=segment_bytes, full_policy=full_policy,
            on_dropped=self._count_dropped, on_write_error=self._count_write_error, space=space,
        )
        self._last_sync = clock()
        self.spilled = 0  # durable: covered by a successful fsync (see SpillListener)
        self.replayed = 0
        self.dropped = 0
        self.dead_lettered = 0
        self.corrupt_frames = 0
        self.adopted_segments = 0
        self.write_errors = 0
        self.unsafe_entries = 0  # symlinks or non-files named like our files: never opened
        self._unsafe_seen: set[str] = set()  # adoption looks again every few seconds

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def writer_id(self) -> str:
        """This process's writer id (hex)."""
        return self._writer.writer_id

    def pending_records(self) -> int:
        """Records on disk not yet acknowledged (adopted ones counted once read)."""
        with self._lock:
            return self._segments.pending_records()

    def has_pending(self) -> bool:
        """True while any segment holds records that are not acknowledged."""
        return self.pending_records() > 0

    def pending_bytes(self) -> int:
        """Bytes of the segments still on disk."""
        with self._lock:
            return self._segments.pending_bytes()

    def _count_dropped(self, count: int, why: str) -> None:
        self.dropped += count
        self._warnings.warn(f"spill-drop:{why}", "spill store dropped %d record(s): %s", count, why)

    def _count_write_error(self) -> None:
        self.write_errors += 1

    def _count_corrupt(self, regions: int) -> None:
        self.corrupt_frames += regions

    def _count_unsafe(self, found: list[str]) -> None:
        """Count and report entries that are not regular files, each name once."""
        with self._lock:
            names = [n for n in found if n not in self._unsafe_seen]
            self._unsafe_seen.update(names)
            self.unsafe_entries += len(names)
        if names:
            warn_unsafe(self._warnings, self.directory, names)

    # -- writing -------------------------------------------------------------------------------

    def append(
        self,
        records: Sequence[SpillRecord],
        *,
        dead_letter: bool = False,
        sync: bool = True,
        into_slot: bool = False,
        tag: Sequence[int] | None = None,
    ) -> int:
        """Write ``records`` to the tail; returns how many were written.

        What does not fit (the cap, a full disk) gives way per ``spill_full_policy``: some of
        ``records`` may be written and not others (:mod:`~kafkalog.spill.appender`). Each
        record not kept is counted dropped and, with a ``tag`` (the caller's numbers for
        these records, one per record), reported to the listener as lost; the records that
        are kept are reported to it once durable, or if they are lost later.

        Dead letters go to a separate ``.dead`` segment that replay never touches (whole or
        not at all). With ``sync=False`` the fsync policy is left to the next call that syncs
        (used on the application's threads, which must not wait for the disk). With
        ``into_slot`` and a slot reserved (:meth:`reserve_slot`), the records go into it,
        ahead of everything appended since the reservation.
        """
        if not records:
            return 0
        if dead_letter:
            return self._append_dead_letter(records)
        frames = [encode_frame(encode_payload(value, key)) for value, key in records]
        if tag is not None and len(tag) != len(records):
            raise InvariantError(f"spill tag {tag!r} does not match {len(records)} record(s)")
        durable = self._fsync == "never"  # the user chose "written" as good enough
        with self._lock:
            slot = self._writer.take_slot() if into_slot else None
            written = self._appender.append(frames, tag, durable=durable, slot=slot)
            if durable:
                self.spilled += written
        if sync:
            self._sync_sealed()  # segments sealed by this append are synced, outside the lock
            if written:
                self.maybe_sync()
        self._durability.notify(self._lock)
        return written

    def reserve_slot(self) -> None:
        """Keep a place, ahead of whatever is appended from now on, for older records.

        The queue overflowed while the worker holds a batch taken from it: those records are
        older than the ones the overflow spills now, and if they end up in the spill they
        must be replayed first (per-key order). The worker writes them with
        ``append(..., into_slot=True)``, or calls :meth:`release_slot` once they are
        delivered. Cheap, for the application's thread: no fsync here.
        """
        with self._lock:
            self._writer.reserve_slot()

    def release_slot(self) -> None:
        """The batch the slot was kept for is resolved; an unused slot is just a gap."""
        with self._lock:
            self._writer.release_slot()

    def _append_dead_letter(self, records: Sequence[SpillRecord]) -> int:
        frames = encode_frames(records)
        with self._lock:
            try:
                self._writer.write_dead_letters(frames)
            except OSError as exc:
                self.write_errors += 1
                self._count_dropped(len(records), f"cannot write dead-letter segment: {exc}")
                return 0
            self.dead_lettered += len(records)
            return len(records)

    # -- fsync ---------------------------------------------------------------------------------

    def maybe_sync(self) -> None:
        """fsync now if the policy says it is time (``always``, or ``interval`` elapsed)."""
        if self._fsync == "always" or (
            self._fsync == "interval" and self._clock() - self._last_sync >= self._fsync_interval_s
        ):
            self.sync()

    def sync(self) -> None:
        """fsync what was written and not synced yet (policy permitting): the segments sealed
        since the last sync and the active one. Then the listener hears which tagged records
        are durable (or lost, if an fsync failed).

        The fsyncs run outside the store's lock (the active segment's on a duplicate of its
        descriptor), so an application thread appending on queue overflow never waits for the
        disk to flush.
        """
        with self._lock:
            target = self._durability.written  # every record written so far is covered
            try:
                fds, active_included = self._writer.take_unsynced()
            except OSError as exc:
                self._sync_failed(exc)
                return
            if active_included:
                self._last_sync = self._clock()
        ok = self._fsync_and_close(fds)
        with self._lock:
            settled = self._durability.settle(target, ok)
            if ok:
                self.spilled += sum(settled)
            else:
                for count in settled:
                    self._count_dropped(count, "fsync of spill segment failed")
        self._durability.notify(self._lock)

    def _sync_sealed(self) -> None:
        """fsync and close the segments sealed since the last call (outside the lock).

        Records in them are not reported durable here: the active segment may hold older
        ones that are not synced yet; :meth:`sync` reports both.
        """
        with self._lock:
            sealed = self._writer.take_sealed()
        self._fsync_and_close(sealed)

    def _fsync_and_close(self, fds: list[int]) -> bool:
        """fsync and close each of ``fds``; False if any fsync failed."""
        failures = fsync_and_close(fds)
        for exc in failures:
            self._sync_failed(exc)
        return not failures

    def _sync_failed(self, exc: OSError) -> None:
        with self._lock:
            self.write_errors += 1
            self._writer.sync_failed()  # try again at the next sync
        self._warnings.warn("spill-fsync", "fsync of spill segment failed: %s", exc)

    # -- replay --------------------------------------------------------------------------------

    def read_batch(self, max_records: int, max_bytes: int) -> ReplayBatch | None:
        """The next unacknowledged records of the oldest segment, or None if none are left."""
        loaded: LoadedSegment | None = None
        for _ in range(3):  # the head rarely changes while it is read; then read it locked
            with self._lock:
                head = self._segments.head_to_load()
                if head is None or (loaded is not None and loaded.segment is head):
                    break
            # Read (and check) the segment without the lock: an application thread that
            # overflows into the store meanwhile, holding the queue's lock, must not wait.
            loaded = load_segment(head)
        with self._lock:
            batch = self._segments.next_batch(max_records, max_bytes, loaded)
        self._sync_sealed()  # a segment sealed for replay is synced, outside the lock
        return batch

    def ack(self, batch: ReplayBatch, count: int) -> None:
        """The first ``count`` records of ``batch`` were acknowledged by the broker."""
        if count <= 0:
            return
        with self._lock:
            if self._segments.ack(batch, count):
                self.replayed += count

    def adopt_orphans(self) -> int:
        """Queue for replay the segments of writers that are no longer alive. Returns count.

        A writer is dead when its lock file can be locked. Taking that lock also makes the
        adoption exclusive: two live handlers never replay the same segment.
        """
        if not self.directory.is_dir():
            return 0
        self._writer.check_dir()
        adopted = find_orphans(self.directory, self.topic, self.writer_id, self._count_unsafe)
        if not adopted:
            return 0
        with self._lock:
            self._segments.adopt(adopted)
            self.adopted_segments += len(adopted)
        return len(adopted)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """fsync and close the active segment, and unlock: what is left to replay is then
        adopted by the next store that looks (another handler of this process, or another
        process with the same ``spill_dir``), not only after this process ends.

        The lock file and any empty segments are removed when nothing is left to replay.
        """
        with self._lock:
            self._writer.seal()
            self.sync()  # a failed fsync is counted there; closing goes on
            if not self.has_pending():
                for segment in list(self._segments):
                    self._segments.remove(segment)
            # The closed store never touches its segments again, so holding the lock would
            # only keep the records from the stores that could send them.
            self._writer.release()
            self._segments.release_adopted()

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's files and lock without touching them."""
        self._writer.forget()
        self._segments.forget()
        self._lock = threading.RLock()

    def counters(self) -> dict[str, int]:
        """A snapshot of the store's counters."""
        with self._lock:
            return {
                "spilled": self.spilled,
                "replayed": self.replayed,
                "spill_dropped": self.dropped,
                "dead_letter_segment_records": self.dead_lettered,
                "corrupt_frames": self.corrupt_frames,
                "adopted_segments": self.adopted_segments,
                "spill_write_errors": self.write_errors,
                "spill_unsafe_entries": self.unsafe_entries,
                "spill_pending_records": self.pending_records(),
                "spill_bytes": self.pending_bytes(),
            }
