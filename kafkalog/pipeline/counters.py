"""The worker's counters: plain numbers and two per-request distributions.

One :class:`WorkerCounters` belongs to a pipeline, not to a worker thread, so that a worker
restarted after a crash goes on counting where the old one stopped.
"""

from __future__ import annotations

import bisect
import dataclasses
import threading
from collections.abc import Sequence
from typing import Any

# The most the worker hands to the transport at once. Bounds the memory a batch pins while it
# is retried, and the work lost to a crash of a single attempt.
MAX_BATCH_RECORDS = 20000
MAX_BATCH_BYTES = 16 * 1024 * 1024
# Bucket upper bounds of the per-request distributions (records per request, seconds per
# request). Fixed, so that every process reports the same buckets to a metrics system.
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 5000, 10000, MAX_BATCH_RECORDS)
SEND_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Distribution:
    """Counts of observed values per bucket, plus their sum: the data of a histogram.

    Recorded once per request to Kafka (never per record), read by ``stats()`` and
    :mod:`kafkalog.metrics` from other threads.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last bucket: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is >= it."""
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> dict[str, Any]:
        """``bounds``, ``counts`` (per bucket, not cumulative; one more than bounds: the
        overflow bucket), ``count`` and ``sum``; JSON-serialisable."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        return {"bounds": list(self.bounds), "counts": counts, "count": sum(counts), "sum": total}


@dataclasses.dataclass
class WorkerCounters:
    """What the worker (and the replay engine) counted. Written by one thread at a time."""

    delivered: int = 0
    failed: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    last_error: str | None = None
    batch_sizes: Distribution = dataclasses.field(
        default_factory=lambda: Distribution(BATCH_SIZE_BUCKETS)
    )
    send_latencies: Distribution = dataclasses.field(
        default_factory=lambda: Distribution(SEND_LATENCY_BUCKETS_S)
    )

    def snapshot(self) -> dict[str, Any]:
        """The counters as ``stats()`` reports them."""
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "retries": self.retries,
            "batches": self.batches,
            "last_error": self.last_error,
            "batch_size": self.batch_sizes.snapshot(),
            "send_latency_s": self.send_latencies.snapshot(),
        }
