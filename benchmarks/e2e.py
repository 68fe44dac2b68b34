"""End to end: a log call to a searchable document, p50 and p99, at a steady 10k records/s.

    python -m benchmarks.e2e                          # 30 s at 10k records/s
    python -m benchmarks.e2e --out benchmarks/results/e2e.json

The whole path on this machine: this process logs through ``KafkaHandler`` (the default
options; ``KAFKALOG_BENCH_E2E_TRANSPORT=confluent`` for librdkafka) to a broker of its own
(tests/broker/kraft.py), and ``kafkalog sink`` (a child process, its default bulk options)
indexes the 3-partition topic into a local OpenSearch 2.19.6 node (tests/search) with
OpenSearch's default refresh interval, 1 s, set explicitly. Two runs, each with a new topic,
group and index: the sink's consumer with kafka-python's fetch defaults, then with a fetch
that waits for 256 KiB or 250 ms (bigger, fewer bulks). ``KAFKALOG_BENCH_E2E_RATE`` and
``KAFKALOG_BENCH_E2E_SECONDS`` change the rate and the length of each run.

Every 10th record carries ``extra={"probe": n}``, and the log call's time is kept. A thread of
this process searches for the probes not seen yet every 50 ms (a ``terms`` query on ``probe``,
doc values only); a probe's delay is the time that search was sent minus its log call's time,
so a delay is known to within one poll interval (late by at most 50 ms plus the search's own
time). One clock, this process's ``perf_counter``, measures both ends. Alongside, the CPU
(user+sys) each part used over the run: this process (the log calls, the handler and its
transport; the prober thread's own CPU taken out), the broker's JVM, the sink, OpenSearch.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import json
import logging
import os
import resource
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
from opensearchpy import OpenSearch

from benchmarks.caller_cost import transport_option
from benchmarks.harness import FILLER, MESSAGE, ROOT, delete_topics, free_port, new_topic
from benchmarks.latency import percentile
from benchmarks.ship_proc import _peak_rss
from benchmarks.sink import bulk_metrics, cpu_of, quantile, sink_config, start_sink, stop_sink
from kafkalog import KafkaHandler

sys.path.insert(0, str(ROOT / "tests"))  # the test broker and the test OpenSearch node
from broker.kraft import KafkaBroker
from search.opensearch import OpenSearchNode

RATE = int(os.environ.get("KAFKALOG_BENCH_E2E_RATE", "10000"))
SECONDS = float(os.environ.get("KAFKALOG_BENCH_E2E_SECONDS", "30"))
TRANSPORT = os.environ.get("KAFKALOG_BENCH_E2E_TRANSPORT", "kafka-python")
PROBE_EVERY = 10  # one record in ten is a probe
POLL_S = 0.05
DRAIN_S = 120.0  # how long the probes may take to show up after the last log call
# The sink's consumer as configured in each run: kafka-python's defaults (a fetch answered as
# soon as there is a byte, so a bulk per partition per poll, small at a steady rate), then a
# fetch that waits for 256 KiB or 250 ms, so that bulks are bigger and fewer.
CONSUMERS: dict[str, dict[str, int]] = {
    "sink defaults": {},
    "fetch_min_bytes=262144, fetch_max_wait_ms=250": {"fetch_min_bytes": 262_144,
                                                      "fetch_max_wait_ms": 250},
}
INDEX_SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "1s"}


class Prober:
    """A thread that finds out when each logged probe becomes searchable."""

    def __init__(self, client: OpenSearch, index: str) -> None:
        self.client, self.index = client, index
        self.sent: collections.deque[tuple[int, float]] = collections.deque()  # thread-safe
        self.pending: dict[int, float] = {}
        self.delays_s: dict[int, float] = {}
        self.searches = 0
        self.cpu_s = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="e2e-prober", daemon=True)

    def start(self) -> None:
        """Start polling."""
        self._thread.start()

    def stop(self) -> None:
        """Stop polling (bounded)."""
        self._stop.set()
        self._thread.join(30)

    def outstanding(self) -> int:
        """Probes logged and not seen yet."""
        return len(self.pending) + len(self.sent)

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            cpu = time.thread_time()
            self.poll_once()
            self.cpu_s += time.thread_time() - cpu  # its own thread's: read by the main one

    def poll_once(self) -> None:
        """One search for the probes not seen yet (the oldest 10,000 at most)."""
        while self.sent:
            probe, at = self.sent.popleft()
            self.pending[probe] = at
        if not self.pending:
            return
        wanted = sorted(self.pending)[:10_000]
        asked = time.perf_counter()
        with contextlib.suppress(Exception):  # the index not there yet: seen next time
            found = self.client.search(index=self.index, body={
                "query": {"terms": {"probe": wanted}}, "_source": False,
                "docvalue_fields": ["probe"], "size": len(wanted)})
            self.searches += 1
            for hit in found["hits"]["hits"]:
                probe = int(hit["fields"]["probe"][0])
                if probe in self.pending:
                    self.delays_s[probe] = asked - self.pending.pop(probe)


def _logger(handler: logging.Handler) -> logging.Logger:
    log = logging.getLogger("bench.e2e")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]
    return log


def _log_paced(log: logging.Logger, prober: Prober, count: int, first_probe: int) -> float:
    """``count`` log calls at RATE per second, in slices of 10 ms; the seconds it took."""
    start = time.perf_counter()
    per_slice = max(1, RATE // 100)
    probe = first_probe
    for i in range(count):
        if i % per_slice == 0:
            delay = start + i / RATE - time.perf_counter()
            if delay > 0:
                time.sleep(delay)  # pacing by the clock, not a synchronisation
        if i % PROBE_EVERY == 0:
            prober.sent.append((probe, time.perf_counter()))
            log.info(MESSAGE, "u-42", i, FILLER, extra={"probe": probe})
            probe += 1
        else:
            log.info(MESSAGE, "u-42", i, FILLER)
    return time.perf_counter() - start


def _wait(prober: Prober, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while prober.outstanding():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)  # a poll of the prober's progress, bounded by the deadline
    return True


def _by_tenth(delays_s: dict[int, float]) -> list[float]:
    ordered = [delays_s[k] * 1000 for k in sorted(delays_s)]
    size = max(1, len(ordered) // 10)
    return [round(percentile(ordered[i:i + size], 50), 1)
            for i in range(0, size * 10, size) if ordered[i:i + size]]


def _connections(pid: int, port: int) -> int:
    """Established TCP connections of process ``pid`` to ``127.0.0.1:port``."""
    with contextlib.suppress(psutil.Error):
        return sum(1 for c in psutil.Process(pid).net_connections(kind="tcp")
                   if c.raddr and c.raddr.port == port and c.status == psutil.CONN_ESTABLISHED)
    return -1


def _cpu_self() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def run(bootstrap: str, node: OpenSearchNode, broker_pid: int | None, work: Path,
        consumer: dict[str, int]) -> dict[str, Any]:
    """The measurement, against a running broker and node, with a new topic, group, index."""
    topic = new_topic(bootstrap, "e2e", 3)
    port = free_port()
    config = sink_config(work / f"{topic}.toml", bootstrap, node.url, topic, group=topic,
                         index=topic, settings=INDEX_SETTINGS, consumer=consumer)
    child = start_sink(config, port)
    handler = KafkaHandler(topic=topic, bootstrap_servers=bootstrap,
                           spill_dir=str(work / f"{topic}.spill"), close_timeout_ms=30_000,
                           **transport_option(TRANSPORT))
    log = _logger(handler)
    client = OpenSearch(hosts=[node.url], timeout=30)
    prober = Prober(client, topic)
    count = int(RATE * SECONDS)
    try:
        prober.start()
        # Warm-up: the sink has joined, installed its template and made the index.
        _log_paced(log, prober, PROBE_EVERY, first_probe=-1)
        if not _wait(prober, 180):
            raise RuntimeError(f"the warm-up record never became searchable: {child.poll()}")
        prober.delays_s.clear()
        parts = {"broker": broker_pid, "sink": child.pid, "opensearch": node.pid}
        cpu = {name: cpu_of(pid) for name, pid in parts.items() if pid}
        app_cpu, prober_cpu, started = _cpu_self(), prober.cpu_s, time.perf_counter()
        logging_s = _log_paced(log, prober, count, first_probe=0)
        kafka_port, store_port = int(bootstrap.rsplit(":", 1)[1]), node.port
        connections = {"application to the broker": _connections(os.getpid(), kafka_port),
                       "sink to the broker": _connections(child.pid, kafka_port),
                       "sink to OpenSearch": _connections(child.pid, store_port)}
        handler.flush(60)
        drained = _wait(prober, DRAIN_S)
        elapsed = time.perf_counter() - started
        prober.stop()
        cpu = {name: cpu_of(parts[name]) - before for name, before in cpu.items()}
        cpu["application"] = _cpu_self() - app_cpu - (prober.cpu_s - prober_cpu)
        sink_rss = _peak_rss(child.pid)
        buckets, latency_sum = bulk_metrics(port)
    finally:
        prober.stop()
        log.handlers[:] = []
        handler.close()
        stop_sink(child)
        delete_topics(bootstrap, [topic])
        client.indices.delete(index=topic, ignore_unavailable=True)
    delays_ms = [d * 1000 for d in prober.delays_s.values()]
    probes = count // PROBE_EVERY + (count % PROBE_EVERY > 0)
    return {
        "consumer": consumer, "rate_per_s": RATE, "seconds": SECONDS, "transport": TRANSPORT,
        "records": count,
        "logged_per_s": round(count / logging_s), "probes": probes,
        "probes_seen": len(delays_ms), "drained": drained, "poll_s": POLL_S,
        "searches": prober.searches, "prober_cpu_s": round(prober.cpu_s - prober_cpu, 2),
        "delay_ms": {"p50": round(percentile(delays_ms, 50), 1),
                     "p90": round(percentile(delays_ms, 90), 1),
                     "p99": round(percentile(delays_ms, 99), 1),
                     "max": round(max(delays_ms), 1), "min": round(min(delays_ms), 1)}
        if delays_ms else None,
        # The median delay of each tenth of the run, in logging order: a sink that keeps up
        # shows a flat line, one that falls behind a rising one.
        "p50_ms_by_tenth": _by_tenth(prober.delays_s),
        "wall_s": round(elapsed, 2),
        "cpu_s": {k: round(v, 2) for k, v in cpu.items()},
        "cpu_us_per_record": {k: round(v / count * 1e6, 1) for k, v in cpu.items()},
        "core_share": {k: round(v / elapsed, 3) for k, v in cpu.items()},
        "sink_peak_rss_mib": round(sink_rss / 2**20),
        "connections": connections,
        # The sink's bulks since its start (the warm-up's few included).
        "sink_bulks": buckets[-1][1] if buckets else 0,
        "sink_bulk_mean_ms": round(latency_sum / buckets[-1][1] * 1000, 1) if buckets else None,
        "sink_bulk_p50_ms": round(quantile(buckets, 0.5) * 1000, 1),
        "sink_bulk_p99_ms": round(quantile(buckets, 0.99) * 1000, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


@contextlib.contextmanager
def _broker(work: Path) -> Iterator[tuple[str, int | None]]:
    given = os.environ.get("KAFKALOG_BOOTSTRAP_SERVERS")
    if given:
        yield given, None
        return
    with KafkaBroker(work / "broker") as kafka:
        yield kafka.bootstrap, kafka.pid


def main(argv: list[str] | None = None) -> int:
    """Run it once; print the JSON, and write it to ``--out`` if given."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.e2e", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-e2e-") as tmp, \
            _broker(Path(tmp)) as (bootstrap, broker_pid), OpenSearchNode() as node:
        result: dict[str, Any] = {}
        for label, consumer in CONSUMERS.items():
            print(f"{label}: {RATE:,} records/s for {SECONDS:g} s", flush=True)
            result[label] = run(bootstrap, node, broker_pid, Path(tmp), consumer)
            print(json.dumps(result[label], indent=2), flush=True)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if all(r["drained"] for r in result.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
