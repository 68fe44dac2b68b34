"""Adoption: finding the segments a dead writer left for a topic, so a live store replays them.

A writer is dead when its lock file can be locked. Taking that lock also makes the adoption
exclusive: two live stores never replay the same segment. The lock stays held (each adopted
segment keeps its descriptor) until that writer's last segment is replayed or the store closes.
"""

from __future__ import annotations

import heapq
import os
from collections.abc import Callable
from pathlib import Path

from kafkalog.spill.files import try_lock_writer
from kafkalog.spill.format import LOCK_SUFFIX, NAME_RE, SEGMENT_SUFFIX, created_of, header_of
from kafkalog.spill.segments import SpillSegment


def find_orphans(
    directory: Path, topic: str, own_writer: str, on_unsafe: Callable[[list[str]], None]
) -> list[SpillSegment]:
    """The segments of ``topic`` whose writers are dead, their locks taken, in replay order:
    writers interleaved by creation time, each one's segments in the order it wrote them.

    Entries named like segments that are not regular files go to ``on_unsafe``, unopened.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return []
    by_writer: dict[str, list[Path]] = {}
    unsafe: list[str] = []
    for entry in entries:
        match = NAME_RE.match(entry.name)
        if not match or match["writer"] == own_writer:
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
            by_writer.setdefault(match["writer"], []).append(directory / entry.name)
    if unsafe:
        on_unsafe(unsafe)
    groups: list[list[SpillSegment]] = []  # per writer, in its sequence order
    for writer, paths in sorted(by_writer.items()):
        lock_fd = try_lock_writer(directory / f"{writer}{LOCK_SUFFIX}")
        if lock_fd is None:
            continue
        group = _segments_of(sorted(paths), topic, lock_fd)
        if group:
            groups.append(group)
        else:
            os.close(lock_fd)
    # Each writer's segments stay in the order it wrote them even if its wall clock stepped
    # back; only different writers are ordered by creation time.
    return list(heapq.merge(*groups, key=lambda s: created_of(s.path)))


def _segments_of(paths: list[Path], topic: str, lock_fd: int) -> list[SpillSegment]:
    """The segments among ``paths`` that hold ``topic``'s records."""
    group: list[SpillSegment] = []
    for path in paths:
        header = header_of(path)
        if header is None or header.topic != topic:
            continue  # another topic's records, or not a segment: leave it alone
        try:
            size = path.stat().st_size
        except OSError:
            continue
        group.append(SpillSegment(path, records=-1, bytes=size, adopted_lock=lock_fd))
    return group
