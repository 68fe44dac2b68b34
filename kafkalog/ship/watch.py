"""What changed on disk since the agent last looked, told by inotify where the platform has it.

The agent scans its globs and reads its files on a timer whatever this module says; a
:class:`ChangeWatcher` only lets it act sooner. It watches the directories the globs cover
(a file created, renamed or deleted there that a glob may match asks for a scan now) and each
open file (``IN_MODIFY``: appended to, or truncated, so read it now). When the kernel's event
queue overflows, events were lost: the agent scans and reads everything. Without inotify
(another platform, or it cannot be set up) the watcher is inactive, says so once in the log,
and :meth:`ChangeWatcher.wait` only waits.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import select
import threading
from collections.abc import Sequence, Set

from kafkalog.diagnostics import RateLimitedWarnings, log
from kafkalog.ship.discovery import Discovery
from kafkalog.ship.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVE_SELF,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_ONLYDIR,
    IN_Q_OVERFLOW,
    Inotify,
    open_inotify,
)

#: A file's key as the agent has it: (device, inode).
FileKey = tuple[int, int]

DIR_MASK = (IN_CREATE | IN_MOVED_TO | IN_MOVED_FROM | IN_DELETE | IN_DELETE_SELF
            | IN_MOVE_SELF | IN_ONLYDIR)
FILE_MASK = IN_MODIFY
# A wait is cut into slices of at most this, so that the stop event is seen as soon as it was
# when the agent only slept on it between its 100 ms turns.
WAIT_SLICE_S = 0.1
# Reads of the event queue in one look, at most (each takes up to 64 KiB of events).
MAX_READS = 16


@dataclasses.dataclass
class Changes:
    """What the events since the last look ask for."""

    rescan: bool = False  # a file or directory appeared, moved or went in a watched directory
    overflow: bool = False  # events were lost: scan, and read every file
    modified: set[FileKey] = dataclasses.field(default_factory=set)


class ChangeWatcher:
    """Directory and file watches over one inotify instance (none: inactive).

    Not thread-safe: the agent's loop owns it.
    """

    def __init__(self, inotify: Inotify | None) -> None:
        self._inotify = inotify
        self._dirs: dict[str, int] = {}  # path -> watch
        self._files: dict[FileKey, int] = {}
        self._by_wd: dict[int, FileKey | str] = {}
        self._discoveries: tuple[Discovery, ...] = ()
        self._changes = Changes()
        self._warnings = RateLimitedWarnings()
        self.counters: dict[str, int] = dict.fromkeys(
            ("events", "overflows", "watch_failures"), 0)

    @classmethod
    def start(cls, enabled: bool = True) -> ChangeWatcher:
        """A watcher over a new inotify instance; an inactive one if ``enabled`` is False or
        inotify cannot be had (said once, at info level)."""
        if not enabled:
            return cls(None)
        try:
            return cls(open_inotify())
        except OSError as exc:
            log.info("kafkalog ship: no inotify (%s); finding changes by scanning only", exc)
            return cls(None)

    @property
    def active(self) -> bool:
        """Whether changes are watched (else the agent finds them by scanning only)."""
        return self._inotify is not None

    @property
    def watched_dirs(self) -> set[str]:
        """The directories watched now."""
        return set(self._dirs)

    def watches(self, key: FileKey) -> bool:
        """Whether the file ``key`` is watched (an unwatched one must be polled)."""
        return key in self._files

    def unwatched(self, keys: Set[FileKey]) -> Set[FileKey]:
        """Those of ``keys`` that are not watched (all of them when inactive)."""
        return keys - self._files.keys()

    def watch_dirs(self, discoveries: Sequence[Discovery]) -> None:
        """Watch exactly the directories ``discoveries`` look in, from now on (one that
        cannot be watched, gone or unreadable, is left to the periodic scan); a name created
        there asks for a scan only if one of them may match it."""
        inotify = self._inotify
        if inotify is None:
            return
        self._discoveries = tuple(discoveries)
        wanted = {path for each in discoveries for path in each.directories()}
        for path in [p for p in self._dirs if p not in wanted]:
            self._drop_dir(path)
        for path in wanted.difference(self._dirs):
            wd = self._add(path, DIR_MASK)
            if wd is not None:
                self._dirs[path] = wd
                self._by_wd[wd] = path

    def watch_file(self, key: FileKey, fd: int, path: str) -> None:
        """Watch the open file ``key`` for appends and truncation. The watch is taken on the
        descriptor (``/proc/self/fd``) where it can be, so a file renamed meanwhile is still
        the one watched; else on ``path``."""
        if self._inotify is None or key in self._files:
            return
        by_fd = f"/proc/self/fd/{fd}"
        wd = self._add(by_fd if os.path.exists(by_fd) else path, FILE_MASK)
        if wd is not None:
            self._files[key] = wd
            self._by_wd[wd] = key

    def unwatch_file(self, key: FileKey) -> None:
        """Stop watching ``key`` (closed by the agent)."""
        wd = self._files.pop(key, None)
        if wd is not None:
            self._drop(wd)

    def _add(self, path: str, mask: int) -> int | None:
        assert self._inotify is not None
        try:
            return self._inotify.add_watch(path, mask)
        except OSError as exc:  # gone, unreadable, or max_user_watches (ENOSPC) reached
            self.counters["watch_failures"] += 1
            if exc.errno not in (errno.ENOENT, errno.ENOTDIR):  # gone: nothing to watch there
                self._warnings.warn(f"inotify-watch:{exc.errno}", "kafkalog ship: cannot "
                                    "watch %s (%s); the periodic scan covers it", path, exc)
            return None

    def _drop_dir(self, path: str) -> None:
        wd = self._dirs.pop(path)
        if wd not in self._dirs.values():  # two names of one directory share its watch
            self._drop(wd)

    def _drop(self, wd: int) -> None:
        self._by_wd.pop(wd, None)
        if self._inotify is not None:
            try:
                self._inotify.rm_watch(wd)
            except OSError as exc:
                self._warnings.warn("inotify-rm", "kafkalog ship: inotify_rm_watch: %s", exc)

    def wait(self, stop: threading.Event, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for an event (for ``stop`` only, when inactive)."""
        inotify = self._inotify
        if inotify is None:
            stop.wait(max(timeout_s, 0.0))
            return
        select.select([inotify], [], [], min(max(timeout_s, 0.0), WAIT_SLICE_S))

    def changes(self) -> Changes:
        """What the events queued since the last call ask for (nothing when inactive)."""
        inotify = self._inotify
        if inotify is not None:
            for _ in range(MAX_READS):
                events = inotify.read()
                if not events:
                    break
                self.counters["events"] += len(events)
                for event in events:
                    self._take(event.wd, event.mask, event.name)
        changes, self._changes = self._changes, Changes()
        return changes

    def _take(self, wd: int, mask: int, name: str) -> None:
        changes = self._changes
        if mask & IN_Q_OVERFLOW:
            self.counters["overflows"] += 1
            changes.overflow = changes.rescan = True
            return
        what = self._by_wd.get(wd)
        if what is None:
            return  # a watch dropped since
        if isinstance(what, tuple):
            if mask & IN_IGNORED:  # the kernel dropped it: the file is gone for good
                self._files.pop(what, None)
                self._by_wd.pop(wd, None)
            else:
                changes.modified.add(what)
            return
        if mask & (IN_IGNORED | IN_DELETE_SELF | IN_MOVE_SELF):
            # The directory itself went (or moved: its watch no longer covers the path). Drop
            # the watch; the scan this asks for watches the path again if it is there.
            for path in [p for p, each in self._dirs.items() if each == wd]:
                del self._dirs[path]
            self._drop(wd)
            changes.rescan = True
        elif mask & IN_ISDIR or any(each.may_match(name) for each in self._discoveries):
            changes.rescan = True

    def close(self) -> None:
        """Drop every watch and the instance."""
        if self._inotify is not None:
            self._inotify.close()
        self._dirs.clear()
        self._files.clear()
        self._by_wd.clear()
