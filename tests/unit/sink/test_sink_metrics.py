"""The sink's Prometheus series, on kafkalog's collector."""

from __future__ import annotations

import pytest

from kafkalog.client.group import Partition
from kafkalog.sink.stats import SinkStats

pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest

from kafkalog.sink.metrics import sink_families


def test_lag_records_latency_in_flight_and_age_are_exposed() -> None:
    stats = SinkStats()
    stats.add(read=10, written=7, dead_lettered=1, retried=4)
    stats.observe_bulk(0.02)
    stats.observe_bulk(3.0)
    stats.set(lag={Partition("logs", 1): 5}, in_flight_bulks=2, oldest_unindexed_age_s=1.5)

    class Collector:
        def collect(self):
            return sink_families([stats.snapshot()])

    registry = CollectorRegistry()
    registry.register(Collector())
    text = generate_latest(registry).decode()
    assert 'kafkalog_sink_consumer_lag{partition="1",topic="logs"} 5.0' in text
    assert 'kafkalog_sink_records_total{outcome="written"} 7.0' in text
    assert 'kafkalog_sink_records_total{outcome="dead_lettered"} 1.0' in text
    assert 'kafkalog_sink_bulk_latency_seconds_bucket{le="0.025"} 1.0' in text
    assert 'kafkalog_sink_bulk_latency_seconds_count 2.0' in text
    assert "kafkalog_sink_bulks_in_flight 2.0" in text
    assert "kafkalog_sink_oldest_unindexed_age_seconds 1.5" in text


def test_no_running_sink_no_samples() -> None:
    families = list(sink_families([]))
    assert families and all(not f.samples for f in families)
