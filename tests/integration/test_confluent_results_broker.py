"""The confluent transport against a real broker: one exact result per record, in batch order.

Only failures are reported back from librdkafka (successes cost no Python call), so these
check that a failure still lands on its own record while its neighbours count as delivered.
"""

from __future__ import annotations

import uuid
from typing import Any

from broker.kraft import create_topic
from kafka.partitioner.default import murmur2
from kafka_read import consume

from kafkalog.config import HandlerConfig
from kafkalog.transports.confluent import ConfluentTransport


def key_for(partition: int, partitions: int) -> bytes:
    """A key that the murmur2 partitioner (Kafka's, and the transport's) puts on ``partition``."""
    for n in range(1000):
        key = b"key-%d" % n
        if (murmur2(key) & 0x7FFFFFFF) % partitions == partition:
            return key
    raise AssertionError(f"no key for partition {partition}")


def test_records_the_broker_refuses_fail_alone_among_delivered_ones(kafka_broker: Any) -> None:
    # The broker refuses record batches over 20,000 bytes. Big records are keyed onto
    # partition 0 and small ones onto partition 1, so a refused batch holds only big records
    # (all the small ones fit in one) and the reports of the two partitions interleave.
    topic = create_topic(kafka_broker.bootstrap, f"results-{uuid.uuid4().hex[:12]}", 2,
                         config={"max.message.bytes": 20_000})
    big_key, small_key = key_for(0, 2), key_for(1, 2)
    records: list[tuple[bytes, bytes | None]] = []
    for i in range(600):
        if i % 5 == 2:
            records.append((b"big %d " % i + b"x" * 25_000, big_key))
        else:
            records.append((b"small %d" % i, small_key))
    transport = ConfluentTransport(HandlerConfig.from_options(
        {"topic": topic, "transport": "confluent", "bootstrap_servers": kafka_broker.bootstrap}))
    try:
        results = transport.send(records, 30.0)
    finally:
        transport.close(1.0)

    assert len(results) == len(records)
    for i, result in enumerate(results):
        if i % 5 == 2:
            assert result is not None and not result.retriable, (i, result)
            assert result.cause_name == "MSG_SIZE_TOO_LARGE", (i, result)
        else:
            assert result is None, (i, result)
    delivered = consume(kafka_broker.bootstrap, topic, 480, timeout_s=60)
    assert [r.value for r in delivered] == [v for i, (v, _) in enumerate(records) if i % 5 != 2]
