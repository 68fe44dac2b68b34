"""File operations of the spill: complete writes, writer locks, and releasing adopted ones."""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from kafkalog.spill.format import LOCK_SUFFIX, NAME_RE, NOFOLLOW, SEGMENT_SUFFIX


def write_all(fd: int, data: bytes, rollback_to: int | None = None) -> None:
    """os.write until done; on error, cut a partial write back so no torn frame stays behind."""
    view = memoryview(data)
    written = 0
    try:
        while written < len(view):
            written += os.write(fd, view[written:])
    except OSError:
        if written and rollback_to is not None:
            with contextlib.suppress(OSError):  # the reader cuts a torn tail anyway
                os.ftruncate(fd, rollback_to)
        raise


def try_lock_writer(path: Path) -> int | None:
    """Lock a (presumably dead) writer's lock file; the fd if we got it."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | NOFOLLOW, 0o600)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def release_adopted(lock_fd: int, segment_path: Path) -> None:
    """All segments of an adopted writer are replayed: remove its lock file and unlock."""
    match = NAME_RE.match(segment_path.name)
    if match:
        lock_path = segment_path.parent / f"{match['writer']}{LOCK_SUFFIX}"
        if not any(segment_path.parent.glob(f"{match['writer']}-*{SEGMENT_SUFFIX}")):
            with contextlib.suppress(OSError):
                lock_path.unlink()
    with contextlib.suppress(OSError):
        os.close(lock_fd)
