"""The bounded in-memory queue between ``submit()`` (or ``emit()``) and the worker thread.

It is bounded by record count and by bytes, applies the overflow policy when full, and wakes
the worker once per batch rather than once per record. Records are numbered as they are
accepted (1, 2, 3...). The queue hands them on oldest first, and whoever removes records from
its head learns the number of the first one, so that the pipeline can say what became of each
(see :mod:`kafkalog.pipeline.outcome`) without storing a number per record.
"""

from __future__ import annotations

import sys
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate, islice, repeat, starmap
from operator import add, itemgetter
from typing import Any

# One queued record: (value, key), as the transports take it. A plain tuple: it is built on
# the caller's thread.
Entry = tuple[bytes, "bytes | None"]

# Bytes a record costs against ``queue_max_bytes`` beyond its value and key: the tuple and the
# bytes objects themselves, so that a flood of tiny records is bounded too.
ENTRY_OVERHEAD_BYTES = 100

# A ``_wake_at`` no queue reaches: the worker is not woken again until the queue shrinks.
_NEVER = sys.maxsize

# Takes the oldest queued records (oldest first), the number of the first one, and whether the
# worker holds a batch taken from the queue (older still). Called with the queue's lock held, so
# that records overflowing from several threads reach it in the order they were accepted.
OverflowSink = Callable[[list[Entry], int, bool], None]
# Told the numbers of the records that policy ``drop_oldest`` dropped; called without the lock.
DropListener = Callable[[range], None]


def entry_size(entry: Entry) -> int:
    """Bytes ``entry`` counts for against ``queue_max_bytes``."""
    key = entry[1]
    return len(entry[0]) + (len(key) if key is not None else 0) + ENTRY_OVERHEAD_BYTES


class RecordQueue:
    """A FIFO of encoded records, bounded by ``max_records`` and ``max_bytes``.

    ``accepted`` records have entered, ``removed`` have left (taken by the worker, dropped, or
    handed to the overflow sink), so the record at the head is number ``removed + 1``. While
    the worker holds a batch taken from the queue, ``inflight_start`` is the ``removed`` count
    that batch started at.
    """

    def __init__(
        self,
        *,
        max_records: int,
        max_bytes: int,
        batch_bytes: int,
        policy: str,
        block_timeout_s: float,
        overflow_sink: OverflowSink | None = None,
        on_drop: DropListener | None = None,
    ) -> None:
        self._max_records = max_records
        self._max_bytes = max_bytes
        self._batch_bytes = batch_bytes
        self._policy = policy
        self._block_timeout_s = block_timeout_s
        self._overflow_sink = overflow_sink
        self._on_drop = on_drop
        self._items: deque[Entry] = deque()
        self._bytes = 0
        self._lock = threading.Lock()
        self._not_full = threading.Condition(self._lock)
        #: Set when the worker should look at the queue: it became non-empty, a batch filled,
        #: or someone asked for a flush.
        self.wakeup = threading.Event()
        #: put() sets ``wakeup`` when the queued bytes reach this: 0 while the queue is empty
        #: (the first record wakes the worker), then ``batch_bytes`` (a batch has filled),
        #: then _NEVER until records leave the queue (see _rearm()). One comparison per record.
        self._wake_at = 0
        self.accepted = 0
        self.removed = 0
        self.inflight_start: int | None = None
        self.dropped_newest = 0
        self.dropped_oldest = 0
        self.overflowed = 0
        self.blocked = 0

    # -- caller side -------------------------------------------------------------------------

    def put(self, entry: Entry) -> int:
        """Append ``entry``; apply the overflow policy if full. Returns the record's number
        (from 1), or 0 if it was not accepted.

        Never blocks longer than ``block_timeout_s`` (policy ``block``), and not at all otherwise.
        """
        # entry_size() inlined, and attributes read once: this runs on every log call.
        key = entry[1]
        size = len(entry[0]) + (len(key) if key is not None else 0) + ENTRY_OVERHEAD_BYTES
        items = self._items
        lock = self._lock
        dropped: range | None = None
        # acquire/release rather than ``with``: less than half the cost on CPython 3.11.
        lock.acquire()
        try:
            total = self._bytes + size
            if len(items) >= self._max_records or total > self._max_bytes:
                dropped, fits = self._make_room(size)
                if not fits:
                    handed_over = self._overflow(entry, size)
                    if handed_over is not None:
                        return handed_over
                total = self._bytes + size  # room was made: the queue has changed
            items.append(entry)
            self._bytes = total
            self.accepted = number = self.accepted + 1
            # Wake the worker once per batch: when the queue stops being empty, and when it
            # crosses a batch's worth of bytes.
            wake = total >= self._wake_at
            if wake:
                self._wake_at = self._batch_bytes if total < self._batch_bytes else _NEVER
        finally:
            lock.release()
            if dropped is not None and self._on_drop is not None:
                self._on_drop(dropped)
        if wake:
            self.wakeup.set()
        return number

    def _rearm(self) -> None:
        """With the lock held, after records left the queue: when put() wakes the worker next."""
        if not self._items:
            self._wake_at = 0
        else:
            self._wake_at = self._batch_bytes if self._bytes < self._batch_bytes else _NEVER

    def _fits(self, size: int) -> bool:
        return len(self._items) < self._max_records and self._bytes + size <= self._max_bytes

    def _make_room(self, size: int) -> tuple[range | None, bool]:
        """With the lock held: free space per policy. The numbers of the records dropped to
        make it (policy ``drop_oldest``), and whether ``size`` now fits."""
        if self._policy == "drop_oldest":
            first = self.removed + 1
            while self._items and not self._fits(size):
                old = self._items.popleft()
                self._bytes -= entry_size(old)
                self.removed += 1
                self.dropped_oldest += 1
            self._rearm()
            dropped = range(first, self.removed + 1)
            return (dropped or None), self._fits(size)
        if self._policy == "block":
            self.blocked += 1
            # (Also ends once refuse_more() made room impossible: no point waiting on then.)
            self._not_full.wait_for(lambda: self._fits(size) or not self._max_records,
                                    self._block_timeout_s)
            return None, self._fits(size)
        return None, False

    def _overflow(self, entry: Entry, size: int) -> int | None:
        """With the lock held: the record does not fit. None once room is made for it at the
        tail; else its number if the sink took the record itself, or 0 if it was refused
        (counted in ``dropped_newest``).

        With an overflow sink (policy ``spill``) the *oldest* queued records go to it, at
        least a batch's worth, so that the new record takes its place at the tail: a record
        never overtakes an older one on its way to Kafka (the spill is replayed before the
        queue). Without one, the new record is refused.
        """
        sink = self._overflow_sink if self._policy == "spill" else None
        if sink is None:
            self.dropped_newest += 1
            return 0
        first = self.removed + 1
        oldest: list[Entry] = []
        freed = 0
        items = self._items
        while items and (not self._fits(size) or freed < self._batch_bytes):
            old = items.popleft()
            old_size = entry_size(old)
            self._bytes -= old_size
            freed += old_size
            oldest.append(old)
        in_hand = self.inflight_start is not None
        if not self._fits(size):  # larger than the whole queue: it goes to the sink as well
            oldest.append(entry)
            self.accepted += 1
            self.removed += len(oldest)
            self._rearm()
            sink(oldest, first, in_hand)
            self.overflowed += len(oldest)
            return self.accepted
        self.removed += len(oldest)
        self._rearm()
        # Handed over either way: the sink accounts for a record it cannot keep.
        sink(oldest, first, in_hand)
        self.overflowed += len(oldest)
        return None

    # -- worker side -------------------------------------------------------------------------

    def take(self, max_records: int, max_bytes: int) -> list[Entry]:
        """Remove up to ``max_records``/``max_bytes`` from the head and mark them in flight:
        the first is number ``inflight_start + 1``.

        The worker must call :meth:`batch_done` once every taken record is resolved.
        """
        with self._lock:
            items = self._items
            if not items:
                return []
            self.inflight_start = self.removed
            if len(items) <= max_records and self._bytes <= max_bytes:
                batch = list(items)
                items.clear()
                self._bytes = 0
            else:
                batch, taken_bytes = _take_head(items, max_records, max_bytes)
                self._bytes -= taken_bytes
            self.removed += len(batch)
            self._rearm()
            self._not_full.notify_all()
            return batch

    def batch_done(self) -> None:
        """Every record of the batch in flight is resolved."""
        with self._lock:
            self.inflight_start = None

    def refuse_more(self) -> None:
        """The pipeline is closing: from now on every record is refused and counted in
        ``dropped_newest``, as a full queue under ``drop_newest`` does (what is queued already
        is still taken). A caller that passed the pipeline's closed check just before close()
        would otherwise queue a record after the worker's last take: never resolved, nor
        counted. put() pays nothing for this: it sees a queue that is always full."""
        with self._lock:
            self._max_records = 0
            self._policy = "drop_newest"
            self._not_full.notify_all()  # a put() blocked for room gives up now

    # -- progress ----------------------------------------------------------------------------

    def depth(self) -> tuple[int, int]:
        """(records, bytes) currently queued."""
        with self._lock:
            return len(self._items), self._bytes

    def counters(self) -> dict[str, Any]:
        """A snapshot of the queue's counters."""
        with self._lock:
            return {
                "enqueued": self.accepted,
                "dropped_newest": self.dropped_newest,
                "dropped_oldest": self.dropped_oldest,
                "overflowed": self.overflowed,
                "blocked": self.blocked,
                "queue_depth": len(self._items),
                "queue_bytes": self._bytes,
            }

    # -- many records at once --------------------------------------------------------------

    def put_many(self, entries: Sequence[Entry]) -> tuple[int, int]:
        """Append ``entries`` in order, as :meth:`put` would one by one, stopping at the first
        one that is not accepted. Returns ``(count, last)``: how many were accepted (a prefix)
        and the number of the last one (0 if none).

        Whatever fits is appended under one lock with a few C-level calls; only a record that
        meets a full queue goes through :meth:`put` (its overflow policy, its wait). The numbers
        are consecutive unless another thread puts records at the same time.
        """
        total = len(entries)
        if not total:
            return 0, 0
        values = map(len, map(_VALUE, entries))
        keys = (len(k) if k is not None else 0 for k in map(_KEY, entries)) \
            if any(map(_KEY, entries)) else repeat(0)
        sizes = list(map(add, map(add, values, keys), repeat(ENTRY_OVERHEAD_BYTES, total)))
        ends = list(accumulate(sizes))  # ends[i]: the bytes of entries[: i + 1]
        done = 0
        last = 0
        for _ in range(total):  # each turn accepts at least one record, or stops
            taken, number = self._append_fitting(entries, ends, done)
            if taken:
                done += taken
                last = number
            if done == total:
                break
            number = self.put(entries[done])  # the queue is full: the overflow policy applies
            if not number:
                break
            done += 1
            last = number
        return done, last

    def _append_fitting(self, entries: Sequence[Entry], ends: list[int],
                        start: int) -> tuple[int, int]:
        """Append as many of ``entries[start:]`` as fit now, in one go; how many, and the
        number of the last one."""
        lock = self._lock
        base = ends[start - 1] if start else 0
        lock.acquire()
        try:
            room = self._max_bytes - self._bytes
            count = min(bisect_right(ends, base + room, lo=start) - start,
                        self._max_records - len(self._items))
            if count <= 0:
                return 0, 0
            stop = start + count
            self._items.extend(islice(entries, start, stop) if start or stop < len(entries)
                               else entries)
            self._bytes = total = self._bytes + ends[stop - 1] - base
            self.accepted = last = self.accepted + count
            wake = total >= self._wake_at
            if wake:
                self._wake_at = self._batch_bytes if total < self._batch_bytes else _NEVER
        finally:
            lock.release()
        if wake:
            self.wakeup.set()
        return count, last


_VALUE = itemgetter(0)
_KEY = itemgetter(1)


def _take_head(items: deque[Entry], max_records: int, max_bytes: int) -> tuple[list[Entry], int]:
    """Remove the longest head of ``items`` within ``max_records`` and ``max_bytes`` (at
    least one record); it and its bytes. Sizes, sums and removal run in C (no Python call per
    record unless records have keys)."""
    head = list(islice(items, max_records))
    if any(map(_KEY, head)):
        sizes: Iterable[int] = map(entry_size, head)
    else:
        sizes = map(add, map(len, map(_VALUE, head)), repeat(ENTRY_OVERHEAD_BYTES))
    ends = list(accumulate(sizes))
    count = max(1, bisect_right(ends, max_bytes))
    batch = list(starmap(items.popleft, repeat((), count)))
    return batch, ends[count - 1]
