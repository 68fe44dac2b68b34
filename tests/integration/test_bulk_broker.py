"""The kafka-python transport's whole-batch hand-off, against a real broker."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from broker.kraft import create_topic
from kafka_read import consume, values

from kafkalog import KafkaHandler


def test_batches_go_whole_with_idempotence_and_compression(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, key="k",
                           acks="all", compression_type="gzip", batch_size=4096)
    logger.addHandler(handler)
    total = 3000
    for i in range(total):
        logger.info("r", extra={"k": f"key-{i % 5}" if i % 4 else None, "i": i})
    assert handler.flush(60)
    assert handler.pipeline._transport.bulk  # handed over whole, not through send() per record
    got = values(consume(kafka_broker.bootstrap, topic, total, timeout_s=60))
    assert sorted(v["i"] for v in got) == list(range(total))  # each exactly once
    by_key: dict[Any, list[int]] = {}
    for v in got:  # records come back partition by partition, each in offset order
        by_key.setdefault(v.get("k"), []).append(v["i"])
    for key, seq in by_key.items():
        if key is not None:
            assert seq == sorted(seq), key


def test_a_batch_the_broker_finds_too_large_is_split_and_followed(
    kafka_broker: Any, logger: logging.Logger
) -> None:
    # The topic takes batches of at most 4000 bytes; the handler builds producer batches of up
    # to max_request_size, here one of all 80 records (about 40 KB): the broker refuses it and
    # kafka-python splits it (again and again). The transport follows each record into the
    # split batches, so every record is accounted for once.
    name = create_topic(kafka_broker.bootstrap, f"bulk-split-{uuid.uuid4().hex[:8]}", 1,
                        config={"max.message.bytes": "4000"})
    handler = KafkaHandler(topic=name, bootstrap_servers=kafka_broker.bootstrap,
                           batch_size=16384, linger_ms=50)
    logger.addHandler(handler)
    total = 80
    for i in range(total):
        logger.info("r", extra={"i": i, "pad": "p" * 400})
    assert handler.flush(60)
    assert handler.pipeline._transport.bulk
    stats = handler.stats()
    assert stats["delivered"] == total
    assert stats["failed"] == stats["dropped"] == stats["retries"] == 0
    got = values(consume(kafka_broker.bootstrap, name, total, timeout_s=30))
    assert [v["i"] for v in got] == list(range(total))  # once each, in order
