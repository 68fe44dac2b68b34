"""The sink's counters: what ``kafkalog sink`` shows as progress and answers to ``stats``.

Counted from the consumer loop and the bulk workers at once, so every change takes a lock;
changes are per bulk, not per record, so the lock is cheap.
"""

from __future__ import annotations

import threading
from typing import Any

__all__ = ["SinkStats"]

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
                                        "paused": False, "lag": {}, "committed": {}}

    def add(self, **counts: int) -> None:
        """Add to counters by name."""
        with self._lock:
            for name, n in counts.items():
                self._counts[name] += n

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
            return {**self._counts, **self._gauges}
