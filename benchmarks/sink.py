"""``kafkalog sink`` indexing a topic into the local OpenSearch, beside ``parallel_bulk``.

    python -m benchmarks.sink                 # 500k records (KAFKALOG_BENCH_SINK_RECORDS)
    python -m benchmarks.sink --out benchmarks/results/sink.json

Records of the handler's default schema (about 300 bytes) are produced to a topic of three
partitions; then the sink (``python -m kafkalog.cli sink``, a child process, 2 bulk workers,
bulks of 2000, the index's refresh off) indexes them, timed from its start until the group has
committed every offset (each record acknowledged by the store; commits every second, so the
end is seen up to a second late). Its CPU is the child's user+sys, its peak RSS ``VmHWM``, the
bulk latency p50/p99 from its Prometheus histogram (bucket bounds, so approximate).

The ceiling, in the same run: the same documents bulk-indexed straight from memory with
opensearch-py's ``parallel_bulk`` (2 threads, chunks of 2000), once before and once after the
sink, so that the machine's drift falls on both sides; the ratio is against their mean.
Needs Java 17 and the OpenSearch jars (tests/search), like the integration tests.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from opensearchpy import OpenSearch, helpers

from benchmarks.harness import ROOT, broker, free_port, new_topic, payloads
from benchmarks.ship_proc import _peak_rss

sys.path.insert(0, str(ROOT / "tests"))
from search.opensearch import OpenSearchNode

ENV_RECORDS = "KAFKALOG_BENCH_SINK_RECORDS"
WORKERS = 2
CHUNK = 2000
INDEX_SETTINGS = {"number_of_shards": 1, "number_of_replicas": 0, "refresh_interval": "-1"}


def _produce(bootstrap: str, topic: str, values: list[bytes]) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20, batch_size=1 << 20)
    for value in values:
        producer.send(topic, value)
    producer.flush()
    producer.close()


def _committed(consumer: KafkaConsumer, topic: str) -> int:
    total = 0
    for p in range(3):
        found = consumer.committed(TopicPartition(topic, p), timeout_ms=5000)
        total += int(found or 0)
    return total


def _quantile(buckets: list[tuple[float, float]], q: float) -> float:
    """The upper bound of the bucket holding quantile ``q`` of a cumulative histogram."""
    total = buckets[-1][1] if buckets else 0
    for bound, count in buckets:
        if total and count >= q * total:
            return bound
    return float("nan")


def _latency_buckets(port: int) -> list[tuple[float, float]]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10).read()
    out = []
    for line in text.decode().splitlines():
        if line.startswith("kafkalog_sink_bulk_latency_seconds_bucket"):
            le = line.split('le="')[1].split('"')[0]
            out.append((float("inf") if le == "+Inf" else float(le), float(line.split()[-1])))
    return out


def run_sink(bootstrap: str, url: str, topic: str, count: int, work: Path) -> dict[str, Any]:
    """Index ``topic`` with the sink as a child; what it took."""
    port = free_port()
    config = work / "sink.toml"
    config.write_text(
        f'topics = ["{topic}"]\ngroup = "bench-sink"\nbootstrap_servers = "{bootstrap}"\n'
        f'to = "opensearch"\nhosts = ["{url}"]\nindex = "bench-sink"\n'
        f"bulk_workers = {WORKERS}\nbulk_max_records = {CHUNK}\n"
        f"[template_settings]\n" + "".join(f'{k} = "{v}"\n' for k, v in INDEX_SETTINGS.items()))
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id="bench-sink",
                             enable_auto_commit=False)
    started = time.monotonic()
    child = subprocess.Popen([sys.executable, "-m", "kafkalog.cli", "sink", "--config",
                              str(config), "--metrics-port", str(port)],
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = started + 1800
        while _committed(consumer, topic) < count:
            if child.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the sink stopped or stalled: {child.communicate()[0]}")
            time.sleep(0.2)
        seconds = time.monotonic() - started
        buckets = _latency_buckets(port)
        with open(f"/proc/{child.pid}/stat", encoding="ascii") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu_s = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        peak = _peak_rss(child.pid)
    finally:
        child.send_signal(signal.SIGTERM)
        child.communicate(timeout=60)
        consumer.close()
    return {"docs_per_s": count / seconds, "seconds": seconds, "cpu_s": cpu_s,
            "cpu_us_per_doc": cpu_s / count * 1e6, "peak_rss_mib": peak / 2**20,
            "bulk_p50_s": _quantile(buckets, 0.5), "bulk_p99_s": _quantile(buckets, 0.99)}


def run_ceiling(client: OpenSearch, index: str, values: list[bytes]) -> float:
    """``parallel_bulk`` from memory into a fresh index: documents per second."""
    client.indices.create(index=index, body={"settings": INDEX_SETTINGS})
    docs = [orjson.loads(v) for v in values]
    actions = ({"_index": index, "_id": d["id"], "_source": d} for d in docs)
    started = time.monotonic()
    for ok, item in helpers.parallel_bulk(client, actions, chunk_size=CHUNK,
                                          thread_count=WORKERS):
        if not ok:
            raise RuntimeError(f"parallel_bulk refused a document: {item}")
    return len(values) / (time.monotonic() - started)


def main(argv: list[str] | None = None) -> int:
    """Run the comparison once; print it, and write it to ``--out`` if given."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.sink", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    count = int(os.environ.get(ENV_RECORDS, "500000"))
    values = payloads(count)
    # The node makes its own directory: one its unprivileged user can read (see tests/search).
    with broker() as bootstrap, tempfile.TemporaryDirectory() as tmp, OpenSearchNode() as node:
        client = OpenSearch(hosts=[node.url], timeout=120)
        topic = new_topic(bootstrap, "sink")
        _produce(bootstrap, topic, values)
        before = run_ceiling(client, "bench-ceiling-1", values)
        sink = run_sink(bootstrap, node.url, topic, count, Path(tmp))
        after = run_ceiling(client, "bench-ceiling-2", values)
        client.indices.refresh(index="bench-sink")
        indexed = int(client.count(index="bench-sink")["count"])
    ceiling = (before + after) / 2
    result = {"records": count, "indexed": indexed, "sink": sink,
              "parallel_bulk_docs_per_s": [before, after],
              "ratio": sink["docs_per_s"] / ceiling,
              "load_average": os.getloadavg()}
    print(json.dumps(result, indent=2))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if indexed == count else 1


if __name__ == "__main__":
    sys.exit(main())
