"""Sections 2 and 3: sustained end-to-end throughput, and CPU seconds per 100k records.

Each run sends ``records`` records and ends when every one is acknowledged by the broker;
records/s = records / (first log call or send .. last acknowledgement). For kafkalog the end is
``handler.flush()`` returning with every record of the run counted as delivered in
``handler.stats()`` (acknowledged by the broker, not spilled). The CPU is this process's
user+sys time over the same interval, every thread included (kafkalog's worker, kafka-python's
sender, librdkafka's threads), per 100k records.

Two records are logged. The plain one (about 300 bytes of JSON, one extra) into kafkalog with
the same acks, compression, batch size (16384 bytes) and linger (5 ms) as a raw kafka-python
``send()`` loop and a raw confluent-kafka ``produce()`` loop, which send values that are
already JSON bytes: the floor of each client library. And the structured keyed record of
issue 19, ``log.info("user %s did %d", uid, n, extra={"uid": uid, "seq": n})``, into kafkalog
configured by ``logging.config.dictConfig`` with ``key="uid"`` and the default options (only
acks, compression and a queue large enough for a run set); uid is one of 1,000 users.

In every cell the same log calls into a ``NullHandler`` are timed too (rows starting with
:data:`CEILING`): no handler in the application can deliver records faster than the
application makes them, so that rate bounds what any handler can reach. The implementations of
a cell take turns, one run each per round, and a kafkalog row's ratio to its ceiling is the
median of its per-round ratios, so that a slow spell of the shared machine falls on both sides.
"""

from __future__ import annotations

import gc
import logging
import logging.config
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from confluent_kafka import Producer
from kafka import KafkaProducer

from benchmarks.caller_cost import (
    STRUCTURED,
    STRUCTURED_MESSAGE,
    kafkalog_transports,
    transport_option,
)
from benchmarks.harness import (
    FILLER,
    MESSAGE,
    Settings,
    cpu_seconds,
    delete_topics,
    new_topic,
    payloads,
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
# A queue that holds a whole run, so that a run measures delivery rather than the spill.
QUEUE: dict[str, Any] = {"queue_max_records": 1_000_000,
                         "queue_max_bytes": 1024 * 1024 * 1024}
USERS = [f"u-{k}" for k in range(1000)]

# One run: returns (seconds, CPU seconds, records acknowledged).
Run = Callable[[int], tuple[float, float, int]]


def log_calls(log: logging.Logger, kind: str, records: int) -> None:
    """The log calls of one run: the plain record ("") or the structured keyed one."""
    if kind == STRUCTURED:
        users = USERS
        for i in range(records):
            uid = users[i % 1000]
            log.info(STRUCTURED_MESSAGE, uid, i, extra={"uid": uid, "seq": i})
    else:
        for i in range(records):
            log.info(MESSAGE, "u-42", i, FILLER, extra={"user": "u-1"})


def bench_logger(name: str, handler: logging.Handler | None = None) -> logging.Logger:
    """A logger of its own, INFO, not propagating; ``handler`` replaces its handlers."""
    log = logging.getLogger(name)
    log.propagate = False
    log.setLevel(logging.INFO)
    if handler is not None:
        log.handlers[:] = [handler]
    return log


def handler_runner(log: logging.Logger, kind: str) -> tuple[Run, Callable[[], None]]:
    """Runs of kafkalog: ``log``'s only handler is a :class:`KafkaHandler`."""
    handler = log.handlers[0]
    assert isinstance(handler, KafkaHandler)

    def one(records: int) -> tuple[float, float, int]:
        before = handler.stats()["delivered"]
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        log_calls(log, kind, records)
        if not handler.flush(TIMEOUT_S):
            raise RuntimeError(f"kafkalog did not deliver in time: {handler.stats()}")
        elapsed, cpu = time.perf_counter() - t0, cpu_seconds() - cpu0
        return elapsed, cpu, handler.stats()["delivered"] - before

    def close() -> None:
        log.handlers[:] = []
        handler.close()

    return one, close


def plain_handler(bootstrap: str, topic: str, acks: str, codec: str, *, transport: str,
                  spill: Path) -> logging.Logger:
    """A logger into kafkalog for the plain record, with the raw loops' producer settings."""
    return bench_logger(f"bench.throughput.{topic}", KafkaHandler(
        topic=topic, bootstrap_servers=bootstrap, acks=acks, compression_type=codec,
        linger_ms=LINGER_MS, batch_size=BATCH_BYTES, spill_dir=str(spill),
        close_timeout_ms=30_000, **QUEUE, **transport_option(transport),
    ))


def structured_handlers(bootstrap: str, topics: dict[str, str], acks: str, codec: str,
                        spill: Path) -> dict[str, logging.Logger]:
    """Loggers into kafkalog for the structured keyed record, one per transport (name ->
    topic), made by one ``dictConfig`` call as an application would make them.

    ``dictConfig`` closes every handler that exists when it is called, so it must come
    before the cell's other handlers are made."""
    handlers: dict[str, Any] = {}
    loggers: dict[str, Any] = {}
    for name, topic in topics.items():
        handlers[name] = {
            "class": "kafkalog.KafkaHandler", "topic": topic, "bootstrap_servers": bootstrap,
            "key": "uid", "acks": acks, "compression_type": codec,
            "spill_dir": str(spill / topic), "close_timeout_ms": 30_000,
            **QUEUE, **transport_option(name),
        }
        loggers[f"bench.throughput.structured.{topic}"] = {
            "handlers": [name], "level": "INFO", "propagate": False}
    gc.collect()  # handlers of earlier sections that are garbage: not closed once more
    logging.config.dictConfig({"version": 1, "disable_existing_loggers": False,
                               "handlers": handlers, "loggers": loggers})
    return {name: logging.getLogger(f"bench.throughput.structured.{topic}")
            for name, topic in topics.items()}


def logging_alone_runner(name: str, kind: str) -> tuple[Run, Callable[[], None]]:
    """Runs of the same log calls into a ``NullHandler``: nothing is sent. No handler can
    deliver faster than the application can make the calls, so this is every in-process
    handler's ceiling (its records are counted as acknowledged)."""
    log = bench_logger(f"bench.throughput.null.{name}", logging.NullHandler())

    def one(records: int) -> tuple[float, float, int]:
        cpu0, t0 = cpu_seconds(), time.perf_counter()
        log_calls(log, kind, records)
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

    def close() -> None:
        producer.flush(10)

    return one, close


def kind_of(impl: str) -> str:
    """Which record a row logs: "" (plain) or STRUCTURED."""
    return STRUCTURED if impl.endswith(STRUCTURED) else ""


def measure(runners: dict[str, Run], settings: Settings) -> dict[str, Any]:
    """A warm-up run of each (a tenth of the records), then rounds in which every
    implementation runs once; per-run rates and CPU, and each kafkalog row's ratio to the
    ceiling of its record (the median of the per-round ratios)."""
    rates: dict[str, list[float]] = {impl: [] for impl in runners}
    cpu_per_100k: dict[str, list[float]] = {impl: [] for impl in runners}
    for one in runners.values():
        one(max(1000, settings.records // 10))
    for _ in range(settings.throughput_runs):
        for impl, one in runners.items():
            elapsed, cpu, acked = one(settings.records)
            if acked != settings.records:
                raise RuntimeError(f"{impl}: only {acked} of {settings.records} records "
                                   "acknowledged")
            rates[impl].append(settings.records / elapsed)
            cpu_per_100k[impl].append(cpu / settings.records * 100_000)
    rows: dict[str, Any] = {}
    for impl in runners:
        rows[impl] = {"records_per_s": summary(rates[impl]),
                      "cpu_s_per_100k": summary(cpu_per_100k[impl])}
        ceiling = CEILING + kind_of(impl)
        if impl.startswith("kafkalog") and ceiling in rates:
            rows[impl]["ratio_to_ceiling"] = round(statistics.median(
                r / c for r, c in zip(rates[impl], rates[ceiling], strict=True)), 2)
    return rows


def cell(bootstrap: str, acks: str, codec: str, *, transports: list[str], spill: Path,
         values: list[bytes], settings: Settings) -> dict[str, Any]:
    """One acks/compression setting: every implementation, taking turns."""
    made: list[tuple[Run, Callable[[], None]]] = []
    runners: dict[str, Run] = {}
    topics = {impl: new_topic(bootstrap, "tp") for impl in (
        [f"kafkalog ({t}){STRUCTURED}" for t in transports]
        + [f"kafkalog ({t})" for t in transports] + ["raw kafka-python", "raw confluent-kafka"])}
    try:
        # dictConfig first: it closes the handlers that exist when it runs.
        structured = structured_handlers(
            bootstrap, {t: topics[f"kafkalog ({t}){STRUCTURED}"] for t in transports},
            acks, codec, spill)
        made.append(logging_alone_runner(f"{acks}-{codec}", ""))
        runners[CEILING] = made[-1][0]
        for t in transports:
            impl = f"kafkalog ({t})"
            made.append(handler_runner(plain_handler(
                bootstrap, topics[impl], acks, codec, transport=t, spill=spill / topics[impl]),
                ""))
            runners[impl] = made[-1][0]
        made.append(kafka_python_runner(bootstrap, topics["raw kafka-python"], acks, codec,
                                        values))
        runners["raw kafka-python"] = made[-1][0]
        made.append(confluent_runner(bootstrap, topics["raw confluent-kafka"], acks, codec,
                                     values))
        runners["raw confluent-kafka"] = made[-1][0]
        made.append(logging_alone_runner(f"{acks}-{codec}-structured", STRUCTURED))
        runners[CEILING + STRUCTURED] = made[-1][0]
        for t in transports:
            made.append(handler_runner(structured[t], STRUCTURED))
            runners[f"kafkalog ({t}){STRUCTURED}"] = made[-1][0]
        rows = measure(runners, settings)
    finally:
        for _, close in made:
            close()
        delete_topics(bootstrap, list(topics.values()))
    label = f"acks={acks}, {codec}"
    for impl, r in rows.items():
        ratio = r.get("ratio_to_ceiling")
        print(f"  {label:16s} {impl:46s} {r['records_per_s']['median']:>9,.0f} rec/s  "
              f"{r['cpu_s_per_100k']['median']:5.2f} CPU s/100k"
              + (f"  {ratio:.2f}x ceiling" if ratio is not None else ""), flush=True)
    ratios = {}
    for t in transports:
        raw = rows["raw kafka-python" if t == "kafka-python" else "raw confluent-kafka"]
        ratios[f"kafkalog ({t}) / raw"] = round(
            rows[f"kafkalog ({t})"]["records_per_s"]["median"]
            / raw["records_per_s"]["median"], 2)
    ceiling = {f"{CEILING} / {raw}": round(rows[CEILING]["records_per_s"]["median"]
                                           / rows[raw]["records_per_s"]["median"], 2)
               for raw in ("raw kafka-python", "raw confluent-kafka")}
    return {"results": rows, "throughput_ratios": ratios, "ceiling_ratios": ceiling}


def run(bootstrap: str, settings: Settings) -> dict[str, Any]:
    """Throughput and CPU per 100k of every implementation in every acks/codec setting."""
    values = payloads(settings.records)
    available = kafkalog_transports()
    transports = [name for name, why_not in available.items() if why_not is None]
    out: dict[str, Any] = {
        "records_per_run": settings.records, "runs": settings.throughput_runs,
        "avg_value_bytes": round(sum(map(len, values)) / len(values)), "interleaved": True,
        "configs": {}, "skipped": {f"kafkalog ({name})": why_not
                                   for name, why_not in available.items() if why_not},
    }
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-") as tmp:
        for acks, codec in QUICK_CONFIGS if settings.quick else CONFIGS:
            out["configs"][f"acks={acks}, {codec}"] = cell(
                bootstrap, acks, codec, transports=transports, spill=Path(tmp), values=values,
                settings=settings)
    return out
