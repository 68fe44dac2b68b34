"""Reading a topic with kafka-python's consumer, for ``kafkalog tail`` (and the sink to come).

The consumer side of kafkalog: the handler and the pipeline never import this.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kafka
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from kafkalog.errors import KafkalogError


@dataclass(frozen=True)
class ConsumedRecord:
    """One record read from Kafka."""

    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes


@dataclass(frozen=True)
class StartAt:
    """Where reading starts in a partition the group has no committed offset for.

    ``since_ms`` (a timestamp, ms since the epoch) wins over ``beginning``, which wins over
    ``last`` (that many records before the end); with none of them, reading starts at the end.
    """

    beginning: bool = False
    since_ms: int | None = None
    last: int | None = None


# How long a reader waits for a topic to show up in metadata before calling it missing.
TOPIC_METADATA_WAIT_S = 3.0


# A commit or a group leave that Kafka does not answer in this long is given up: a commit not
# made only means those records print again next time, and kafka-python's own bound (the
# request timeout) kept `kafkalog tail` from exiting for 30 s or more after Ctrl-C when the
# group was rebalancing.
_GROUP_CALL_TIMEOUT_MS = 5000


def consumer_request_timeout_ms(timeout_ms: int) -> int:
    """A consumer's request timeout: kafka-python insists on fetch_max_wait_ms (500) <
    request_timeout_ms < connections_max_idle_ms (540 s)."""
    return min(max(timeout_ms, 1000), 120_000)


class TopicMissingError(KafkalogError):
    """The topic does not exist (or has no partitions yet)."""


class TopicReader:
    """Reads every partition of a topic with ``kafka.KafkaConsumer``, for ``kafkalog tail``.

    Without ``group`` it assigns itself every partition and never commits. With ``group`` it
    joins that consumer group (subscribes) and starts where the group left off; partitions
    with no committed offset start at ``start``. Offsets are committed only by
    :meth:`commit`, which the caller invokes after it has printed the records.
    """

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        topic: str,
        *,
        group: str | None,
        start: StartAt,
        client_config: Mapping[str, Any] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        self.topic = topic
        self._group = group
        self._start = start
        self._timeout_s = timeout_s
        self._pending: set[Any] = set()  # assigned, position not decided yet (paused)
        self._ends: dict[int, int] = {}  # partition -> end offset when it was assigned
        self._assigned_once = False
        timeout_ms = int(timeout_s * 1000)
        self._consumer = kafka.KafkaConsumer(
            bootstrap_servers=list(bootstrap_servers),
            group_id=group,
            enable_auto_commit=False,
            # Only reached for a partition we did not seek; the listener pauses new ones.
            auto_offset_reset="earliest" if start.beginning else "latest",
            request_timeout_ms=consumer_request_timeout_ms(timeout_ms),
            bootstrap_timeout_ms=timeout_ms,
            **dict(client_config or {}),
        )
        try:
            self._open()
        except BaseException:
            self._consumer.close()
            raise

    def _open(self) -> None:
        consumer = self._consumer
        deadline = time.monotonic() + min(self._timeout_s, TOPIC_METADATA_WAIT_S)
        partitions = consumer.partitions_for_topic(self.topic)
        while not partitions and time.monotonic() < deadline:
            # Metadata of a topic created a moment ago can lag; polled, bounded.
            time.sleep(0.2)
            partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise TopicMissingError(f"topic {self.topic!r} does not exist")
        if self._group is None:
            tps = [kafka.TopicPartition(self.topic, p) for p in sorted(partitions)]
            consumer.assign(tps)
            self._place(tps)
        else:
            reader = self

            class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
                # kafka-python fails the join if a callback blocks on the network, so new
                # partitions are only paused here and placed by the next poll().
                def on_partitions_revoked(self, revoked: Any) -> None:
                    reader._pending.difference_update(revoked)

                def on_partitions_assigned(self, assigned: Any) -> None:
                    reader._assigned_once = True
                    if assigned:
                        consumer.pause(*assigned)
                        reader._pending.update(assigned)

            consumer.subscribe([self.topic], listener=_Listener())

    def _place(self, tps: Sequence[Any]) -> None:
        """Seek each partition to where reading starts and note its end offset."""
        consumer = self._consumer
        timeout_ms = int(self._timeout_s * 1000)
        ends = consumer.end_offsets(list(tps), timeout_ms=timeout_ms)
        for tp in tps:
            self._ends[tp.partition] = int(ends[tp])
        todo = list(tps)
        if self._group is not None:
            todo = []
            for tp in tps:
                committed = consumer.committed(tp, timeout_ms=timeout_ms)
                if committed is None:
                    todo.append(tp)
                else:
                    consumer.seek(tp, committed)
        if not todo:
            return
        start = self._start
        if start.since_ms is not None:
            found = consumer.offsets_for_times(
                {tp: start.since_ms for tp in todo}, timeout_ms=timeout_ms
            )
            for tp in todo:
                hit = found.get(tp)
                consumer.seek(tp, hit.offset if hit is not None else ends[tp])
        elif start.beginning:
            consumer.seek_to_beginning(*todo)
        elif start.last:
            firsts = consumer.beginning_offsets(todo, timeout_ms=timeout_ms)
            for tp in todo:
                consumer.seek(tp, max(int(firsts[tp]), int(ends[tp]) - start.last))
        else:
            consumer.seek_to_end(*todo)

    def poll(self, timeout_s: float) -> list[ConsumedRecord]:
        """The records that arrived within ``timeout_s``, in offset order per partition."""
        consumer = self._consumer
        batches = consumer.poll(timeout_ms=int(timeout_s * 1000))
        if self._pending:
            pending = list(self._pending)
            self._place(pending)
            consumer.resume(*pending)
            self._pending.clear()
        out: list[ConsumedRecord] = []
        for records in batches.values():
            out.extend(
                ConsumedRecord(r.partition, r.offset, r.timestamp, r.key, r.value)
                for r in records
            )
        return out

    def caught_up(self) -> bool:
        """True once every assigned partition was read up to its end offset at assignment."""
        consumer = self._consumer
        if self._pending or (self._group is not None and not self._assigned_once):
            return False
        for tp in consumer.assignment():
            end = self._ends.get(tp.partition)
            if end is None or consumer.position(tp) < end:
                return False
        return True

    def commit(self, next_offsets: Mapping[int, int]) -> None:
        """Store, for the group, the offset to resume each partition from (no group: no-op)."""
        if self._group is None or not next_offsets:
            return
        self._consumer.commit(
            {
                kafka.TopicPartition(self.topic, partition): OffsetAndMetadata(offset, "", -1)
                for partition, offset in next_offsets.items()
            },
            timeout_ms=_GROUP_CALL_TIMEOUT_MS,
        )

    def close(self) -> None:
        """Leave the group and close the connections."""
        with contextlib.suppress(Exception):
            self._consumer.close(timeout_ms=_GROUP_CALL_TIMEOUT_MS)


