"""What the agent knows about one followed file: where reading is, what is in flight, and the
offset it may commit.
"""

from __future__ import annotations

import dataclasses
import os
from collections import deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from kafkalog.ship.building import Built
from kafkalog.ship.files import TailedFile
from kafkalog.ship.multiline import Joiner
from kafkalog.ship.registry import FileState

#: A file's identity as the agent keys it: (device, inode).
FileKey = tuple[int, int]

def open_tail(path: Path, *, offset: int, input: str, follow_symlinks: bool) -> TailedFile | None:
    """Open ``path`` for following from ``offset`` (-1: its current end); None if it is gone.

    The end of a file is rounded back to the start of its last, incomplete line, so that
    ``read_from = "tail"`` never ships half a line.
    """
    try:
        tail = TailedFile.open(path, input=input, follow_symlinks=follow_symlinks)
    except OSError:
        return None
    try:
        size = os.fstat(tail.fileno()).st_size
        if offset < 0:
            offset = _line_start_before(tail.fileno(), size)
        elif offset > size:
            offset = 0  # shorter than what was committed: truncated while the agent was away
    except OSError:
        tail.close()
        return None
    tail.read_offset = tail.line_offset = offset
    return tail


def _line_start_before(fd: int, size: int) -> int:
    """The offset just past the last newline before ``size`` (0 if there is none)."""
    pos = size
    while pos > 0:
        start = max(0, pos - 65536)
        chunk = os.pread(fd, pos - start, start)
        newline = chunk.rfind(b"\n")
        if newline >= 0:
            return start + newline + 1
        pos = start
    return 0


@dataclasses.dataclass
class Follow:
    """One file the agent follows."""

    tail: TailedFile
    input_name: str
    joiner: Joiner
    source: str  # the stable part of its records' ids
    committed: int  # every byte before it is resolved (delivered, spilled, dead-lettered, dropped)
    truncations: int = 0
    last_data: float = 0.0
    # (record number, file offset just past its event), in submission order.
    pending: deque[tuple[int, int]] = dataclasses.field(default_factory=deque)
    # Records built but not accepted yet (the queue was full): submitted first next time.
    backlog: Built | None = None
    fed_end: int = -1  # the end of the last complete line given to the joiner (-1: none yet)
    gone: bool = False  # the path no longer names it: read to the end, then close

    def advance(self, resolved: int) -> bool:
        """Commit past every record numbered up to ``resolved``; True if the offset moved."""
        before = self.committed
        pending = self.pending
        while pending and pending[0][0] <= resolved:
            self.committed = pending.popleft()[1]
        if not pending and self.backlog is None and self.fed_end >= 0:
            # Everything given to the joiner is resolved, except an unfinished event.
            start = self.joiner.pending_start
            self.committed = self.fed_end if start is None else start
        self.committed = max(self.committed, before)  # never backwards (a truncation resets it)
        return self.committed != before

    def drained(self) -> bool:
        """Nothing of it is in flight, waiting, or unfinished."""
        return (not self.pending and self.backlog is None
                and self.joiner.pending_start is None)

    def renamed_to(self, path: Path) -> None:
        """The scan found it under ``path`` (the same path, or a new one after a rename)."""
        self.tail.path = path
        self.gone = False

    def state(self) -> FileState:
        """Its registry entry."""
        fid = self.tail.fid
        return FileState(dev=fid.dev, ino=fid.ino, head_hash=fid.head_hash,
                         head_len=fid.head_len, path=str(self.tail.path),
                         offset=self.committed, input=self.input_name,
                         truncations=self.truncations)


def per_file(follows: Iterable[Follow]) -> dict[str, dict[str, Any]]:
    """Each open file's lag in bytes, committed offset and input, by path (for ``stats()``)."""
    files: dict[str, dict[str, Any]] = {}
    for follow in follows:
        try:
            lag = follow.tail.lag_bytes
        except OSError:  # closed by the agent's loop meanwhile
            continue
        files[str(follow.tail.path)] = {"lag_bytes": lag, "offset": follow.committed,
                                        "input": follow.input_name}
    return files
