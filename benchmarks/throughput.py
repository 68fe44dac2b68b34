"""Sections 2 and 3: sustained end-to-end throughput, and CPU seconds per 100k records.

Each run sends ``records`` records of about 300 bytes of JSON and ends when every one is
acknowledged by the broker; records/s = records / (first send .. last acknowledgement). The CPU
is this process's user+sys time over the same interval, every thread included (kafkalog's
worker, kafka-python's sender, librdkafka's threads), per 100k records.

Compared, with the same acks, compression, batch size (16384 bytes) and linger (5 ms):
kafkalog with each transport (application -> logging -> JSON -> queue -> Kafka), a raw
kafka-python ``send()`` loop, and a raw confluent-kafka ``produce()`` loop. The raw loops send
values that are already JSON bytes: they are the floor of each client library. The same log
calls into a ``NullHandler`` are timed too: no handler in the application can deliver records
faster than the application makes them, so that rate bounds what any transport can reach.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from kafka import KafkaProducer

from benchmarks.caller_cost import kafkalog_transports, transport_option
from benchmarks.harness import (
    FILLER,
    MESSAGE,
    Settings,
    cpu_seconds,
    delete_topics,
    new_topic,
    payloads,
    repeat,
    summary,
)
from kafkalog import KafkaHandler

# The log calls alone: the most records/s any handler inside the application could deliver.
CEILING = "log calls alone (NullHandler)"
CONFIGS = [("1", "none"), ("1", "lz4"), ("all", "none"), ("all", "lz4")]
QUICK_CONFIGS = [("1", "none")]
BATCH_BYTES = 16384
LINGER_MS = 5
TIMEOUT_S = 300.0

# One run: returns (seconds, CPU seconds, records acknowledged).
Run = Callable[[int], tuple[float, float, int]]


def kafkalog_runner(bootstrap: str, topic: str, acks: str, codec: str, *, transport: str,
                    spill: Path) -> tuple[Run, Callable[[], None]]:
    """Runs of kafkalog, through a logger, with a queue large enough for a whole run (so the
    run measures delivery, not the spill)."""
    handler = KafkaHandler(
        topic=topic, bootstrap_servers=bootstrap, acks=acks, compression_type=codec,
        linger_ms=LINGER_MS, batch_size=BATCH_BYTES, spill_dir=str(spill),
        queue_max_records=1_000_000, queue_max_bytes=1024 * 1024 * 1024,
        close_timeout_ms=30_000, **transport_option(transport),
    )
    log = logging.getLogger(f"bench.throughput.{topic}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]

    def one(records: int) -> tuple[float, float, int]:
        before = handler.stats()["delivered"]
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        for i in range(records):
            log.info(MESSAGE, "u-42", i, FILLER, extra={"user": "u-1"})
        if not handler.flush(TIMEOUT_S):
            raise RuntimeError(f"kafkalog did not deliver in time: {handler.stats()}")
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        return elapsed, cpu, handler.stats()["delivered"] - before

    def close() -> None:
        log.handlers[:] = []
        handler.close()

    return one, close


def logging_alone_runner(topic: str) -> tuple[Run, Callable[[], None]]:
    """Runs of the same log calls into a ``NullHandler``: nothing is sent. No handler can
    deliver faster than the application can make the calls, so this is every in-process
    handler's ceiling (its records are counted as acknowledged)."""
    log = logging.getLogger(f"bench.throughput.null.{topic}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [logging.NullHandler()]

    def one(records: int) -> tuple[float, float, int]:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        for i in range(records):
            log.info(MESSAGE, "u-42", i, FILLER, extra={"user": "u-1"})
        return time.perf_counter() - t0, cpu_seconds() - cpu0, records

    def close() -> None:
        log.handlers[:] = []

    return one, close


def kafka_python_runner(bootstrap: str, topic: str, acks: str, codec: str,
                        values: list[bytes]) -> tuple[Run, Callable[[], None]]:
    """Runs of a plain ``KafkaProducer.send()`` loop, then ``flush()``."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, acks=acks if acks == "all" else int(acks),
        compression_type=None if codec == "none" else codec, linger_ms=LINGER_MS,
        batch_size=BATCH_BYTES, enable_idempotence=acks == "all",
    )

    def one(records: int) -> tuple[float, float, int]:
        send = producer.send
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        futures = [send(topic, value=values[i]) for i in range(records)]
        producer.flush(timeout=TIMEOUT_S)
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        return elapsed, cpu, sum(1 for f in futures if f.succeeded())

    return one, lambda: producer.close(timeout=10)


def confluent_runner(bootstrap: str, topic: str, acks: str, codec: str,
                     values: list[bytes]) -> tuple[Run, Callable[[], None]]:
    """Runs of a plain confluent-kafka ``produce()`` loop (polling when its queue is full),
    then ``flush()``; a delivery callback counts the acknowledged records."""
    producer = Producer({
        "bootstrap.servers": bootstrap, "acks": acks, "compression.type": codec,
        "linger.ms": LINGER_MS, "batch.size": BATCH_BYTES,
        "enable.idempotence": acks == "all",
    })
    acked = [0]

    def delivered(err: Any, _msg: Any) -> None:
        if err is None:
            acked[0] += 1

    def one(records: int) -> tuple[float, float, int]:
        acked[0] = 0
        produce, poll = producer.produce, producer.poll
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        for i in range(records):
            while True:
                try:
                    produce(topic, values[i], on_delivery=delivered)
                    break
                except BufferError:  # its local queue is full: serve callbacks, then retry
                    poll(0.01)
        producer.flush(TIMEOUT_S)
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        return elapsed, cpu, acked[0]

    return one, lambda: producer.flush(10)


def measure(one: Run, settings: Settings) -> dict[str, Any]:
    """Warm-up runs (a tenth of the records), then the runs; per-run rates and CPU."""
    rates: list[float] = []
    cpu_per_100k: list[float] = []

    def run_full() -> float:
        elapsed, cpu, acked = one(settings.records)
        if acked != settings.records:
            raise RuntimeError(f"only {acked} of {settings.records} records acknowledged")
        rates.append(settings.records / elapsed)
        cpu_per_100k.append(cpu / settings.records * 100_000)
        return elapsed

    for _ in range(settings.warmup):
        one(max(1000, settings.records // 10))
    repeat(run_full, 0, settings.throughput_runs)
    return {"records_per_s": summary(rates), "cpu_s_per_100k": summary(cpu_per_100k)}


def run(bootstrap: str, settings: Settings, *, only_kafka_python: bool = False) -> dict[str, Any]:
    """Throughput and CPU per 100k of every implementation in every acks/codec setting."""
    values = payloads(settings.records)
    transports = {"kafka-python": None} if only_kafka_python else kafkalog_transports()
    out: dict[str, Any] = {"records_per_run": settings.records, "runs": settings.throughput_runs,
                           "avg_value_bytes": round(sum(map(len, values)) / len(values)),
                           "configs": {}, "skipped": {}}
    topics: list[str] = []
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-") as tmp:
        for acks, codec in QUICK_CONFIGS if settings.quick else CONFIGS:
            label = f"acks={acks}, {codec}"
            rows: dict[str, Any] = {}
            makers: dict[str, Callable[[str], tuple[Run, Callable[[], None]]]] = {}
            for name, why_not in transports.items():
                if why_not is not None:
                    out["skipped"][f"kafkalog ({name})"] = why_not
                    continue
                makers[f"kafkalog ({name})"] = (
                    lambda t, name=name, a=acks, c=codec: kafkalog_runner(  # type: ignore[misc]
                        bootstrap, t, a, c, transport=name, spill=Path(tmp) / f"{t}-spill"))
            makers["raw kafka-python"] = lambda t, a=acks, c=codec: kafka_python_runner(
                bootstrap, t, a, c, values)
            if not only_kafka_python:
                makers["raw confluent-kafka"] = lambda t, a=acks, c=codec: confluent_runner(
                    bootstrap, t, a, c, values)
                makers[CEILING] = logging_alone_runner
            for impl, make in makers.items():
                topic = new_topic(bootstrap, "tp")
                topics.append(topic)
                one, close = make(topic)
                try:
                    rows[impl] = measure(one, settings)
                finally:
                    close()
                r = rows[impl]
                print(f"  {label:16s} {impl:28s} {r['records_per_s']['median']:>9,.0f} rec/s  "
                      f"{r['cpu_s_per_100k']['median']:5.2f} CPU s/100k", flush=True)
                delete_topics(bootstrap, [topic])
            ratios = {}
            for name in transports:
                mine = rows.get(f"kafkalog ({name})")
                raw = rows.get("raw kafka-python" if name == "kafka-python"
                               else "raw confluent-kafka")
                if mine and raw:
                    ratios[f"kafkalog ({name}) / raw"] = round(
                        mine["records_per_s"]["median"] / raw["records_per_s"]["median"], 2)
            ceiling = {}
            for raw in ("raw kafka-python", "raw confluent-kafka"):
                if CEILING in rows and raw in rows:
                    ceiling[f"{CEILING} / {raw}"] = round(
                        rows[CEILING]["records_per_s"]["median"]
                        / rows[raw]["records_per_s"]["median"], 2)
            out["configs"][label] = {"results": rows, "throughput_ratios": ratios,
                                     "ceiling_ratios": ceiling}
    return out
