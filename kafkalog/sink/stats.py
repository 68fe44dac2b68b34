"""The sink's counters: what ``kafkalog sink`` shows as progress and answers to ``stats``.

Counted from the consumer loop and the bulk workers at once, so every change takes a lock;
changes are per bulk, not per record, so the lock is cheap.
"""

from __future__ import annotations

import bisect
import threading
from typing import Any

__all__ = ["LATENCY_BOUNDS_S", "SinkStats"]

#: Upper bounds (seconds) of the bulk latency histogram's buckets; one more counts the rest.
LATENCY_BOUNDS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)

_COUNTERS = (
    "read",           # records read from Kafka
    "written",        # documents the store acknowledged
    "dead_lettered",  # records on the dead-letter topic (refused by the store, or not JSON)
    "invalid",        # records that were not a JSON object (indexed with an error field, or
                      # dead-lettered)
    "retried",        # documents sent again after a retriable failure
    "bulks",          # bulks completed
    "bulk_failures",  # bulk requests that failed as a whole (store down, 429, 5xx)
    "abandoned",      # records whose bulk was abandoned (revoked, or stop past its bound)
    "commits",        # offset commits Kafka accepted
    "commit_failures",
)


class SinkStats:
    """Counters since the sink started, and gauges the loop sets."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._gauges: dict[str, Any] = {"in_flight_records": 0, "in_flight_bulks": 0,
                                        "oldest_unindexed_age_s": 0.0, "paused": False,
                                        "lag": {}, "committed": {}}
        self._latency = [0] * (len(LATENCY_BOUNDS_S) + 1)
        self._latency_sum = 0.0

    def add(self, **counts: int) -> None:
        """Add to counters by name."""
        with self._lock:
            for name, n in counts.items():
                self._counts[name] += n

    def observe_bulk(self, seconds: float) -> None:
        """One bulk request took ``seconds`` (successful or not)."""
        bucket = bisect.bisect_left(LATENCY_BOUNDS_S, seconds)
        with self._lock:
            self._latency[bucket] += 1
            self._latency_sum += seconds

    def set(self, **gauges: Any) -> None:
        """Set gauges by name (in-flight work, lag per partition, committed offsets)."""
        with self._lock:
            self._gauges.update(gauges)

    def __getitem__(self, name: str) -> Any:
        with self._lock:
            return self._counts[name] if name in self._counts else self._gauges[name]

    def snapshot(self) -> dict[str, Any]:
        """Every counter and gauge, as a new dict."""
        with self._lock:
            latency = {"bounds": LATENCY_BOUNDS_S, "counts": list(self._latency),
                       "sum": self._latency_sum}
            return {**self._counts, **self._gauges, "bulk_latency_s": latency}
