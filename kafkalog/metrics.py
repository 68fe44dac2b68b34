"""Prometheus metrics for kafkalog: a ``prometheus_client`` collector over ``stats()``.

Install the extra (``pip install 'kafkalog[prometheus]'``) and register once::

    import kafkalog.metrics
    kafkalog.metrics.register()          # every pipeline of the process, now and later

The collector reads each delivery pipeline's :meth:`~kafkalog.pipeline.Pipeline.stats` (one
per KafkaHandler, plus any an application or the file agent builds) at scrape time, so logging
pays nothing for it. Series are labelled by ``topic``; pipelines writing to the same topic are
added up. Counters never go down while the process lives: what a handler counted
stays in its topic's totals after the handler is closed.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

try:
    from prometheus_client.metrics_core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
        Metric,
    )
    from prometheus_client.registry import REGISTRY, CollectorRegistry
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "kafkalog.metrics needs prometheus_client: pip install 'kafkalog[prometheus]'"
    ) from exc

from kafkalog.handler import KafkaHandler
from kafkalog.pipeline import Pipeline, lifecycle
from kafkalog.ship.agent import live_agents
from kafkalog.ship.metrics import ship_families
from kafkalog.sink.loop import live_sinks
from kafkalog.sink.metrics import sink_families

#: What a collector reports on: a handler (its pipeline, that is) or a pipeline.
Source = KafkaHandler | Pipeline


def _pipeline_of(source: Source) -> Pipeline:
    return source.pipeline if isinstance(source, KafkaHandler) else source


def _live_pipelines() -> list[Pipeline]:
    return [p for p in lifecycle.live() if isinstance(p, Pipeline)]

__all__ = ["COUNTERS", "GAUGES", "HISTOGRAMS", "KafkalogCollector", "register", "unregister"]

#: Counter metrics: name (``_total`` is appended on exposition) -> (``stats()`` key, help).
COUNTERS: Mapping[str, tuple[str, str]] = {
    "kafkalog_enqueued": ("enqueued", "Records accepted onto the in-memory queue."),
    "kafkalog_delivered": ("delivered", "Records acknowledged by Kafka."),
    "kafkalog_failed": ("failed", "Records given up without a spill store to keep them."),
    "kafkalog_dropped": ("dropped", "Records dropped: queue full, disk cap reached, or logged "
                                    "after close."),
    "kafkalog_spilled": ("spilled", "Records written to the spill directory."),
    "kafkalog_replayed": ("replayed", "Spilled records sent to Kafka and removed from disk."),
    "kafkalog_dead_lettered": ("dead_lettered", "Records Kafka refused for good, sent to the "
                                                "dead-letter topic or segment."),
    "kafkalog_retries": ("retries", "Send attempts retried after a retriable error."),
}
#: Gauge metrics: name -> (``stats()`` key, help).
GAUGES: Mapping[str, tuple[str, str]] = {
    "kafkalog_queue_depth": ("queue_depth", "Records waiting in the in-memory queue."),
    "kafkalog_queue_bytes": ("queue_bytes", "Bytes of the records waiting in the queue."),
    "kafkalog_spill_bytes": ("spill_bytes", "Bytes of records waiting in the spill directory."),
    "kafkalog_spill_records": ("spill_pending_records",
                               "Records waiting in the spill directory."),
}
#: Histogram metrics: name -> (``stats()`` key, help).
HISTOGRAMS: Mapping[str, tuple[str, str]] = {
    "kafkalog_batch_size_records": ("batch_size", "Records per request sent to Kafka."),
    "kafkalog_send_latency_seconds": ("send_latency_s", "Time a request to Kafka took, from "
                                                        "sending to the last acknowledgement."),
}
_HANDLERS = "kafkalog_handlers"


@dataclass
class _Histogram:
    """A distribution added up over handlers: per-bucket counts (the last: overflow) and sum."""

    bounds: tuple[float, ...]
    counts: list[int]
    total: float = 0.0

    @classmethod
    def of(cls, snapshot: Mapping[str, Any]) -> _Histogram:
        return cls(tuple(snapshot["bounds"]), list(snapshot["counts"]), float(snapshot["sum"]))

    def add(self, other: _Histogram) -> None:
        if other.bounds != self.bounds:  # never with one kafkalog version; keep what we have
            return
        self.counts = [a + b for a, b in zip(self.counts, other.counts, strict=True)]
        self.total += other.total

    def buckets(self) -> list[tuple[str, float]]:
        """Cumulative ``(le, count)`` pairs, ending with ``+Inf``, as Prometheus wants them."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, count in zip(self.bounds, self.counts, strict=False):
            running += count
            out.append((_le(bound), running))
        out.append(("+Inf", sum(self.counts)))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


@dataclass
class _Totals:
    """What one topic's handlers counted, added up."""

    counters: dict[str, int] = field(default_factory=dict)
    gauges: dict[str, int] = field(default_factory=dict)
    histograms: dict[str, _Histogram] = field(default_factory=dict)
    handlers: int = 0

    def add_monotonic(self, snap: _Snapshot) -> None:
        """Add counters and histograms (not gauges: those describe the present only)."""
        for key, value in snap.counters.items():
            self.counters[key] = self.counters.get(key, 0) + value
        for key, hist in snap.histograms.items():
            mine = self.histograms.get(key)
            if mine is None:
                self.histograms[key] = _Histogram(hist.bounds, list(hist.counts), hist.total)
            else:
                mine.add(hist)

    def copy(self) -> _Totals:
        return _Totals(
            dict(self.counters),
            dict(self.gauges),
            {k: _Histogram(h.bounds, list(h.counts), h.total) for k, h in self.histograms.items()},
            self.handlers,
        )


@dataclass
class _Snapshot:
    counters: dict[str, int]
    gauges: dict[str, int]
    histograms: dict[str, _Histogram]

    @classmethod
    def of(cls, stats: Mapping[str, Any]) -> _Snapshot:
        return cls(
            {key: int(stats.get(key, 0)) for key, _ in COUNTERS.values()},
            {key: int(stats.get(key, 0)) for key, _ in GAUGES.values()},
            {key: _Histogram.of(stats[key]) for key, _ in HISTOGRAMS.values() if key in stats},
        )


@dataclass
class _Tracked:
    ref: weakref.ref[Pipeline]
    topic: str
    last: _Snapshot | None = None


class KafkalogCollector:
    """A ``prometheus_client`` collector of the counters of KafkaHandlers, labelled by topic.

    ``handlers=None`` follows every KafkaHandler of the process, including those built after
    the collector; otherwise only the given ones (add more with :meth:`add`). A handler that
    is closed, or garbage-collected, leaves what it counted in its topic's counters and
    histograms; its gauges (queue, spill) drop out. One that was garbage-collected between two
    scrapes contributes what the earlier scrape saw of it.

    In a forked child the collector starts from zero, as the handlers' counters do.
    """

    def __init__(self, handlers: Iterable[Source] | None = None) -> None:
        self._follow_all = handlers is None
        self._lock = threading.Lock()
        self._tracked: dict[int, _Tracked] = {}
        self._retired: dict[str, _Totals] = {}
        for handler in handlers or ():
            self.add(handler)
        _COLLECTORS.add(self)

    def add(self, handler: Source) -> None:
        """Report ``handler`` (or a pipeline) too (no effect if it is already reported)."""
        with self._lock:
            self._track(_pipeline_of(handler))

    def _track(self, handler: Pipeline) -> None:
        key = id(handler)
        tracked = self._tracked.get(key)
        if tracked is not None and tracked.ref() is handler:
            return
        if tracked is not None and tracked.last is not None:  # a collected one's id, reused
            self._retire(tracked.topic, tracked.last)
        self._tracked[key] = _Tracked(weakref.ref(handler), handler.config.topic)

    def describe(self) -> list[Metric]:
        """The metric families, without samples (lets a registry check names up front)."""
        return [*self._families({}), *ship_families([]), *sink_families([])]

    def collect(self) -> Iterator[Metric]:
        """Read every handler's ``stats()`` and yield the metric families."""
        with self._lock:
            totals = self._gather()
        yield from self._families(totals)
        yield from ship_families([a.stats() for a in live_agents()] if self._follow_all else [])
        yield from sink_families([s.stats() for s in live_sinks()] if self._follow_all else [])

    def _gather(self) -> dict[str, _Totals]:
        live = _live_pipelines()
        if self._follow_all:
            for handler in live:
                self._track(handler)
        open_ids = {id(h) for h in live}
        totals = {topic: t.copy() for topic, t in self._retired.items()}
        for key, tracked in list(self._tracked.items()):
            found = tracked.ref()
            if found is None:  # collected: keep what the last scrape saw of it
                if tracked.last is not None:
                    self._retire(tracked.topic, tracked.last)
                    totals.setdefault(tracked.topic, _Totals()).add_monotonic(tracked.last)
                del self._tracked[key]
                continue
            snap = _Snapshot.of(found.stats())
            tracked.last = snap
            topic_totals = totals.setdefault(tracked.topic, _Totals())
            topic_totals.add_monotonic(snap)
            if key not in open_ids:  # closed: its counts stay, it is no longer followed
                self._retire(tracked.topic, snap)
                del self._tracked[key]
                continue
            topic_totals.handlers += 1
            for gauge, value in snap.gauges.items():
                topic_totals.gauges[gauge] = topic_totals.gauges.get(gauge, 0) + value
        return totals

    def _retire(self, topic: str, snap: _Snapshot) -> None:
        self._retired.setdefault(topic, _Totals()).add_monotonic(snap)

    def _families(self, totals: Mapping[str, _Totals]) -> Iterator[Metric]:
        topics = sorted(totals)
        for name, (key, doc) in COUNTERS.items():
            counter = CounterMetricFamily(name, doc, labels=["topic"])
            for topic in topics:
                counter.add_metric([topic], totals[topic].counters.get(key, 0))
            yield counter
        for name, (key, doc) in GAUGES.items():
            gauge = GaugeMetricFamily(name, doc, labels=["topic"])
            for topic in topics:
                gauge.add_metric([topic], totals[topic].gauges.get(key, 0))
            yield gauge
        handlers = GaugeMetricFamily(_HANDLERS, "Open KafkaHandlers.", labels=["topic"])
        for topic in topics:
            handlers.add_metric([topic], totals[topic].handlers)
        yield handlers
        for name, (key, doc) in HISTOGRAMS.items():
            histogram = HistogramMetricFamily(name, doc, labels=["topic"])
            for topic in topics:
                hist = totals[topic].histograms.get(key)
                if hist is not None:
                    histogram.add_metric([topic], hist.buckets(), hist.total)
            yield histogram

    def _reset_after_fork(self) -> None:
        # The child's handlers count from zero; so must their totals here.
        # A handler closed before the fork keeps the parent's counts: it is the parent's.
        self._lock = threading.Lock()
        self._retired.clear()
        open_ids = {id(h) for h in _live_pipelines()}
        for key in [k for k in self._tracked if k not in open_ids]:
            del self._tracked[key]
        for tracked in self._tracked.values():
            tracked.last = None


_COLLECTORS: weakref.WeakSet[KafkalogCollector] = weakref.WeakSet()


def register(
    handlers: Source | Iterable[Source] | None = None,
    *,
    registry: CollectorRegistry | None = None,
) -> KafkalogCollector:
    """Build a :class:`KafkalogCollector` and register it (default: the global registry).

    ``handlers``: one handler, several, or None for every KafkaHandler of the process. Call it
    once per registry: a second collector would expose the same metric names and
    ``prometheus_client`` refuses that with a ``ValueError``.
    """
    if isinstance(handlers, (KafkaHandler, Pipeline)):
        handlers = [handlers]
    collector = KafkalogCollector(handlers)
    (REGISTRY if registry is None else registry).register(collector)
    return collector


def unregister(collector: KafkalogCollector, *, registry: CollectorRegistry | None = None) -> None:
    """Remove ``collector`` from ``registry`` (default: the global registry)."""
    (REGISTRY if registry is None else registry).unregister(collector)


def _after_fork_in_child() -> None:
    for collector in list(_COLLECTORS):
        collector._reset_after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
