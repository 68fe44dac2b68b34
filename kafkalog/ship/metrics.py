"""The file agent's Prometheus series, for :mod:`kafkalog.metrics`' collector.

Read from each running agent's :meth:`~kafkalog.ship.agent.ShipAgent.stats` at scrape time:
per-file lag, open files, what it read, what it noticed about its files (rotations by
truncation, long lines cut), its registry, and its inotify watch. The delivery of its records
is in the pipeline series, by topic.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

__all__ = ["AGENT_COUNTERS", "INOTIFY_COUNTERS", "ship_families"]

#: Counter series (``_total`` is appended on exposition) -> (``stats()`` key, help).
AGENT_COUNTERS: Mapping[str, tuple[str, str]] = {
    "kafkalog_ship_lines": ("lines", "Lines the file agent read."),
    "kafkalog_ship_bytes": ("bytes", "Bytes of lines the file agent read."),
    "kafkalog_ship_events": ("events", "Records the file agent submitted (a multi-line event "
                             "is one)."),
    "kafkalog_ship_queue_full": ("refused", "Times the pipeline's queue was full and a file's "
                                 "records waited in its backlog."),
    "kafkalog_ship_truncations": ("truncations", "Files found truncated (copytruncate "
                                  "rotation), read again from their start."),
    "kafkalog_ship_long_lines": ("long_lines", "Lines cut at max_request_size."),
    "kafkalog_ship_files_opened": ("files_opened", "Files the file agent opened."),
    "kafkalog_ship_files_closed": ("files_closed", "Files the file agent closed (deleted or "
                                   "rotated away, and read to their end)."),
    "kafkalog_ship_registry_saves": ("registry_saves", "Registry saves (offsets committed)."),
    "kafkalog_ship_registry_pruned": ("registry_pruned", "Registry entries forgotten: their "
                                      "files were gone for good."),
    "kafkalog_ship_reloads": ("reloads", "Configuration reloads (SIGHUP)."),
    "kafkalog_ship_scans": ("scans", "Scans of the inputs' globs."),
}

#: inotify counter series -> (key of ``stats()["inotify"]``, help).
INOTIFY_COUNTERS: Mapping[str, tuple[str, str]] = {
    "kafkalog_ship_inotify_events": ("events", "inotify events the file agent read."),
    "kafkalog_ship_inotify_overflows": ("overflows", "Times inotify's event queue overflowed "
                                        "(events lost: the agent scanned and read every file)."),
    "kafkalog_ship_inotify_watch_failures": ("watch_failures", "Files or directories inotify "
                                             "could not watch (polled instead)."),
}


def ship_families(stats: Sequence[dict[str, Any]]) -> Iterator[Metric]:
    """The series of the agents whose ``stats()`` are ``stats`` (added up over agents)."""
    lag = GaugeMetricFamily("kafkalog_ship_lag_bytes", "Bytes of a followed file not read "
                            "yet.", labels=["input", "file"])
    files = GaugeMetricFamily("kafkalog_ship_files", "Files the file agent has open.",
                              labels=["input"])
    inotify = GaugeMetricFamily("kafkalog_ship_inotify_active", "1 while the file agent "
                                "watches its files with inotify, 0 while it only polls.")
    counters = {name: CounterMetricFamily(name, doc)
                for name, (_, doc) in {**AGENT_COUNTERS, **INOTIFY_COUNTERS}.items()}
    open_per_input: dict[str, int] = {}
    for each in stats:
        for path, one in each["per_file"].items():
            lag.add_metric([one["input"], path], one["lag_bytes"])
            open_per_input[one["input"]] = open_per_input.get(one["input"], 0) + 1
    for name, count in sorted(open_per_input.items()):
        files.add_metric([name], count)
    if stats:
        inotify.add_metric([], min(int(bool(s["inotify"]["active"])) for s in stats))
        for name, (key, _) in AGENT_COUNTERS.items():
            counters[name].add_metric([], sum(s[key] for s in stats))
        for name, (key, _) in INOTIFY_COUNTERS.items():
            counters[name].add_metric([], sum(s["inotify"][key] for s in stats))
    yield from (lag, files, inotify, *counters.values())
