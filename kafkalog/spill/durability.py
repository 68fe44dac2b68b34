"""Which spilled records are durable yet, and what the store's listener still has to hear.

A tagged append is reported durable only once an fsync covering it succeeded; records lost
before replay (a failed fsync, a segment dropped for room) are reported lost, with whether
they had been reported durable before.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Protocol

# What the listener hears of lost records: (tag, count, after_durable).
LostNotice = tuple[Sequence[int] | None, int, bool]


class SpillListener(Protocol):
    """Told what became of tagged appends. Called with no lock of the store held; must be
    quick and must not call back into the store.

    A tag is the sequence of the caller's record numbers (one per record) that one
    :meth:`SpillStore.append` wrote, in order: a ``range`` as a rule.
    """

    def spill_durable(self, tag: Sequence[int]) -> None:
        """The records of ``tag`` are on disk for good: the fsync covering them succeeded
        (or ``spill_fsync`` is ``never``: then they were written)."""

    def spill_lost(self, tag: Sequence[int] | None, count: int, *, after_durable: bool) -> None:
        """``count`` records are gone from the spill before they were replayed: a failed
        fsync, or ``spill_full_policy="drop_oldest"`` removing their segment. ``tag`` is
        None for records without one (adopted from a dead writer, or appended untagged).
        ``after_durable``: they had been reported durable before."""


class DurabilityTracker:
    """The appends not yet covered by an fsync, and the notices queued for the listener.

    Not thread-safe: the store calls it with its lock held, except :meth:`notify`, which
    takes that lock itself to call the listener outside it.
    """

    def __init__(self, listener: SpillListener | None) -> None:
        self._listener = listener
        self.written = 0  # records written to replay segments, ever
        # The appends not yet covered by an fsync: (``written`` as it stood after the
        # append, its tag, its record count).
        self._undurable: deque[tuple[int, Sequence[int] | None, int]] = deque()
        self._lost_notices: list[LostNotice] = []
        self._durable_notices: list[Sequence[int]] = []

    def wrote(self, tag: Sequence[int] | None, count: int, *, durable: bool) -> None:
        """An append of ``count`` records carrying ``tag`` was written; ``durable`` if being
        written is all it takes (no fsync policy)."""
        self.written += count
        if not durable:
            self._undurable.append((self.written, tag, count))
        elif tag is not None:
            self._durable_notices.append(tag)

    def settle(self, target: int, ok: bool) -> list[int]:
        """The fsyncs covering the first ``target`` records written are done; ``ok`` if they
        all succeeded. A failed fsync may have lost the data (Linux drops the dirty pages),
        so those records are reported lost, not durable. The record count of each append
        settled."""
        settled: list[int] = []
        undurable = self._undurable
        while undurable and undurable[0][0] <= target:
            _, tag, count = undurable.popleft()
            settled.append(count)
            if tag is None:
                continue
            if ok:
                self._durable_notices.append(tag)
            else:
                self._lost_notices.append((tag, count, False))
        return settled

    def not_kept(self, tag: Sequence[int]) -> None:
        """The records of ``tag`` were never written (no room): they are lost."""
        self._lost_notices.append((tag, len(tag), False))

    def note_lost(self, tags: list[Sequence[int]], done: int, lost: int) -> None:
        """The ``lost`` records after the first ``done`` of a segment whose appends carried
        ``tags`` are gone."""
        untagged = lost
        for tag in tags:
            if done >= len(tag):
                done -= len(tag)
                continue
            gone = tag[done:]
            after_durable = not self._forget(tag)
            if done and not after_durable:
                # Its first records were replayed to Kafka before any fsync covered them:
                # they are safe, and must still be resolved.
                self._durable_notices.append(tag[:done])
            done = 0
            self._lost_notices.append((gone, len(gone), after_durable))
            untagged -= len(gone)
        if untagged > 0:  # adopted from a dead writer, or appended without a tag
            self._lost_notices.append((None, untagged, True))

    def _forget(self, tag: Sequence[int]) -> bool:
        """Stop tracking ``tag`` (its records are lost); True if the listener was never told
        they are durable."""
        for i, (_, pending, _count) in enumerate(self._undurable):
            if pending is tag:
                del self._undurable[i]
                return True
        for i, pending in enumerate(self._durable_notices):
            if pending is tag:  # durable by policy, but lost before anyone heard it
                del self._durable_notices[i]
                return True
        return False

    def notify(self, lock: AbstractContextManager[object]) -> None:
        """Tell the listener what the last calls found out: losses first, then durable tags.
        The queues are taken under ``lock`` (the store's); the listener is called without it.
        """
        if not (self._lost_notices or self._durable_notices):
            return  # read without the lock: a notice added meanwhile goes with the next call
        with lock:
            lost, self._lost_notices = self._lost_notices, []
            durable, self._durable_notices = self._durable_notices, []
        listener = self._listener
        if listener is None:
            return
        for tag, count, after_durable in lost:
            listener.spill_lost(tag, count, after_durable=after_durable)
        for tag in durable:
            listener.spill_durable(tag)
