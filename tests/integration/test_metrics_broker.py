"""kafkalog.metrics scraped while logging to a real Kafka broker."""

from __future__ import annotations

import logging
from typing import Any

from kafka_read import consume
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

import kafkalog.metrics
from kafkalog import KafkaHandler


def samples(registry: CollectorRegistry, topic: str) -> dict[str, float]:
    """Sample name (with ``le`` for buckets) -> value, for one topic, from the text format."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            if sample.labels.get("topic") != topic:
                continue
            le = sample.labels.get("le")
            out[sample.name if le is None else f"{sample.name}{{le={le}}}"] = sample.value
    return out


def test_scrape_counts_what_reached_the_broker(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
    logger.addHandler(handler)
    registry = CollectorRegistry()
    kafkalog.metrics.register(handler, registry=registry)
    for i in range(500):
        logger.info("record %d", i)
    assert handler.flush(30)

    got = samples(registry, topic)
    assert got["kafkalog_enqueued_total"] == 500
    assert got["kafkalog_delivered_total"] == 500
    assert got["kafkalog_failed_total"] == 0
    assert got["kafkalog_dropped_total"] == 0
    assert got["kafkalog_queue_depth"] == 0
    assert got["kafkalog_queue_bytes"] == 0
    # Every request is observed once; retried requests (a new topic's metadata) count again.
    requests = got["kafkalog_batch_size_records_count"]
    assert 1 <= requests == got["kafkalog_send_latency_seconds_count"]
    assert got["kafkalog_batch_size_records_sum"] >= 500
    assert got["kafkalog_batch_size_records_bucket{le=+Inf}"] == requests
    assert 0 < got["kafkalog_send_latency_seconds_sum"] < 30 * requests
    assert len(consume(kafka_broker.bootstrap, topic, 500)) == 500

    logger.removeHandler(handler)
    handler.close()
    closed = samples(registry, topic)
    assert closed["kafkalog_delivered_total"] == 500  # still there once the handler is closed
    assert closed["kafkalog_handlers"] == 0
