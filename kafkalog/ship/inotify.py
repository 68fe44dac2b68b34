"""Linux inotify through ctypes: a non-blocking descriptor, watches, and its events parsed.

The file agent uses it only to notice changes sooner than its periodic scan; it never depends
on it. :func:`open_inotify` raises ``OSError`` where inotify is missing (another platform, no
libc symbol) or cannot be set up (``EMFILE``...), and the agent keeps to scanning.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import os
import struct
import sys
from typing import NamedTuple

# inotify(7) event bits (linux/inotify.h).
IN_MODIFY = 0x00000002
IN_ATTRIB = 0x00000004
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_Q_OVERFLOW = 0x00004000
IN_IGNORED = 0x00008000
IN_ONLYDIR = 0x01000000
IN_ISDIR = 0x40000000
_IN_NONBLOCK = os.O_NONBLOCK
_IN_CLOEXEC = getattr(os, "O_CLOEXEC", 0o2000000)

_HEADER = struct.Struct("iIII")  # wd, mask, cookie, len (of the NUL-padded name that follows)
# One read takes what is queued, up to this; the rest waits for the next read.
READ_BYTES = 64 * 1024


class InotifyEvent(NamedTuple):
    """One event: the watch it came from, what happened, and the name in a watched directory
    (empty for an event about the watched file or directory itself)."""

    wd: int
    mask: int
    cookie: int
    name: str


def parse_events(data: bytes) -> list[InotifyEvent]:
    """The events in ``data``, as the kernel lays them out (a header, then the name)."""
    events = []
    pos, end, size = 0, len(data), _HEADER.size
    while pos + size <= end:
        wd, mask, cookie, length = _HEADER.unpack_from(data, pos)
        pos += size
        name = data[pos : pos + length].rstrip(b"\0")
        pos += length
        events.append(InotifyEvent(wd, mask, cookie, os.fsdecode(name)))
    return events


class Inotify:
    """An inotify instance: :meth:`add_watch`, :meth:`rm_watch`, and :meth:`read` of what is
    queued without blocking. Its descriptor is for ``select``. Not thread-safe."""

    def __init__(self, libc: ctypes.CDLL, fd: int) -> None:
        self._libc = libc
        self._fd = fd

    def fileno(self) -> int:
        """The descriptor (readable when events are queued; -1 once closed)."""
        return self._fd

    def add_watch(self, path: str, mask: int) -> int:
        """Watch ``path`` for the events in ``mask``; the watch descriptor (the same one for a
        path already watched, whose mask is then replaced). Raises ``OSError``."""
        wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask))
        if wd < 0:
            code = ctypes.get_errno()
            raise OSError(code, os.strerror(code), path)
        return wd

    def rm_watch(self, wd: int) -> None:
        """Stop watching ``wd``; a watch the kernel already dropped (its file is gone) is
        no error."""
        if self._libc.inotify_rm_watch(self._fd, wd) < 0:
            code = ctypes.get_errno()
            if code != errno.EINVAL:
                raise OSError(code, os.strerror(code))

    def read(self) -> list[InotifyEvent]:
        """The events queued now (none if there are none: it never blocks)."""
        try:
            data = os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return []
        return parse_events(data)

    def close(self) -> None:
        """Close the descriptor, and every watch with it (idempotent)."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


def open_inotify() -> Inotify:
    """A new non-blocking :class:`Inotify`. Raises ``OSError`` where the platform does not
    give one (``ENOSYS``: not Linux, or no such libc call; ``EMFILE``: ``max_user_instances``
    reached)."""
    if not sys.platform.startswith("linux"):
        raise OSError(errno.ENOSYS, f"inotify is Linux-only (this is {sys.platform})")
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        init = libc.inotify_init1
    except (OSError, AttributeError) as exc:
        raise OSError(errno.ENOSYS, f"no inotify in the C library: {exc}") from exc
    init.argtypes = [ctypes.c_int]
    libc.inotify_add_watch.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32]
    libc.inotify_rm_watch.argtypes = [ctypes.c_int, ctypes.c_int]
    fd = int(init(_IN_NONBLOCK | _IN_CLOEXEC))
    if fd < 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    return Inotify(libc, fd)
