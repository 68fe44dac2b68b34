"""The local spill store: CRC-framed segment files that keep records Kafka could not take yet.

Format (see ``docs/spill-format.md``): a segment starts with a header (magic, version, writer
id, creation time, topic, header CRC) and holds frames ``length | crc32c(payload) | payload |
length``. Each writer process owns its segments and holds an ``flock`` on its lock file; a
live handler adopts the segments of a writer whose lock is free (a dead process) and replays
them. Replay deletes a segment only after every record in it was acknowledged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import heapq
import os
import secrets
import stat
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Protocol

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.errors import InvariantError
from kafkalog.spill.files import release_adopted, try_lock_writer, write_all
from kafkalog.spill.format import (
    DEAD_LETTER_SUFFIX,
    LOCK_SUFFIX,
    NAME_RE,
    NOFOLLOW,
    SEGMENT_SUFFIX,
    ScanResult,
    SegmentHeader,
    SpillRecord,
    created_of,
    encode_frame,
    encode_header,
    encode_payload,
    header_of,
    read_segment,
)


class SpillListener(Protocol):
    """Told what became of tagged appends. Called with no lock of the store held; must be
    quick and must not call back into the store.

    A tag is the sequence of the caller's record numbers (one per record) that one
    :meth:`SpillStore.append` wrote, in order: a ``range`` as a rule.
    """

    def spill_durable(self, tag: Sequence[int]) -> None:
        """The records of ``tag`` are on disk for good: the fsync covering them succeeded
        (or ``spill_fsync`` is ``never``: then they were written)."""

    def spill_lost(self, tag: Sequence[int] | None, count: int, *, after_durable: bool) -> None:
        """``count`` records are gone from the spill before they were replayed: a failed
        fsync, or ``spill_full_policy="drop_oldest"`` removing their segment. ``tag`` is
        None for records without one (adopted from a dead writer, or appended untagged).
        ``after_durable``: they had been reported durable before."""


@dataclasses.dataclass
class _Segment:
    path: Path
    records: int
    bytes: int
    adopted_lock: int | None = None  # fd of a dead writer's lock we hold, for adopted ones
    corrupt_counted: int = 0  # corrupt regions already counted (it may be read more than once)
    # The tags of the records appended to it, in order (see SpillListener).
    tags: list[Sequence[int]] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class _Loaded:
    """A segment read from disk, before the store takes note of it."""

    segment: _Segment
    header: SegmentHeader | None
    records: list[SpillRecord]
    scan: ScanResult
    error: OSError | None


def _read_segment_file(
    path: Path,
) -> tuple[SegmentHeader | None, list[SpillRecord], ScanResult, OSError | None]:
    """:func:`read_segment`, with a failure returned instead of raised."""
    try:
        return (*read_segment(path), None)
    except OSError as exc:
        return None, [], ScanResult(frames=[]), exc


@dataclasses.dataclass
class ReplayBatch:
    """Records read from the head segment, to be acknowledged with :meth:`SpillStore.ack`."""

    segment: _Segment
    records: list[SpillRecord]
    start: int  # index of the first record in the segment


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
    ) -> None:
        self.directory = directory
        self._listener = listener
        self.topic = topic
        self._fsync = fsync
        self._fsync_interval_s = fsync_interval_s
        self._max_bytes = max_bytes
        self._segment_bytes = segment_bytes
        self._full_policy = full_policy
        self._warnings = warnings or RateLimitedWarnings()
        self._clock = clock
        self._lock = threading.RLock()
        self._writer_id = secrets.token_bytes(8)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        # Sealed segments whose fsync is left to the worker's next sync() (see reserve_slot).
        self._unsynced_fds: list[int] = []
        # A segment number kept free for records older than the ones appended after it.
        self._slot: int | None = None
        self._seq = 0
        self._active: _Segment | None = None
        self._pending: deque[_Segment] = deque()  # sealed and active segments, oldest first
        self._replay_index = 0  # records of the head segment already acknowledged
        self._last_sync = clock()
        self._dirty = False
        self._read_cache: tuple[Path, list[SpillRecord]] | None = None
        # Records written to replay segments, ever; and the appends not yet covered by an
        # fsync: (that count as it stood after the append, its tag, its record count).
        self._written = 0
        self._undurable: deque[tuple[int, Sequence[int] | None, int]] = deque()
        # What to tell the listener once the lock is released: (tag, count, after_durable)
        # losses, then durable tags.
        self._lost_notices: list[tuple[Sequence[int] | None, int, bool]] = []
        self._durable_notices: list[Sequence[int]] = []
        self.spilled = 0  # durable: covered by a successful fsync (see SpillListener)
        self.replayed = 0
        self.dropped = 0
        self.dead_lettered = 0
        self.corrupt_frames = 0
        self.adopted_segments = 0
        self.write_errors = 0
        self.unsafe_entries = 0  # symlinks or non-files named like our files: never opened
        self._unsafe_seen: set[str] = set()  # adoption looks again every few seconds
        self._dir_checked = False

    # -- bookkeeping -------------------------------------------------------------------------

    @property
    def writer_id(self) -> str:
        """This process's writer id (hex)."""
        return self._writer_id.hex()

    def pending_records(self) -> int:
        """Records on disk not yet acknowledged (adopted ones counted once read)."""
        with self._lock:
            total = sum(seg.records for seg in self._pending)
            return max(0, total - self._replay_index)

    def has_pending(self) -> bool:
        """True while any segment holds records that are not acknowledged."""
        with self._lock:
            return self.pending_records() > 0

    def pending_bytes(self) -> int:
        """Bytes of the segments still on disk."""
        with self._lock:
            return sum(seg.bytes for seg in self._pending)

    def _ensure_dir(self) -> None:
        if not self.directory.exists():
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self._check_dir()

    def _check_dir(self) -> None:
        """Warn (once per store) if other users can reach the directory; never raises.

        A directory the user made with a looser mode is left as it is: changing the
        permissions of an existing directory is the operator's call, not a logging library's.
        """
        if self._dir_checked:
            return
        try:
            st = self.directory.stat()
        except OSError:
            return  # not there yet: _ensure_dir creates it with 0700 and checks again
        self._dir_checked = True
        if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
            self._warnings.warn(
                f"spill-perm:{self.directory}",
                "spill directory %s is accessible to group or others (mode %o); "
                "log records may be readable by other users (chmod 700 it)",
                self.directory,
                stat.S_IMODE(st.st_mode),
            )
        uid = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
        if st.st_uid != uid:
            self._warnings.warn(
                f"spill-owner:{self.directory}",
                "spill directory %s belongs to another user (uid %d); "
                "that user can read and replace the spilled records",
                self.directory,
                st.st_uid,
            )

    def _open_lock(self) -> None:
        if self._lock_fd is not None:
            return
        self._ensure_dir()
        path = self.directory / f"{self.writer_id}{LOCK_SUFFIX}"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | NOFOLLOW, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self._lock_fd = fd

    def _roll(self) -> None:
        """Seal the active segment (with the lock held); the next append starts a new one.

        Its fsync is left to the next :meth:`sync`, which runs it outside the lock: an fsync
        under the lock would make application threads that overflow into the spill (and, as
        they hold the queue's lock meanwhile, every logging thread) wait for the disk.
        """
        self._seal_without_sync()

    def _seal_without_sync(self) -> None:
        """Seal the active segment now; its fsync is left to the next :meth:`sync`.

        For application threads (queue overflow), which must not wait for the disk.
        """
        if self._fd is not None:
            if self._dirty and self._fsync != "never":
                self._unsynced_fds.append(self._fd)
            else:
                os.close(self._fd)
            self._fd = None
        self._active = None

    def _new_segment_file(self, seq: int) -> tuple[Path, int, int]:
        """Create segment ``seq`` with its header: (path, fd, header size)."""
        self._open_lock()
        path = self.directory / f"{self.writer_id}-{seq:010d}{SEGMENT_SUFFIX}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC | NOFOLLOW
        fd = os.open(path, flags, 0o600)
        header = encode_header(self._writer_id, self.topic, int(time.time() * 1000))
        try:
            write_all(fd, header)
        except OSError:  # no torn header left behind, no descriptor leaked
            os.close(fd)
            with contextlib.suppress(OSError):
                path.unlink()
            raise
        return path, fd, len(header)

    def _open_segment(self) -> _Segment:
        self._open_lock()
        self._seq += 1
        path, fd, header_size = self._new_segment_file(self._seq)
        self._fd = fd
        segment = _Segment(path, 0, header_size)
        self._active = segment
        self._pending.append(segment)
        return segment

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
        """Write ``records`` to the tail; returns how many were written (others dropped).

        ``tag`` (the caller's numbers for these records, one per record) is
        reported to the listener once the records are durable, or if they are lost later.

        Dead letters go to a separate ``.dead`` segment that replay never touches. With
        ``sync=False`` the fsync policy is left to the next call that syncs (used on the
        application's threads, which must not wait for the disk). With ``into_slot`` and a
        slot reserved (:meth:`reserve_slot`), the records go into it, ahead of everything
        appended since the reservation.
        """
        if not records:
            return 0
        if dead_letter:
            return self._append_dead_letter(records)
        frames = b"".join(encode_frame(encode_payload(v, k)) for v, k in records)
        if tag is not None and len(tag) != len(records):
            raise InvariantError(f"spill tag {tag!r} does not match {len(records)} record(s)")
        with self._lock:
            slot = self._slot
            if into_slot and slot is not None:
                self._slot = None
                segment = self._append_to_slot(slot, frames, len(records))
            else:
                segment = self._append_frames(frames, len(records))
            if segment is not None:
                self._written += len(records)
                if tag is not None:
                    segment.tags.append(tag)
                if self._fsync != "never":
                    self._undurable.append((self._written, tag, len(records)))
                else:  # the user chose "written" as good enough
                    self.spilled += len(records)
                    if tag is not None:
                        self._durable_notices.append(tag)
        if sync:
            self._sync_sealed()  # a segment sealed by this append is synced, outside the lock
        if segment is not None and sync:
            self.maybe_sync()
        self._notify()
        return 0 if segment is None else len(records)

    def _notify(self) -> None:
        """Tell the listener, outside the lock, what the last calls found out."""
        if not (self._lost_notices or self._durable_notices):
            return  # read without the lock: a notice added meanwhile goes with the next call
        with self._lock:
            lost, self._lost_notices = self._lost_notices, []
            durable, self._durable_notices = self._durable_notices, []
        listener = self._listener
        if listener is None:
            return
        for tag, count, after_durable in lost:
            listener.spill_lost(tag, count, after_durable=after_durable)
        for tag in durable:
            listener.spill_durable(tag)

    def _append_frames(self, frames: bytes, count: int) -> _Segment | None:
        """With the lock held: apply the cap and write, falling back per policy. The segment
        written to, or None if the records were dropped."""
        while self.pending_bytes() + len(frames) > self._max_bytes:
            if self._full_policy != "drop_oldest" or not self._drop_oldest_segment("cap"):
                self._count_dropped(count, "spill_max_bytes reached")
                return None
        for attempt in range(2):
            try:
                segment = self._active
                if segment is None or segment.bytes >= self._segment_bytes:
                    self._roll()
                    segment = self._open_segment()
                fd = self._fd
                if fd is None:
                    raise InvariantError("the active spill segment has no open file")
                write_all(fd, frames, rollback_to=segment.bytes)
            except OSError as exc:
                self.write_errors += 1
                full = exc.errno in (errno.ENOSPC, errno.EDQUOT)
                # Give up one old segment and retry once; never one without a retry after it.
                if (
                    full
                    and attempt == 0
                    and self._full_policy == "drop_oldest"
                    and self._drop_oldest_segment("disk full")
                ):
                    continue
                self._count_dropped(count, f"cannot write spill segment: {exc}")
                return None
            segment.records += count
            segment.bytes += len(frames)
            self._dirty = True
            return segment
        self._count_dropped(count, "disk full")
        return None

    def reserve_slot(self) -> None:
        """Keep a place, ahead of whatever is appended from now on, for older records.

        The queue overflowed while the worker holds a batch taken from it: those records are
        older than the ones the overflow spills now, and if they end up in the spill they
        must be replayed first (per-key order). The worker writes them with
        ``append(..., into_slot=True)``, or calls :meth:`release_slot` once they are
        delivered. Cheap, for the application's thread: no fsync here.
        """
        with self._lock:
            if self._slot is not None:
                return
            self._seal_without_sync()
            self._seq += 1
            self._slot = self._seq

    def release_slot(self) -> None:
        """The batch the slot was kept for is resolved; an unused slot is just a gap."""
        with self._lock:
            self._slot = None

    def _append_to_slot(self, slot: int, frames: bytes, count: int) -> _Segment | None:
        """With the lock held: write the reserved segment ``slot`` and put it in its place.
        The new segment, or None if the records were dropped."""
        while self.pending_bytes() + len(frames) > self._max_bytes:
            if self._full_policy != "drop_oldest" or not self._drop_oldest_segment("cap"):
                self._count_dropped(count, "spill_max_bytes reached")
                return None
        try:
            path, fd, header_size = self._new_segment_file(slot)
            try:
                write_all(fd, frames)
            except OSError:
                os.close(fd)
                with contextlib.suppress(OSError):
                    path.unlink()  # no torn slot segment left behind
                raise
        except OSError as exc:
            self.write_errors += 1
            self._count_dropped(count, f"cannot write spill segment: {exc}")
            return None
        if self._fsync == "never":
            os.close(fd)
        else:
            self._unsynced_fds.append(fd)  # append() syncs it once the lock is released
        segment = _Segment(path, count, header_size + len(frames))
        # Before this writer's first segment numbered after the slot (adopted segments of
        # dead writers stay first); never before a head segment that is partly replayed.
        index = len(self._pending)
        for i, other in enumerate(self._pending):
            match = NAME_RE.match(other.path.name)
            if match and match["writer"] == self.writer_id and int(match["seq"]) > slot:
                index = i
                break
        if index == 0 and self._replay_index > 0:
            index = 1
        self._pending.insert(index, segment)
        return segment

    def _drop_oldest_segment(self, why: str) -> bool:
        """Delete the oldest segment (sealing the active one if it is the last). False if none."""
        for segment in list(self._pending):
            if segment is self._active:
                if segment.records == 0:
                    continue
                self._roll()  # the only one with records: drop_oldest keeps the newest
            done = self._replay_index if segment is self._pending[0] else 0
            lost = max(0, segment.records - done)
            self._remove(segment)
            self._count_dropped(lost, f"{why}: dropped oldest spill segment")
            self._note_lost(segment.tags, done, lost)
            return True
        return False

    def _note_lost(self, tags: list[Sequence[int]], done: int, lost: int) -> None:
        """With the lock held: the ``lost`` records after the first ``done`` of a segment
        whose appends carried ``tags`` are gone; queue the listener's notices."""
        untagged = lost
        for tag in tags:
            if done >= len(tag):
                done -= len(tag)
                continue
            gone = tag[done:]
            done = 0
            after_durable = True
            for i, (_, pending, _count) in enumerate(self._undurable):
                if pending is tag:
                    del self._undurable[i]
                    after_durable = False
                    break
            self._lost_notices.append((gone, len(gone), after_durable))
            untagged -= len(gone)
        if untagged > 0:  # adopted from a dead writer, or appended without a tag
            self._lost_notices.append((None, untagged, True))

    def _count_unsafe(self, found: list[str]) -> None:
        """Count and report entries that are not regular files, each name once."""
        with self._lock:
            names = [n for n in found if n not in self._unsafe_seen]
            self._unsafe_seen.update(names)
            self.unsafe_entries += len(names)
        if not names:
            return
        self._warnings.warn(
            f"spill-unsafe:{self.directory}",
            "spill directory %s: ignored %d entr%s that %s not a regular file "
            "(a symlink?), never following %s: %s",
            self.directory,
            len(names),
            "y" if len(names) == 1 else "ies",
            "is" if len(names) == 1 else "are",
            "it" if len(names) == 1 else "them",
            ", ".join(sorted(names)[:5]),
        )

    def _count_dropped(self, count: int, why: str) -> None:
        self.dropped += count
        self._warnings.warn(
            f"spill-drop:{why}", "spill store dropped %d record(s): %s", count, why
        )

    def _append_dead_letter(self, records: Sequence[SpillRecord]) -> int:
        frames = b"".join(encode_frame(encode_payload(v, k)) for v, k in records)
        with self._lock:
            try:
                self._open_lock()
                self._seq += 1
                path = self.directory / f"{self.writer_id}-{self._seq:010d}{DEAD_LETTER_SUFFIX}"
                flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | NOFOLLOW
                fd = os.open(path, flags, 0o600)
                try:
                    header = encode_header(self._writer_id, self.topic, int(time.time() * 1000))
                    write_all(fd, header + frames)
                    os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                self.write_errors += 1
                self._count_dropped(len(records), f"cannot write dead-letter segment: {exc}")
                return 0
            self.dead_lettered += len(records)
            return len(records)

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
        fds: list[int] = []
        with self._lock:
            sealed, self._unsynced_fds = self._unsynced_fds, []
            target = self._written  # every record written so far is covered by these fsyncs
            if self._fd is not None and self._dirty and self._fsync != "never":
                try:
                    fds.append(os.dup(self._fd))
                except OSError as exc:
                    self._unsynced_fds = sealed + self._unsynced_fds
                    self._sync_failed(exc)
                    return
                self._last_sync = self._clock()
            self._dirty = False
        ok = self._fsync_and_close(sealed + fds)
        with self._lock:
            self._settle(target, ok)
        self._notify()

    def _settle(self, target: int, ok: bool) -> None:
        """With the lock held: the fsyncs covering the first ``target`` records written are
        done; ``ok`` if they all succeeded. A failed fsync may have lost the data (Linux
        drops the dirty pages), so those records are reported lost, not durable."""
        undurable = self._undurable
        while undurable and undurable[0][0] <= target:
            _, tag, count = undurable.popleft()
            if ok:
                self.spilled += count
                if tag is not None:
                    self._durable_notices.append(tag)
            else:
                self._count_dropped(count, "fsync of spill segment failed")
                if tag is not None:
                    self._lost_notices.append((tag, count, False))

    def _sync_sealed(self) -> None:
        """fsync and close the segments sealed since the last call (outside the lock).

        Records in them are not reported durable here: the active segment may hold older
        ones that are not synced yet; :meth:`sync` reports both.
        """
        with self._lock:
            sealed, self._unsynced_fds = self._unsynced_fds, []
        self._fsync_and_close(sealed)

    def _fsync_and_close(self, fds: list[int]) -> bool:
        """fsync and close each of ``fds``; False if any fsync failed."""
        ok = True
        for fd in fds:
            try:
                os.fsync(fd)
            except OSError as exc:
                ok = False
                self._sync_failed(exc)
            finally:
                os.close(fd)
        return ok

    def _sync_failed(self, exc: OSError) -> None:
        with self._lock:
            self.write_errors += 1
            self._dirty = self._fd is not None  # try again at the next sync
        self._warnings.warn("spill-fsync", "fsync of spill segment failed: %s", exc)

    # -- replay --------------------------------------------------------------------------------

    def read_batch(self, max_records: int, max_bytes: int) -> ReplayBatch | None:
        """The next unacknowledged records of the oldest segment, or None if none are left."""
        loaded: _Loaded | None = None
        for _ in range(3):  # the head rarely changes while it is read; then read it locked
            with self._lock:
                head = self._head_to_load()
                if head is None or (loaded is not None and loaded.segment is head):
                    break
            # Read (and check) the segment without the lock: an application thread that
            # overflows into the store meanwhile, holding the queue's lock, must not wait.
            loaded = _Loaded(head, *_read_segment_file(head.path))
        with self._lock:
            batch = self._read_batch_locked(max_records, max_bytes, loaded)
        self._sync_sealed()  # a segment sealed for replay is synced, outside the lock
        return batch

    def _head_to_load(self) -> _Segment | None:
        """With the lock held: the head segment if replay must read it from disk first."""
        if not self._pending:
            return None
        head = self._pending[0]
        if head is self._active:
            if head.records == self._replay_index:
                return None
            self._roll()  # replay reads only sealed segments
        cached = self._read_cache
        return None if cached is not None and cached[0] == head.path else head

    def _read_batch_locked(
        self, max_records: int, max_bytes: int, loaded: _Loaded | None = None
    ) -> ReplayBatch | None:
        while self._pending:
            head = self._pending[0]
            if head is self._active:
                if head.records == self._replay_index:
                    return None
                self._roll()  # replay reads only sealed segments
            records = self._records_of(head, loaded)
            if self._replay_index >= len(records):
                self._remove(head)
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

    def _records_of(self, segment: _Segment, loaded: _Loaded | None = None
                    ) -> list[SpillRecord]:
        cached = self._read_cache
        if cached is not None and cached[0] == segment.path:
            return cached[1]
        if loaded is None or loaded.segment is not segment:
            loaded = _Loaded(segment, *_read_segment_file(segment.path))
        header, records, scan, exc = loaded.header, loaded.records, loaded.scan, loaded.error
        if exc is not None:
            if exc.errno == errno.ELOOP:  # swapped for a symlink since it was listed
                self._count_unsafe([segment.path.name])
            else:
                self._warnings.warn(
                    "spill-read", "cannot read spill segment %s: %s", segment.path, exc
                )
        corrupt = scan.corrupt  # read_segment counts a bad header of a non-empty file
        if header is None and not corrupt and segment.path.exists():
            corrupt = 1  # unreadable, or empty
        if corrupt > segment.corrupt_counted:
            self.corrupt_frames += corrupt - segment.corrupt_counted
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

    def ack(self, batch: ReplayBatch, count: int) -> None:
        """The first ``count`` records of ``batch`` were acknowledged by the broker."""
        if count <= 0:
            return
        with self._lock:
            if not self._pending or self._pending[0] is not batch.segment:
                return
            self._replay_index = batch.start + count
            self.replayed += count
            if self._replay_index >= batch.segment.records and batch.segment is not self._active:
                self._remove(batch.segment)

    def _remove(self, segment: _Segment) -> None:
        """Delete a whole segment (with the lock held)."""
        if self._pending and self._pending[0] is segment:
            self._replay_index = 0
        with contextlib.suppress(ValueError):
            self._pending.remove(segment)
        if self._read_cache is not None and self._read_cache[0] == segment.path:
            self._read_cache = None
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

    # -- adoption ------------------------------------------------------------------------------

    def adopt_orphans(self) -> int:
        """Queue for replay the segments of writers that are no longer alive. Returns count.

        A writer is dead when its lock file can be locked. Taking that lock also makes the
        adoption exclusive: two live handlers never replay the same segment.
        """
        if not self.directory.is_dir():
            return 0
        self._check_dir()
        groups: list[list[_Segment]] = []  # per writer, in its sequence order
        by_writer: dict[str, list[Path]] = {}
        unsafe: list[str] = []
        try:
            entries = list(os.scandir(self.directory))
        except OSError:
            return 0
        for entry in entries:
            match = NAME_RE.match(entry.name)
            if not match or match["writer"] == self.writer_id:
                continue
            # A symlink or device named like a segment may point anywhere (another user's
            # file, /dev/zero): skip it without opening it. O_NOFOLLOW guards the open too.
            try:
                regular = entry.is_file(follow_symlinks=False)
            except OSError:
                regular = False
            if not regular:
                unsafe.append(entry.name)
            elif match["suffix"] == SEGMENT_SUFFIX:
                by_writer.setdefault(match["writer"], []).append(self.directory / entry.name)
        if unsafe:
            self._count_unsafe(unsafe)
        for writer, paths in sorted(by_writer.items()):
            lock_fd = try_lock_writer(self.directory / f"{writer}{LOCK_SUFFIX}")
            if lock_fd is None:
                continue
            group: list[_Segment] = []
            for path in sorted(paths):
                header = header_of(path)
                if header is None or header.topic != self.topic:
                    continue  # another topic's records, or not a segment: leave it alone
                try:
                    size = path.stat().st_size
                except OSError:
                    continue
                group.append(_Segment(path, records=-1, bytes=size, adopted_lock=lock_fd))
            if group:
                groups.append(group)
            else:
                os.close(lock_fd)
        if not groups:
            return 0
        # Writers interleaved by creation time, each one's segments kept in the order it wrote
        # them even if its wall clock stepped back.
        adopted = list(heapq.merge(*groups, key=lambda s: created_of(s.path)))
        with self._lock:
            # Older than anything this process wrote: replay them first.
            head_in_progress = self._replay_index > 0 and self._pending
            if head_in_progress:
                first = self._pending.popleft()
                self._pending.extendleft(reversed(adopted))
                self._pending.appendleft(first)
            else:
                self._pending.extendleft(reversed(adopted))
            for seg in adopted:
                self._records_of(seg)  # count its records now
            self._read_cache = None
            self.adopted_segments += len(adopted)
        return len(adopted)

    # -- lifecycle -----------------------------------------------------------------------------

    def close(self) -> None:
        """fsync and close the active segment; keep the lock until the process ends.

        The lock file and any empty segments are removed when nothing is left to replay.
        """
        with self._lock:
            self._roll()
            self.sync()  # a failed fsync is counted there; closing goes on
            if not self.has_pending():
                for segment in list(self._pending):
                    self._remove(segment)
                self._release_own_lock()
            # Let another process adopt what this one adopted but did not finish replaying.
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

    def _release_own_lock(self) -> None:
        if self._lock_fd is not None:
            path = self.directory / f"{self.writer_id}{LOCK_SUFFIX}"
            if not any(self.directory.glob(f"{self.writer_id}-*")):
                with contextlib.suppress(OSError):
                    path.unlink()
            os.close(self._lock_fd)
            self._lock_fd = None

    def forget_after_fork(self) -> None:
        """In a forked child: drop the parent's files and lock without touching them."""
        adopted_locks = {s.adopted_lock for s in self._pending if s.adopted_lock is not None}
        for fd in (self._fd, self._lock_fd, *adopted_locks, *self._unsynced_fds):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)  # our copy only; the parent's lock stays held by the parent
        self._fd = self._lock_fd = None
        self._unsynced_fds = []
        self._slot = None
        self._lock = threading.RLock()
        self._writer_id = secrets.token_bytes(8)
        self._active = None
        self._pending = deque()
        self._replay_index = 0
        self._seq = 0
        self._read_cache = None

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
