"""The registry entries of the files the agent has not open ("resting": closed as inactive,
or of inputs no longer configured), and when they are forgotten: once the file is gone for
good, so that a host whose logs are rotated and deleted does not grow its registry without
end.

An entry is dropped only when all of these hold:

- no scan of the inputs' globs has found its identity, and no file with its (device, inode)
  is at its last path or anywhere in that path's directory (where rotation renames files);
- that has been so at every check for ``grace_s`` (a file moved away and back meanwhile keeps
  its entry);
- when this agent last saw the file, its committed offset was its whole length: nothing of it
  was left to ship. An entry whose file was last seen with bytes beyond its offset is kept,
  in case the file comes back. An entry of a file already gone when the agent started has
  nothing it could still ship, and is dropped after the grace.

A wrongly dropped entry (the file comes back later from somewhere the agent does not look)
costs duplicates, never a loss: that file is read again from its start.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Collection, Iterable
from typing import Final

from kafkalog.diagnostics import log
from kafkalog.ship.registry import FileState
from kafkalog.ship.tracking import FileKey

__all__ = ["PRUNE_CHECK_S", "PRUNE_GRACE_S", "RestingFiles"]

#: How long an entry's file must stay gone before the entry is dropped.
PRUNE_GRACE_S: Final = 300.0
#: How often the resting entries are checked (a stat each; a directory listing for the few
#: whose file is not where it was).
PRUNE_CHECK_S: Final = 10.0
# A directory with more entries than this is not searched: its files count as present.
_MAX_DIR_ENTRIES: Final = 20_000


class RestingFiles(dict[FileKey, FileState]):
    """The committed states of the files not open now, by (device, inode); :meth:`prune`
    forgets those whose file is gone for good (see the module's docstring). ``clock`` is
    monotonic seconds. Not thread-safe: the agent's loop is its only user."""

    def __init__(self, *, grace_s: float = PRUNE_GRACE_S, check_every_s: float = PRUNE_CHECK_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.grace_s = grace_s
        self.check_every_s = check_every_s
        self._clock = clock
        self._next_check = clock()
        # key -> when (clock) its file was first found missing
        self._missing_since: dict[FileKey, float] = {}
        # key -> whether its offset covered the whole file when it was last seen
        self._complete: dict[FileKey, bool] = {}
        #: Entries dropped so far.
        self.pruned = 0

    def add_all(self, states: Iterable[FileState]) -> None:
        """Add ``states`` (a loaded registry's), each under its (device, inode)."""
        for state in states:
            self[(state.dev, state.ino)] = state

    def prune(self, seen: Collection[FileKey]) -> int:
        """Drop the entries whose file is gone for good; ``seen`` holds the identities the
        last scan found. Returns how many were dropped (0 between checks)."""
        now = self._clock()
        if now < self._next_check:
            return 0
        self._next_check = now + self.check_every_s
        listings: dict[str, list[os.DirEntry[str]] | None] = {}
        drop = []
        for key, state in self.items():
            if self._present(key, state, seen, listings):
                self._missing_since.pop(key, None)
                continue
            since = self._missing_since.setdefault(key, now)
            if now - since >= self.grace_s and self._complete.get(key, True):
                drop.append(key)
        for key in drop:
            state = self.pop(key)
            log.info("kafkalog ship: forgetting %s (device %d, inode %d, offset %d): gone for "
                     "%.0f s", state.path, state.dev, state.ino, state.offset,
                     now - self._missing_since[key])
        self.pruned += len(drop)
        for table in (self._missing_since, self._complete):  # entries reopened or dropped
            for key in [k for k in table if k not in self]:
                del table[key]
        return len(drop)

    def _present(self, key: FileKey, state: FileState, seen: Collection[FileKey],
                 listings: dict[str, list[os.DirEntry[str]] | None]) -> bool:
        """Whether a file of this identity is still there; notes whether it is shipped whole
        when it is at its last path."""
        try:
            st = os.stat(state.path)  # through a link too (an input that follows symlinks)
        except OSError:
            pass
        else:
            if (st.st_dev, st.st_ino) == key:
                self._complete[key] = st.st_size <= state.offset
                return True
        if key in seen:  # renamed within the globs
            return True
        return self._in_directory(key, os.path.dirname(state.path) or ".", listings)

    def _in_directory(self, key: FileKey, directory: str,
                      listings: dict[str, list[os.DirEntry[str]] | None]) -> bool:
        """Whether ``directory`` holds a file of identity ``key`` (a rotated copy, say)."""
        if directory not in listings:
            try:
                with os.scandir(directory) as it:
                    read: list[os.DirEntry[str]] = []
                    for each in it:
                        read.append(each)
                        if len(read) > _MAX_DIR_ENTRIES:
                            break
                listings[directory] = read
            except FileNotFoundError:
                listings[directory] = []  # the directory itself is gone
            except OSError:
                listings[directory] = None  # can not look: count the file as present
        entries = listings[directory]
        if entries is None or len(entries) > _MAX_DIR_ENTRIES:
            return True
        ino = key[1]
        # The directory's inode numbers first (no stat); then each entry's own, because on
        # some file systems (overlayfs) the two differ.
        candidates = [e for e in entries if e.inode() == ino] or entries
        for entry in candidates:
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (st.st_dev, st.st_ino) == key:
                return True
        return False
