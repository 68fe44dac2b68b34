"""A consumer-group member for ``kafkalog sink``: subscribe, poll, pause, commit, leave.

A thin layer over ``kafka.KafkaConsumer`` with manual commits. Every call must come from the
one thread that polls (kafka-python's consumer is not thread-safe); the sink's consumer loop is
that thread. Rebalances are reported to a :class:`GroupListener` from inside :meth:`poll`.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Collection, Mapping, Sequence
from typing import Any, NamedTuple, Protocol

import kafka
import kafka.errors
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata

from kafkalog.client.reader import TOPIC_METADATA_WAIT_S, TopicMissingError
from kafkalog.diagnostics import log
from kafkalog.errors import KafkalogError

__all__ = [
    "GroupCommitError",
    "GroupConsumer",
    "GroupListener",
    "GroupRecord",
    "GroupUnavailableError",
    "Partition",
    "TopicMissingError",
]

# A commit or a group leave that Kafka does not answer in this long is given up: a commit not
# made only means those records are indexed again (over themselves) by the next owner.
GROUP_CALL_TIMEOUT_MS = 5000


class Partition(NamedTuple):
    """A topic partition (kafka-python's ``TopicPartition`` has the same two fields)."""

    topic: str
    partition: int


class GroupRecord(NamedTuple):
    """One record read by the group: where it came from, and its bytes.

    A tuple rather than a dataclass: one is made per record, and a tuple is the cheapest.
    """

    topic: str
    partition: int
    offset: int
    timestamp_ms: int
    key: bytes | None
    value: bytes | None


class GroupListener(Protocol):
    """Told about rebalances from inside :meth:`GroupConsumer.poll`, while the polling thread
    waits in it: on kafka-python's I/O thread, where no blocking consumer call may be made
    (commit with :meth:`GroupConsumer.commit_async`)."""

    def revoked(self, partitions: Collection[Partition]) -> None:
        """These partitions go to another member: settle their work and commit now."""

    def assigned(self, partitions: Collection[Partition]) -> None:
        """These partitions are now this member's."""


class GroupUnavailableError(KafkalogError):
    """Kafka did not answer at start (no broker reachable, or the TLS or SASL setup failed)."""


class GroupCommitError(KafkalogError):
    """A commit was not accepted (the group rebalanced, or the coordinator did not answer).

    Retriable: the offsets are committed again by the next commit, or the records are read
    again by the partition's next owner.
    """

    retriable = True


class GroupConsumer:
    """One member of consumer group ``group`` reading ``topics`` with manual commits.

    A partition the group has no committed offset for starts at the earliest offset, or at the
    end with ``start="latest"``. ``consumer_config`` passes kafka-python's own consumer
    settings (``max_poll_records``, ``session_timeout_ms``...) and the security settings.
    """

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        topics: Sequence[str],
        group: str,
        *,
        listener: GroupListener,
        start: str = "earliest",
        consumer_config: Mapping[str, Any] | None = None,
        timeout_s: float = 30.0,
    ) -> None:
        timeout_ms = int(timeout_s * 1000)
        settings: dict[str, Any] = {
            "request_timeout_ms": min(max(timeout_ms, 1000), 120_000),
            "bootstrap_timeout_ms": timeout_ms,
            "max_partition_fetch_bytes": 4 * 1024 * 1024,
            # A fetch that waits (at most 250 ms) for 256 KiB makes full bulks at a steady
            # rate; kafka-python's default answers at the first byte, and the sink then fell
            # behind at 5k records/s on many small bulks (benchmarks/e2e.py, docs/scaling.md).
            "fetch_min_bytes": 256 * 1024,
            "fetch_max_wait_ms": 250,
        }
        settings.update(consumer_config or {})
        try:
            self._consumer = kafka.KafkaConsumer(
                bootstrap_servers=list(bootstrap_servers),
                group_id=group,
                enable_auto_commit=False,
                auto_offset_reset=start,
                **settings,
            )
        except kafka.errors.KafkaError as exc:
            raise GroupUnavailableError(
                f"cannot reach Kafka at {','.join(bootstrap_servers)}: {type(exc).__name__}"
            ) from None
        try:
            self._wait_for_topics(topics, timeout_s)
            self._consumer.subscribe(list(topics), listener=_Relay(listener))
        except BaseException:
            self._consumer.close(autocommit=False)
            raise

    def _wait_for_topics(self, topics: Sequence[str], timeout_s: float) -> None:
        deadline = time.monotonic() + min(timeout_s, TOPIC_METADATA_WAIT_S)
        for name in topics:
            partitions = self._consumer.partitions_for_topic(name)
            while not partitions and time.monotonic() < deadline:
                # Metadata of a topic created a moment ago can lag; polled, bounded.
                time.sleep(0.2)
                partitions = self._consumer.partitions_for_topic(name)
            if not partitions:
                raise TopicMissingError(f"topic {name!r} does not exist")

    def poll(self, timeout_s: float, max_records: int) -> list[GroupRecord]:
        """The records that arrived within ``timeout_s`` (at most ``max_records``), in offset
        order within each partition. Call it regularly even while every partition is paused:
        polling is what keeps this member in the group."""
        batches = self._consumer.poll(timeout_ms=int(timeout_s * 1000), max_records=max_records)
        out: list[GroupRecord] = []
        for tp, records in batches.items():
            topic, partition = tp.topic, tp.partition
            out.extend(
                GroupRecord(topic, partition, r.offset, r.timestamp, r.key, r.value)
                for r in records
            )
        return out

    def assignment(self) -> set[Partition]:
        """The partitions this member owns now."""
        return {Partition(tp.topic, tp.partition) for tp in self._consumer.assignment()}

    def pause(self, partitions: Collection[Partition]) -> None:
        """Fetch nothing more from ``partitions`` until :meth:`resume`."""
        owned = self._owned(partitions)
        if owned:
            self._consumer.pause(*owned)

    def resume(self, partitions: Collection[Partition]) -> None:
        """Fetch from ``partitions`` again."""
        owned = self._owned(partitions)
        if owned:
            self._consumer.resume(*owned)

    def _owned(self, partitions: Collection[Partition]) -> list[Any]:
        mine = self._consumer.assignment()
        wanted = [kafka.TopicPartition(p.topic, p.partition) for p in partitions]
        return [tp for tp in wanted if tp in mine]

    def commit(self, next_offsets: Mapping[Partition, int]) -> None:
        """Store, for the group, the offset to resume each partition from.

        Raises :class:`GroupCommitError` when Kafka did not take it (a rebalance, a timeout).
        """
        if not next_offsets:
            return
        try:
            self._consumer.commit(_offsets(next_offsets), timeout_ms=GROUP_CALL_TIMEOUT_MS)
        except kafka.errors.KafkaError as exc:
            raise GroupCommitError(f"commit not accepted: {type(exc).__name__}") from exc

    def commit_async(self, next_offsets: Mapping[Partition, int]) -> None:
        """Send a commit without waiting for the answer: the only kind a rebalance callback
        may make (kafka-python runs those on its I/O thread, where a blocking call fails). If
        it is lost, the next owner reads those records again."""
        if not next_offsets:
            return
        try:
            self._consumer.commit_async(_offsets(next_offsets))
        except Exception as exc:  # never out of a rebalance callback: it would fail the join
            log.warning("kafkalog: commit at revocation not sent: %s", type(exc).__name__)

    def committed(self, partition: Partition) -> int | None:
        """The group's committed offset of ``partition`` (None if it has none)."""
        tp = kafka.TopicPartition(partition.topic, partition.partition)
        found = self._consumer.committed(tp, timeout_ms=GROUP_CALL_TIMEOUT_MS)
        return None if found is None else int(found)

    def lag(self) -> dict[Partition, int]:
        """Records not yet read, per owned partition (from the last fetch's high watermark)."""
        out: dict[Partition, int] = {}
        consumer = self._consumer
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is None:
                continue
            with contextlib.suppress(Exception):  # position unknown until the first fetch
                out[Partition(tp.topic, tp.partition)] = max(0, high - consumer.position(tp))
        return out

    def close(self) -> None:
        """Leave the group at once (no wait for the session timeout) and close the
        connections. Commits nothing: the caller committed what was written."""
        with contextlib.suppress(Exception):
            self._consumer.close(autocommit=False, timeout_ms=GROUP_CALL_TIMEOUT_MS)


def _offsets(next_offsets: Mapping[Partition, int]) -> dict[Any, Any]:
    """kafka-python's form of offsets to commit."""
    return {kafka.TopicPartition(p.topic, p.partition): OffsetAndMetadata(offset, "", -1)
            for p, offset in next_offsets.items()}


class _Relay(ConsumerRebalanceListener):  # type: ignore[misc]
    """kafka-python's listener interface, relayed to a :class:`GroupListener`."""

    def __init__(self, listener: GroupListener) -> None:
        self._listener = listener

    def on_partitions_revoked(self, revoked: Any) -> None:
        try:
            self._listener.revoked([Partition(tp.topic, tp.partition) for tp in revoked])
        except Exception:
            log.exception("kafkalog: revoking partitions failed")
            raise

    def on_partitions_assigned(self, assigned: Any) -> None:
        try:
            self._listener.assigned([Partition(tp.topic, tp.partition) for tp in assigned])
        except Exception:
            log.exception("kafkalog: assigning partitions failed")
            raise
