"""The sink's Prometheus series, for :mod:`kafkalog.metrics`' collector.

Read from each running sink's :meth:`~kafkalog.sink.Sink.stats` at scrape time: consumer lag
per partition, records read, written, retried, dead-lettered and not JSON, bulk latency (a
histogram), bulks in flight, and the age of the oldest record not yet in the store. The dead
letters' own delivery is in the pipeline series of the dead-letter topic.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

__all__ = ["RECORD_COUNTERS", "sink_families"]

#: ``kafkalog_sink_records_total{outcome=...}``: outcome -> the ``stats()`` key.
RECORD_COUNTERS = {"read": "read", "written": "written", "retried": "retried",
                   "dead_lettered": "dead_lettered", "invalid": "invalid",
                   "abandoned": "abandoned"}


def sink_families(stats: Sequence[dict[str, Any]]) -> Iterator[Metric]:
    """The series of the sinks whose ``stats()`` are ``stats`` (added up over sinks)."""
    lag = GaugeMetricFamily("kafkalog_sink_consumer_lag", "Records of a partition not read "
                            "yet by the sink.", labels=["topic", "partition"])
    records = CounterMetricFamily("kafkalog_sink_records", "Records by what the sink did with "
                                  "them.", labels=["outcome"])
    in_flight = GaugeMetricFamily("kafkalog_sink_bulks_in_flight", "Bulk requests handed to "
                                  "the workers and not finished.")
    oldest = GaugeMetricFamily("kafkalog_sink_oldest_unindexed_age_seconds", "Age (by its "
                               "Kafka timestamp) of the oldest record read and not yet "
                               "acknowledged by the store.")
    latency = HistogramMetricFamily("kafkalog_sink_bulk_latency_seconds", "Time a bulk "
                                    "request to the store took.")
    if stats:
        for partition, n in sorted(p for s in stats for p in s["lag"].items()):
            lag.add_metric([partition.topic, str(partition.partition)], n)
        for outcome, key in RECORD_COUNTERS.items():
            records.add_metric([outcome], sum(s[key] for s in stats))
        in_flight.add_metric([], sum(s["in_flight_bulks"] for s in stats))
        oldest.add_metric([], max(s["oldest_unindexed_age_s"] for s in stats))
        bounds = stats[0]["bulk_latency_s"]["bounds"]
        counts = [sum(c) for c in zip(*(s["bulk_latency_s"]["counts"] for s in stats),
                                      strict=True)]
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(bounds, counts, strict=False):
            running += count
            buckets.append((repr(float(bound)), running))
        buckets.append(("+Inf", sum(counts)))
        latency.add_metric([], buckets, sum_value=sum(s["bulk_latency_s"]["sum"]
                                                      for s in stats))
    yield from (lag, records, in_flight, oldest, latency)
