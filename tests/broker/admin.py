"""What the tests ask a running cluster, as a kafka-python client: its brokers, a partition's
leader, a new topic, and the records of a topic."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition

from broker.node_config import prop_value
from broker.polling import wait_for

__all__ = [
    "admin_client",
    "consume",
    "create_topic",
    "describe_cluster",
    "partition_leader",
    "unfenced",
]


def admin_client(bootstrap: str, timeout: float) -> Any:
    """A kafka-python admin client for ``bootstrap``; the caller closes it."""
    timeout_ms = max(1000, int(timeout * 1000))
    return KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="kafkalog-tests-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def describe_cluster(bootstrap: str, timeout: float) -> dict[str, Any]:
    """The DescribeCluster answer of ``bootstrap`` (cluster id, brokers and their fencing)."""
    timeout_ms = max(1000, int(timeout * 1000))
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="kafkalog-tests-probe",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        info: dict[str, Any] = admin.describe_cluster()
        return info
    finally:
        admin.close()


def unfenced(info: Mapping[str, Any]) -> set[int]:
    """Ids of the brokers a :func:`describe_cluster` answer lists as unfenced."""
    return {int(b["broker_id"]) for b in info["brokers"] if not b.get("is_fenced", False)}


def partition_leader(bootstrap: str, topic: str, partition: int, timeout: float) -> int | None:
    """Node id leading ``topic``/``partition`` per ``bootstrap``'s metadata, or ``None``."""
    admin = admin_client(bootstrap, timeout)
    try:
        (info,) = admin.describe_topics([topic])
    finally:
        admin.close()
    if info.get("error_code", 0) != 0:
        return None
    for p in info.get("partitions") or []:
        if p["partition_index"] == partition and p.get("error_code", 0) == 0:
            leader = int(p["leader_id"])
            return leader if leader >= 0 else None
    return None


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    replication_factor: int = 1,
    config: Mapping[str, object] | None = None,
    *,
    timeout: float = 30.0,
) -> str:
    """Create ``name`` and wait (bounded) until every partition has a leader; return name."""
    admin = admin_client(bootstrap, timeout)
    try:
        admin.create_topics(
            {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    "configs": {k: prop_value(v) for k, v in (config or {}).items()},
                }
            },
            timeout_ms=int(timeout * 1000),
        )
        admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))
    finally:
        admin.close()
    return name


def consume(
    bootstrap: str,
    topic: str,
    min_messages: int,
    *,
    timeout: float = 30.0,
) -> list[Any]:
    """Read ``topic`` (all partitions, from the beginning, no consumer group) until at
    least ``min_messages`` records arrived; return them (kafka-python ConsumerRecords).

    Raises ``TimeoutError`` listing what did arrive if the bound expires first.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="kafkalog-tests-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=max(5000, int(timeout * 1000)),
        bootstrap_timeout_ms=max(1000, int(timeout * 1000)),
    )
    records: list[Any] = []
    try:
        partitions = wait_for(
            lambda: consumer.partitions_for_topic(topic),
            timeout=timeout,
            description=f"metadata of topic {topic!r}",
        )
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        deadline = time.monotonic() + timeout
        # poll() blocks up to 500 ms, so this runs for at most ~timeout seconds.
        for _ in range(int(timeout / 0.5) + 1):
            if len(records) >= min_messages or time.monotonic() >= deadline:
                break
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    if len(records) < min_messages:
        raise TimeoutError(
            f"got {len(records)} of {min_messages} messages from {topic!r} within "
            f"{timeout:.0f}s: {[r.value for r in records][:20]}"
        )
    return records
