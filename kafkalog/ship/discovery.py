"""Which files an input's globs match now: regular files, less the excludes, each with its
identity. Symlinks are skipped unless the input asks to follow them.

The agent calls :meth:`Discovery.scan` periodically and compares what it finds with the files
it has open and with the registry (renamed, rotated, reused inode). A quiet file is not
opened again: its identity is kept while its ``stat`` does not change. Where the agent can
watch directories (inotify), :meth:`Discovery.directories` names those a scan looks in and
:meth:`Discovery.may_match` tells which names created there call for a scan now.
"""

from __future__ import annotations

import errno
import fnmatch
import glob
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.ship.files import FileId, file_id

# What a file's stat must still say for its identity to be reused without opening it.
_StatKey = tuple[int, int, int, int, int]


def _stat_key(st: os.stat_result) -> _StatKey:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


_MAGIC = re.compile(r"[*?[]")


def _fixed_dir(pattern: str) -> str:
    """The directory a glob names literally: its components before the first wildcard (for a
    pattern without one, its directory). Symlinks above it are the operator's own choice."""
    parts = os.path.abspath(pattern).split(os.sep)
    for index, part in enumerate(parts):
        if _MAGIC.search(part):
            return os.sep.join(parts[:index]) or os.sep
    return os.path.dirname(os.sep.join(parts)) or os.sep


def _compile_excludes(excludes: Sequence[str]) -> re.Pattern[str] | None:
    if not excludes:
        return None
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in excludes))


class Discovery:
    """The files that the glob ``paths`` match (``**`` matches any depth, ``~`` expands),
    except those an ``excludes`` glob matches: by full path, by the path as the glob produced
    it, or by base name (``*.gz`` leaves out every gzipped file).

    Unless ``follow_symlinks``, a symlink is never followed: neither a matching file that is
    one, nor a directory that a wildcard reached (the directories the glob names literally,
    before its first wildcard, are taken as they are).

    ``symlinks_skipped`` and ``unreadable`` count the matches left out by the last scan.
    """

    def __init__(
        self,
        paths: Sequence[str],
        excludes: Sequence[str] = (),
        *,
        follow_symlinks: bool = False,
        warnings: RateLimitedWarnings | None = None,
    ) -> None:
        self.paths = tuple(os.path.expanduser(p) for p in paths)
        self.excludes = tuple(os.path.expanduser(p) for p in excludes)
        self.follow_symlinks = follow_symlinks
        self.symlinks_skipped = 0
        self.unreadable = 0
        self._exclude = _compile_excludes(self.excludes)
        self._warnings = warnings or RateLimitedWarnings()
        self._known: dict[str, tuple[_StatKey, FileId]] = {}
        self._file_dirs: set[str] = set()  # the directories of the files the last scan found
        # The last component of each glob: a name created in a watched directory that none
        # of them matches cannot be a new file of this input.
        self._last_parts = tuple(os.path.basename(p) for p in self.paths)

    def excluded(self, path: str, as_globbed: str = "") -> bool:
        """Whether an exclude glob matches ``path``."""
        exclude = self._exclude
        if exclude is None:
            return False
        return any(
            exclude.match(name) is not None
            for name in (path, as_globbed or path, os.path.basename(path))
        )

    def scan(self) -> dict[Path, FileId]:
        """Regular files matching the globs now, each with its identity (absolute paths,
        symlinks skipped unless asked). A file reached under several names (hard links, or
        a followed symlink and its target) is listed once: under a name that is not a
        symlink, the first in sorted order."""
        candidates: dict[str, tuple[os.stat_result, bool]] = {}
        self.symlinks_skipped = self.unreadable = 0
        real_dirs: dict[str, str] = {}  # realpath of each directory, looked up once a scan
        for pattern in self.paths:
            fixed = _fixed_dir(pattern)
            for name in glob.iglob(pattern, recursive=True):
                path = os.path.abspath(name)
                if path in candidates or self.excluded(path, name):
                    continue
                if not self.follow_symlinks and self._through_symlink(fixed, path, real_dirs):
                    self.symlinks_skipped += 1
                    continue
                found = self._regular(path)
                if found is not None:
                    candidates[path] = found
        chosen: dict[tuple[int, int], tuple[bool, str]] = {}
        for path, (st, is_link) in candidates.items():
            here = (is_link, path)
            best = chosen.setdefault((st.st_dev, st.st_ino), here)
            if here < best:
                chosen[(st.st_dev, st.st_ino)] = here
        known: dict[str, tuple[_StatKey, FileId]] = {}
        result: dict[Path, FileId] = {}
        for is_link, path in sorted(chosen.values(), key=lambda choice: choice[1]):
            fid = self._identify(path, candidates[path][0], is_link, known)
            if fid is not None:
                result[Path(path)] = fid
        self._known = known  # forget the files gone since the last scan
        self._file_dirs = {os.path.dirname(path) for path in candidates}
        return result

    def directories(self) -> set[str]:
        """The directories a scan looks in: each glob's literal directory, those its
        wildcards reach now (not through a symlink unless they are followed), and those of
        the files the last scan found. Watching them tells of every file created, renamed or
        deleted that a scan would see (a new subdirectory shows up as one created). A literal
        directory not there yet is stood in for by its nearest existing parent, where it will
        show up as a new subdirectory."""
        found = set(self._file_dirs)
        real_dirs: dict[str, str] = {}
        for pattern in self.paths:
            fixed = _fixed_dir(pattern)
            parent = fixed
            while not os.path.isdir(parent) and parent != os.path.dirname(parent):
                parent = os.path.dirname(parent)
            found.add(parent)
            wild = os.path.dirname(os.path.abspath(pattern))
            if wild == fixed:
                continue
            for name in glob.iglob(wild + os.sep, recursive=True):
                path = os.path.abspath(name)
                if os.path.isdir(path) and (
                    self.follow_symlinks
                    or not self._through_symlink(fixed, os.path.join(path, "-"), real_dirs)
                ):
                    found.add(path)
        return found

    def may_match(self, name: str) -> bool:
        """Whether a file named ``name`` (a base name) created in one of :meth:`directories`
        might be one of this input's files: its name matches the last component of a glob.
        Never False for a file a scan would find; True for some it would not."""
        return any(
            part == "**" or fnmatch.fnmatchcase(name, part) for part in self._last_parts
        ) and not self.excluded(name)

    @staticmethod
    def _through_symlink(fixed: str, path: str, real_dirs: dict[str, str]) -> bool:
        """Whether the glob reached ``path`` through a symlinked directory below ``fixed``
        (``**`` and ``*/`` descend into them): a link planted in a log directory must not
        lead the agent to files elsewhere."""
        directory = os.path.dirname(path)
        if directory == fixed:
            return False
        for known in (fixed, directory):
            if known not in real_dirs:
                real_dirs[known] = os.path.realpath(known)
        below = os.path.relpath(directory, fixed)
        return real_dirs[directory] != os.path.normpath(os.path.join(real_dirs[fixed], below))

    def _regular(self, path: str) -> tuple[os.stat_result, bool] | None:
        """The stat of the regular file at ``path`` and whether ``path`` is a symlink to it;
        None for anything else, and for a symlink unless they are followed."""
        try:
            st = os.lstat(path)
            is_link = stat.S_ISLNK(st.st_mode)
            if is_link:
                if not self.follow_symlinks:
                    self.symlinks_skipped += 1
                    return None
                st = os.stat(path)
        except OSError:
            return None  # gone since the glob saw it, or a dangling symlink
        return (st, is_link) if stat.S_ISREG(st.st_mode) else None

    def _identify(
        self,
        path: str,
        st: os.stat_result,
        is_link: bool,
        known: dict[str, tuple[_StatKey, FileId]],
    ) -> FileId | None:
        key = _stat_key(st)
        previous = self._known.get(path)
        if previous is not None and previous[0] == key:
            known[path] = previous
            return previous[1]
        try:
            fid = file_id(path, follow_symlinks=is_link)
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                self.unreadable += 1
                self._warnings.warn(
                    f"ship-unreadable:{path}", "cannot read %s, skipping it: %s", path, exc
                )
            return None  # else gone, or swapped for a symlink or a non-file: next scan
        if (fid.dev, fid.ino) == (key[0], key[1]):
            known[path] = (key, fid)  # else replaced between stat and open: take it anew
        return fid
