"""This process's own segment files: its writer lock, the active segment it appends to, the
sealed ones still waiting for their fsync, and its dead-letter segments."""

from __future__ import annotations

import contextlib
import os
import secrets
import time
from pathlib import Path

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.errors import InvariantError
from kafkalog.spill.files import (
    check_dir,
    create_segment,
    lock_writer,
    release_own,
    write_dead_letter_segment,
    write_frames,
)
from kafkalog.spill.format import DEAD_LETTER_SUFFIX, LOCK_SUFFIX, encode_header, segment_name
from kafkalog.spill.segments import SpillSegment


class SegmentWriter:
    """Writes this process's segments into ``directory``, holding an ``flock`` on its lock
    file from its first segment until it releases it (a dead writer's lock is free).

    Not thread-safe: the store calls it with its lock held. It never fsyncs a replay segment
    itself: it hands out the descriptors to fsync (:meth:`take_sealed`,
    :meth:`take_unsynced`), and the store syncs them once its lock is released.
    """

    def __init__(
        self,
        directory: Path,
        topic: str,
        warnings: RateLimitedWarnings,
        *,
        fsync: str,
    ) -> None:
        self.directory = directory
        self.topic = topic
        self._warnings = warnings
        self._fsync_enabled = fsync != "never"  # the spill_fsync policy
        self._id = secrets.token_bytes(8)
        self._lock_fd: int | None = None
        self._fd: int | None = None
        self.active: SpillSegment | None = None  # the segment appends go to
        #: The size the active segment is meant to stop at (set when it is opened).
        self.active_limit = 0
        self._dirty = False  # the active segment was written since its last fsync
        # Sealed segments whose fsync is left to the next sync (see seal): (path, fd).
        self._unsynced: list[tuple[Path, int]] = []
        self._seq = 0
        self._slot: int | None = None  # a segment number kept free for older records
        self._dir_checked = False

    @property
    def writer_id(self) -> str:
        """This process's writer id (hex)."""
        return self._id.hex()

    def check_dir(self) -> None:
        """Warn (once) if other users can reach the directory; never raises."""
        if not self._dir_checked:
            self._dir_checked = check_dir(self.directory, self._warnings)

    def _open_lock(self) -> None:
        if self._lock_fd is not None:
            return
        if not self.directory.exists():
            os.makedirs(self.directory, mode=0o700, exist_ok=True)
        self.check_dir()
        self._lock_fd = lock_writer(self.directory / f"{self.writer_id}{LOCK_SUFFIX}")

    def _header(self) -> bytes:
        return encode_header(self._id, self.topic, int(time.time() * 1000))

    # -- replay segments -----------------------------------------------------------------------

    def seal(self) -> None:
        """Stop appending to the active segment; the next append starts a new one.

        Its fsync is left to the next sync, which runs it outside the store's lock: an fsync
        under the lock would make application threads that overflow into the spill (and, as
        they hold the queue's lock meanwhile, every logging thread) wait for the disk.
        """
        if self._fd is not None and self.active is not None:
            if self._dirty and self._fsync_enabled:
                self._unsynced.append((self.active.path, self._fd))
            else:
                os.close(self._fd)
        self._fd = None
        self._dirty = False
        self.active = None

    def open_segment(self, limit: int, seq: int | None = None) -> SpillSegment:
        """Seal the active segment and start a new one, which becomes the active one, meant
        to stop at ``limit`` bytes: the next segment number, or ``seq`` (a reserved slot's,
        from :meth:`take_slot`). OSError if it cannot be created (nothing is left behind)."""
        self.seal()
        self._open_lock()
        if seq is None:
            self._seq += 1
            seq = self._seq
        path = self.directory / segment_name(self.writer_id, seq)
        header = self._header()
        self._fd = create_segment(path, header)
        self.active = SpillSegment(path, 0, len(header))
        self.active_limit = limit
        return self.active

    def append(self, frames: list[bytes]) -> tuple[int, OSError | None]:
        """Write ``frames`` (one per record) to the active segment, as many as the disk takes:
        how many were written whole, and the error that stopped the others (or None). No torn
        frame is left behind."""
        segment, fd = self.active, self._fd
        if segment is None or fd is None:
            raise InvariantError("the active spill segment has no open file")
        count, size, exc = write_frames(fd, frames, segment.bytes)
        if count:
            segment.records += count
            segment.bytes += size
            self._dirty = True
        return count, exc

    def discard(self, segment: SpillSegment) -> None:
        """``segment`` is being deleted: close our descriptor of it now, unsynced (its
        records are accounted for by whoever deletes it). A deleted file's blocks are freed
        only once its last descriptor is closed, and a full disk needs them back at once."""
        if segment is self.active:
            if self._fd is not None:
                with contextlib.suppress(OSError):
                    os.close(self._fd)
            self._fd = None
            self._dirty = False
            self.active = None
            return
        for i, (path, fd) in enumerate(self._unsynced):
            if path == segment.path:
                del self._unsynced[i]
                with contextlib.suppress(OSError):
                    os.close(fd)
                return

    def reserve_slot(self) -> None:
        """Seal the active segment and keep the next segment number free (see
        :meth:`SpillStore.reserve_slot`); a slot already kept stays as it is."""
        if self._slot is None:
            self.seal()
            self._seq += 1
            self._slot = self._seq

    def take_slot(self) -> int | None:
        """The segment number kept free, if any, for :meth:`open_segment`; no longer kept."""
        slot, self._slot = self._slot, None
        return slot

    def release_slot(self) -> None:
        """The slot is not needed: an unused segment number is just a gap."""
        self._slot = None

    def write_dead_letters(self, frames: bytes) -> None:
        """Write ``frames`` to a new dead-letter segment (replay never reads it), fsynced."""
        self._open_lock()
        self._seq += 1
        path = self.directory / segment_name(self.writer_id, self._seq, DEAD_LETTER_SUFFIX)
        write_dead_letter_segment(path, self._header() + frames)

    # -- fsync ---------------------------------------------------------------------------------

    def take_sealed(self) -> list[int]:
        """The descriptors of the segments sealed since the last call, to fsync and close."""
        sealed, self._unsynced = self._unsynced, []
        return [fd for _, fd in sealed]

    def take_unsynced(self) -> tuple[list[int], bool]:
        """Descriptors to fsync and close that cover everything written so far: the sealed
        segments' and, if it was written since its last fsync, a duplicate of the active
        one's (then the second item is True). If the duplicate cannot be made, nothing is
        taken and the OSError is raised."""
        if self._fd is None or not self._dirty or not self._fsync_enabled:
            self._dirty = False
            return self.take_sealed(), False
        duplicate = os.dup(self._fd)
        self._dirty = False
        return [*self.take_sealed(), duplicate], True

    def sync_failed(self) -> None:
        """An fsync failed: sync the active segment (if any) again next time."""
        self._dirty = self._fd is not None

    # -- lifecycle -----------------------------------------------------------------------------

    def release(self) -> None:
        """Nothing of ours is left to replay: unlock, removing the lock file if no file of
        this writer is left."""
        if self._lock_fd is not None:
            release_own(self._lock_fd, self.directory, self.writer_id)
            self._lock_fd = None

    def forget(self) -> None:
        """In a forked child: close our copies of the parent's descriptors without touching
        its files (its lock stays held by the parent), and become a new writer."""
        for fd in (self._fd, self._lock_fd, *(fd for _, fd in self._unsynced)):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self._fd = self._lock_fd = None
        self._unsynced = []
        self._id = secrets.token_bytes(8)
        self.active = None
        self._seq = 0
        self._slot = None
