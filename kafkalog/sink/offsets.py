"""Which offset each partition may commit: the highest contiguous acknowledged one.

Bulks complete out of order (several are in flight), but a partition's committed offset says
"everything before this is in the store". So each partition keeps its dispatched spans in
order, and the commit point moves past a span only when it and every span before it are
acknowledged. Spans, not offsets: Kafka's offsets have gaps (transaction markers, compaction),
so "contiguous" means "every record handed out before", not "every integer before".

Used from the consumer loop's thread only.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping

from kafkalog.client.group import Partition

__all__ = ["OffsetTracker", "Span"]


class Span:
    """The records of one partition in one bulk: ``first`` to ``last`` offset."""

    __slots__ = ("count", "done", "first", "first_timestamp_ms", "last", "partition")

    def __init__(self, partition: Partition, first: int, last: int, count: int,
                 first_timestamp_ms: int = 0) -> None:
        self.partition = partition
        self.first_timestamp_ms = first_timestamp_ms
        self.first = first
        self.last = last
        self.count = count
        self.done = False


class OffsetTracker:
    """Spans in dispatch order per partition, and the offsets they allow to commit."""

    def __init__(self) -> None:
        self._spans: dict[Partition, deque[Span]] = {}
        self._next: dict[Partition, int] = {}  # commit point reached, not yet committed
        self._committed: dict[Partition, int] = {}

    def dispatch(self, partition: Partition, first: int, last: int, count: int,
                 first_timestamp_ms: int = 0) -> Span:
        """Note that records ``first``..``last`` of ``partition`` went out in a bulk (the
        first one's Kafka timestamp: ``first_timestamp_ms``)."""
        span = Span(partition, first, last, count, first_timestamp_ms)
        self._spans.setdefault(partition, deque()).append(span)
        return span

    def acknowledge(self, spans: Iterable[Span]) -> None:
        """These spans are in the store (or dead-lettered): move the commit points."""
        touched: set[Partition] = set()
        for span in spans:
            span.done = True
            touched.add(span.partition)
        for partition in touched:
            queue = self._spans.get(partition)
            while queue and queue[0].done:
                self._next[partition] = queue.popleft().last + 1

    def pending(self, partition: Partition | None = None) -> int:
        """Records dispatched and not yet acknowledged (on ``partition``, or on all)."""
        queues = (self._spans.get(partition, ()),) if partition else self._spans.values()
        return sum(span.count for queue in queues for span in queue if not span.done)

    def oldest_pending(self) -> dict[Partition, int]:
        """The first offset not yet acknowledged, per partition with work in flight."""
        return {p: q[0].first for p, q in self._spans.items() if q}

    def oldest_timestamp_ms(self) -> int | None:
        """The Kafka timestamp of the oldest record not yet acknowledged (None: none)."""
        stamps = [q[0].first_timestamp_ms for q in self._spans.values() if q]
        return min(stamps) if stamps else None

    def to_commit(self) -> dict[Partition, int]:
        """The offsets to commit now: those that moved since the last :meth:`committed`."""
        return {p: n for p, n in self._next.items() if self._committed.get(p) != n}

    def committed(self, offsets: Mapping[Partition, int]) -> None:
        """Kafka took these offsets."""
        self._committed.update(offsets)

    def committed_offsets(self) -> dict[Partition, int]:
        """The offsets Kafka took last, per partition."""
        return dict(self._committed)

    def forget(self, partitions: Iterable[Partition]) -> None:
        """These partitions are no longer ours: drop their spans and commit points. A bulk
        still holding one of their spans may complete; it then changes nothing here."""
        for partition in partitions:
            self._spans.pop(partition, None)
            self._next.pop(partition, None)
            self._committed.pop(partition, None)
