"""When the file agent's loop looks at what: whether a turn scans the globs, which open files
it reads, whether it commits and saves, and how long it then waits.

Without inotify every open file is read every :data:`IDLE_POLL_S`, and a file that had new
lines in the last :data:`ACTIVE_S` every :data:`ACTIVE_POLL_S` (a line appended to a busy file
waits about 10 ms, without polling a thousand quiet files 100 times a second); the globs are
scanned every ``scan_interval_ms``.

With inotify (:class:`~kafkalog.ship.watch.ChangeWatcher` active) a watched file is read when
it changes, and the wait ends at the event (but a turn that read new lines is followed by
one at least :data:`GATHER_S` later: a line appended to a quiet file is read at once, while
the lines of a busy one gather into fewer reads and submits); every
open file is still read every
:data:`SWEEP_S` (writes inotify does not report: through ``mmap``, or on network file
systems), and the globs are still scanned every ``scan_interval_ms`` times
:data:`INOTIFY_SCAN_FACTOR` (a watched directory's change asks for a scan at once). A file
inotify could not watch is polled as without it. An overflowed event queue reads everything.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping

from kafkalog.ship.tracking import FileKey, Follow
from kafkalog.ship.watch import Changes, ChangeWatcher

# How often every open file is looked at (read, truncation, multi-line timeout), without
# inotify; and how often commits, closes and the files inotify does not watch are seen to.
IDLE_POLL_S = 0.1
ACTIVE_POLL_S = 0.01
ACTIVE_S = 1.0
# At 1,000 lines a second, 3 ms gave p50 5 ms / p99 11 ms at 8% of a core, 10 ms 11 / 43 ms
# at 5% (benchmarks/ship_steady.py); 5 ms is the pipeline's default linger_ms.
GATHER_S = 0.005
SWEEP_S = 1.0
INOTIFY_SCAN_FACTOR = 10


@dataclasses.dataclass(frozen=True)
class Turn:
    """What one turn of the loop does."""

    now: float
    scan: bool
    every: bool  # commit, read the polled files
    sweep: bool  # read every open file, close what is finished
    save: bool
    changes: Changes


class Cadence:
    """The loop's timers and its hot files: those to read next turn whatever happens (new
    lines last turn, a backlog to offer, or new lines of late in a polled file)."""

    def __init__(self, watcher: ChangeWatcher, *, scan_interval_s: float,
                 commit_interval_s: float) -> None:
        self._watcher = watcher
        self._sweep_s = SWEEP_S if watcher.active else IDLE_POLL_S
        self._scan_s = self._save_s = 0.0
        self.reconfigure(scan_interval_s=scan_interval_s, commit_interval_s=commit_interval_s)
        self._next_all = self._next_sweep = self._next_save = 0.0
        self.hot: set[FileKey] = set()
        self._waiting: set[FileKey] = set()  # an unfinished multi-line event times out
        self._lines_at = float("-inf")  # when a turn last read new lines of a watched file

    def reconfigure(self, *, scan_interval_s: float, commit_interval_s: float) -> None:
        """Take these intervals from now on, and scan at the next turn (a reload: new inputs
        may have files to find)."""
        factor = INOTIFY_SCAN_FACTOR if self._watcher.active else 1
        self._scan_s, self._save_s = scan_interval_s * factor, commit_interval_s
        self._next_scan = 0.0

    def turn(self, now: float) -> Turn:
        """This turn's work, with the changes inotify told of since the last one."""
        changes = self._watcher.changes()
        turn = Turn(now=now, scan=changes.rescan or now >= self._next_scan,
                    every=now >= self._next_all, sweep=changes.overflow or now >= self._next_sweep,
                    save=now >= self._next_save, changes=changes)
        if turn.scan:
            self._next_scan = now + self._scan_s
        if turn.every:
            self._next_all = now + IDLE_POLL_S
        if turn.sweep:
            self._next_sweep = now + self._sweep_s
        if turn.save:
            self._next_save = now + self._save_s
        return turn

    def due(self, turn: Turn, follows: Mapping[FileKey, Follow]) -> list[FileKey]:
        """The files to read this turn (hot ones are hot again only if :meth:`read` says)."""
        if turn.sweep:
            due = set(follows)
        else:
            due = self.hot | turn.changes.modified
            if turn.every:  # set operations: no turn of Python over a thousand quiet files
                due |= self._watcher.unwatched(follows.keys())
                due |= self._waiting
        if turn.every or turn.sweep:
            self._waiting = set()  # each file read is waiting again if read() says so
        self.hot = set()
        return list(due)

    def read(self, key: FileKey, follow: Follow, had_lines: bool, now: float) -> None:
        """``follow`` was read this turn (and ``had_lines``, or part of its backlog went in).

        A watched file read to its end is not read again until inotify tells of more: the
        appends made since the read was done are in the next turn's changes."""
        if follow.joiner.pending_start is not None:
            self._waiting.add(key)
        if follow.backlog is not None:
            self.hot.add(key)
        elif self._watcher.watches(key):
            if had_lines:
                self._lines_at = now
                if not follow.tail.at_eof():
                    self.hot.add(key)  # one read takes at most a few MiB: more is waiting
        elif had_lines or follow.last_data > now - ACTIVE_S:
            self.hot.add(key)

    def wait(self, stop: threading.Event, now: float) -> None:
        """Idle until the next turn: a short poll while files are hot, else until the next
        look at every file (an inotify event ends the wait sooner, unless lines were read
        less than GATHER_S ago: then more lines gather until then)."""
        gather_s = self._lines_at + GATHER_S - now
        if gather_s > 0 and self._watcher.active:
            stop.wait(gather_s)
            return
        self._watcher.wait(stop, ACTIVE_POLL_S if self.hot else self._next_all - now)
