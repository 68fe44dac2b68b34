"""Reading a topic back in tests: bounded polls, no consumer group, no commits."""

from __future__ import annotations

import time
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition


def consume(
    bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0
) -> list[Any]:
    """Read ``topic`` from the beginning until ``expected`` records arrived or time ran out.

    Returns kafka-python ``ConsumerRecord`` objects in partition order.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        enable_auto_commit=False,
        group_id=None,
        consumer_timeout_ms=1000,
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=64 * 1024 * 1024,
    )
    try:
        deadline = time.monotonic() + timeout_s
        partitions: set[int] | None = None
        while time.monotonic() < deadline and not partitions:
            partitions = consumer.partitions_for_topic(topic)
            if not partitions:
                time.sleep(0.1)  # metadata for a just-created topic; polled, bounded
        assert partitions, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        records: list[Any] = []
        while len(records) < expected and time.monotonic() < deadline:
            batch = consumer.poll(timeout_ms=500, max_records=100000)
            for tp_records in batch.values():
                records.extend(tp_records)
        # One more short poll so that tests can see records beyond the expected count.
        for tp_records in consumer.poll(timeout_ms=200).values():
            records.extend(tp_records)
        return records
    finally:
        consumer.close()


def values(records: list[Any]) -> list[dict[str, Any]]:
    """The JSON values of consumed records."""
    return [orjson.loads(r.value) for r in records]
