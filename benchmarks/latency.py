"""Section 4: latency from the log call to the broker, p50 and p99, at a steady 5k records/s.

The topic stamps each record with the broker's append time (``LogAppendTime``), so one clock
(this machine's) measures every record, whichever client sent it: latency = append time - the
time of the log call (kafkalog's ``@timestamp``) or of ``send()``/``produce()`` (raw clients,
whose value carries it). The broker's stamp has millisecond resolution.
"""

from __future__ import annotations

import datetime
import logging
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
from confluent_kafka import Producer
from kafka import KafkaProducer

from benchmarks.caller_cost import kafkalog_transports, transport_option
from benchmarks.harness import FILLER, MESSAGE, Settings, consume, delete_topics, new_topic
from kafkalog import KafkaHandler

RATE = 5000  # records per second
RUNS = 3


def paced(count: int, send: Callable[[int], None]) -> None:
    """Call ``send(i)`` for i in range(count) at RATE per second (by the clock, not sleeps)."""
    start = time.perf_counter()
    for i in range(count):
        delay = start + i / RATE - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        send(i)


def _epoch(ts: str) -> float:
    return datetime.datetime.fromisoformat(ts.replace("Z", "+00:00")).timestamp()


def kafkalog_run(bootstrap: str, topic: str, count: int, transport: str, spill: Path) -> None:
    """Log ``count`` records at the steady rate through kafkalog."""
    handler = KafkaHandler(topic=topic, bootstrap_servers=bootstrap, spill_dir=str(spill),
                           close_timeout_ms=30_000, **transport_option(transport))
    log = logging.getLogger(f"bench.latency.{topic}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]
    try:
        log.info("warm-up: connect before the clock starts")
        handler.flush(30)
        paced(count, lambda i: log.info(MESSAGE, "u-42", i, FILLER))
        handler.flush(60)
    finally:
        log.handlers[:] = []
        handler.close()


def kafka_python_run(bootstrap: str, topic: str, count: int) -> None:
    """Send ``count`` records at the steady rate with a raw KafkaProducer."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                             enable_idempotence=True)
    try:
        producer.send(topic, value=orjson.dumps({"warmup": True})).get(30)
        paced(count, lambda i: producer.send(
            topic, value=orjson.dumps({"t": time.time(), "i": i, "pad": FILLER * 6})))
        producer.flush(60)
    finally:
        producer.close(10)


def confluent_run(bootstrap: str, topic: str, count: int) -> None:
    """Produce ``count`` records at the steady rate with a raw confluent-kafka Producer."""
    producer = Producer({"bootstrap.servers": bootstrap, "acks": "all", "linger.ms": 5,
                         "enable.idempotence": True})
    producer.produce(topic, orjson.dumps({"warmup": True}))
    producer.flush(30)

    def send(i: int) -> None:
        producer.produce(topic, orjson.dumps({"t": time.time(), "i": i, "pad": FILLER * 6}))
        producer.poll(0)

    paced(count, send)
    producer.flush(60)


def latencies_ms(bootstrap: str, topic: str, count: int) -> list[float]:
    """Append time - send time of each record read back from ``topic`` (warm-up excluded)."""
    out = []
    for rec in consume(bootstrap, topic, count + 1, timeout=120):
        doc = orjson.loads(rec.value)
        if "@timestamp" in doc:
            if doc.get("message", "").startswith("warm-up"):
                continue
            sent = _epoch(doc["@timestamp"])
        elif "t" in doc:
            sent = doc["t"]
        else:
            continue
        out.append(rec.timestamp - sent * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100), nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def run(bootstrap: str, settings: Settings) -> dict[str, Any]:
    """p50/p99 per implementation: the median over RUNS runs of ``latency_s`` each."""
    count = int(RATE * settings.latency_s)
    rows: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-") as tmp:
        impls: dict[str, Callable[[str], None]] = {}
        for name, why_not in kafkalog_transports().items():
            if why_not is not None:
                skipped[f"kafkalog ({name})"] = why_not
                continue
            impls[f"kafkalog ({name})"] = lambda t, name=name: kafkalog_run(  # type: ignore[misc]
                bootstrap, t, count, name, Path(tmp) / t)
        impls["raw kafka-python"] = lambda t: kafka_python_run(bootstrap, t, count)
        impls["raw confluent-kafka"] = lambda t: confluent_run(bootstrap, t, count)
        for impl, send in impls.items():
            p50s, p99s = [], []
            for _ in range(RUNS):
                topic = new_topic(bootstrap, "lat", config={
                    "message.timestamp.type": "LogAppendTime"})
                send(topic)
                lat = latencies_ms(bootstrap, topic, count)
                delete_topics(bootstrap, [topic])
                if len(lat) != count:
                    raise RuntimeError(f"{impl}: read back {len(lat)} of {count} records")
                p50s.append(percentile(lat, 50))
                p99s.append(percentile(lat, 99))
            rows[impl] = {"p50_ms": round(statistics.median(p50s), 2),
                          "p99_ms": round(statistics.median(p99s), 2),
                          "p50_runs": [round(v, 2) for v in p50s],
                          "p99_runs": [round(v, 2) for v in p99s]}
            print(f"  {impl:28s} p50 {rows[impl]['p50_ms']:6.2f} ms  "
                  f"p99 {rows[impl]['p99_ms']:6.2f} ms", flush=True)
    return {"rate_per_s": RATE, "seconds_per_run": settings.latency_s, "runs": RUNS,
            "acks": "all", "results": rows, "skipped": skipped}
