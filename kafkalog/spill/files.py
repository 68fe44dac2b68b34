"""File operations of the spill: the directory's safety checks, complete writes, creating
segment files, writer locks, and fsyncs. No state: the store and its writer keep that."""

from __future__ import annotations

import contextlib
import fcntl
import os
import stat
from collections.abc import Sequence
from pathlib import Path

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.spill.format import LOCK_SUFFIX, NAME_RE, NOFOLLOW, SEGMENT_SUFFIX

# O_EXCL: a new segment is never an existing file (or a link planted under its name).
_NEW_SEGMENT = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC | NOFOLLOW


def check_dir(directory: Path, warnings: RateLimitedWarnings) -> bool:
    """Warn if other users can reach ``directory``; False if it is not there yet. Never raises.

    A directory the user made with a looser mode is left as it is: changing the permissions
    of an existing directory is the operator's call, not a logging library's.
    """
    try:
        st = directory.stat()
    except OSError:
        return False  # not there yet: the writer creates it with 0700 and checks again
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        warnings.warn(
            f"spill-perm:{directory}",
            "spill directory %s is accessible to group or others (mode %o); "
            "log records may be readable by other users (chmod 700 it)",
            directory,
            stat.S_IMODE(st.st_mode),
        )
    uid = os.geteuid() if hasattr(os, "geteuid") else st.st_uid
    if st.st_uid != uid:
        warnings.warn(
            f"spill-owner:{directory}",
            "spill directory %s belongs to another user (uid %d); "
            "that user can read and replace the spilled records",
            directory,
            st.st_uid,
        )
    return True


def warn_unsafe(warnings: RateLimitedWarnings, directory: Path, names: Sequence[str]) -> None:
    """Report entries of ``directory`` that are not regular files and were left alone."""
    warnings.warn(
        f"spill-unsafe:{directory}",
        "spill directory %s: ignored %d entr%s that %s not a regular file "
        "(a symlink?), never following %s: %s",
        directory,
        len(names),
        "y" if len(names) == 1 else "ies",
        "is" if len(names) == 1 else "are",
        "it" if len(names) == 1 else "them",
        ", ".join(sorted(names)[:5]),
    )


def write_all(fd: int, data: bytes) -> None:
    """os.write until done (a regular file may take a short write); OSError if it fails."""
    view = memoryview(data)
    written = 0
    while written < len(view):
        written += os.write(fd, view[written:])


def write_frames(fd: int, frames: Sequence[bytes], end: int) -> tuple[int, int, OSError | None]:
    """Append ``frames`` to the file ``fd`` (``end`` bytes long) in one go, keeping as many
    whole frames as the disk takes: (frames written, their bytes, the error that stopped the
    rest or None).

    A disk that fills up takes a short write, then fails: the frames written whole by then are
    kept, and a torn one is cut back, so the file always ends on a frame boundary.
    """
    data = memoryview(b"".join(frames))
    written = 0
    try:
        while written < len(data):
            written += os.write(fd, data[written:])
    except OSError as exc:
        count = kept = 0
        for frame in frames:
            if kept + len(frame) > written:
                break
            kept += len(frame)
            count += 1
        if kept < written:
            with contextlib.suppress(OSError):  # the reader cuts a torn tail anyway
                os.ftruncate(fd, end + kept)
        return count, kept, exc
    return len(frames), written, None


def disk_space(directory: Path) -> tuple[int, int] | None:
    """(bytes free to unprivileged users, block size) of the filesystem ``directory`` is or
    will be on (its nearest existing ancestor); None if that cannot be found out."""
    for path in (directory, *directory.parents):
        try:
            st = os.statvfs(path)
        except FileNotFoundError:
            continue
        except OSError:
            return None
        return st.f_bavail * st.f_frsize, st.f_bsize
    return None


def create_segment(path: Path, header: bytes) -> int:
    """Create the segment file ``path`` holding ``header``; its descriptor, open for
    appending. On failure nothing is left behind: no torn file, no open descriptor."""
    fd = os.open(path, _NEW_SEGMENT | os.O_APPEND, 0o600)
    try:
        write_all(fd, header)
    except OSError:
        os.close(fd)
        with contextlib.suppress(OSError):
            path.unlink()
        raise
    return fd


def write_dead_letter_segment(path: Path, data: bytes) -> None:
    """Create the dead-letter segment ``path`` holding ``data``, fsynced and closed."""
    fd = os.open(path, _NEW_SEGMENT, 0o600)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_and_close(fds: Sequence[int]) -> list[OSError]:
    """fsync and close each of ``fds``; the fsync failures."""
    failures: list[OSError] = []
    for fd in fds:
        try:
            os.fsync(fd)
        except OSError as exc:
            failures.append(exc)
        finally:
            os.close(fd)
    return failures


def lock_writer(path: Path) -> int:
    """Lock a writer's lock file (creating it) without waiting; the descriptor holding the lock.
    Raises OSError if another process holds it or it cannot be opened."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | NOFOLLOW, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise
    return fd


def try_lock_writer(path: Path) -> int | None:
    """Lock a (presumably dead) writer's lock file; the fd if we got it."""
    try:
        return lock_writer(path)
    except OSError:
        return None


def release_own(lock_fd: int, directory: Path, writer: str) -> None:
    """This writer is done: remove its lock file if it left no file behind, and unlock."""
    if not any(directory.glob(f"{writer}-*")):
        with contextlib.suppress(OSError):
            (directory / f"{writer}{LOCK_SUFFIX}").unlink()
    os.close(lock_fd)


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
