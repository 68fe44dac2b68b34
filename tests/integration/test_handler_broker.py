"""KafkaHandler against a real Apache Kafka broker: what users see end to end."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import logging
import logging.config
import math
import multiprocessing
import os
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import defaultdict
from typing import Any

import orjson
import pytest
from broker.kraft import free_port
from kafka_read import consume, values
from murmur2_reference import java_partition

from kafkalog import KafkaHandler


def test_dictconfig_round_trip(kafka_broker: Any, topic: str, transport_name: str) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "kafka": {
                    "class": "kafkalog.KafkaHandler",
                    "topic": topic,
                    "bootstrap_servers": kafka_broker.bootstrap,
                    "key": "uid",
                    "linger_ms": "5",
                    "transport": transport_name,
                    "static_fields": {"service": "billing", "env": "test"},
                }
            },
            "loggers": {"it.dictconfig": {"handlers": ["kafka"], "level": "INFO"}},
        }
    )
    log = logging.getLogger("it.dictconfig")
    handler = next(h for h in log.handlers if isinstance(h, KafkaHandler))
    try:
        log.info("paid %s", "invoice-7", extra={"uid": "u-1", "amount": 12.5})
        try:
            raise KeyError("missing")
        except KeyError:
            log.exception("lookup failed", extra={"uid": "u-1"})
        assert handler.flush(30)
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})

    records = consume(kafka_broker.bootstrap, topic, 2)
    assert len(records) == 2
    assert {r.key for r in records} == {b"u-1"}
    assert len({r.partition for r in records}) == 1
    by_msg = {v["message"]: v for v in values(records)}
    info = by_msg["paid invoice-7"]
    assert info["level"] == "INFO"
    assert info["logger"] == "it.dictconfig"
    assert info["uid"] == "u-1"
    assert info["amount"] == 12.5
    assert info["service"] == "billing"
    assert info["env"] == "test"
    assert info["function"] == "test_dictconfig_round_trip"
    assert info["host"] == socket.gethostname()
    assert info["process"] == os.getpid()
    stamp = dt.datetime.strptime(info["@timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ")
    assert abs(stamp.replace(tzinfo=dt.timezone.utc).timestamp() - time.time()) < 120
    error = by_msg["lookup failed"]
    assert error["exception"]["type"].endswith("KeyError")
    assert "raise KeyError" in error["exception"]["stacktrace"]
    assert info["id"] != error["id"]


def test_four_threads_every_record_exactly_once_in_order(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, key="thread_key")
    logger.addHandler(handler)
    threads_n, per_thread = 4, 5000

    def work(t: int) -> None:
        for i in range(per_thread):
            logger.info("r", extra={"thread_key": f"t{t}", "t": t, "i": i})

    threads = [threading.Thread(target=work, args=(t,)) for t in range(threads_n)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
    assert handler.flush(60)
    total = threads_n * per_thread
    records = consume(kafka_broker.bootstrap, topic, total, timeout_s=120)
    got = values(records)
    assert len(got) == total
    assert len({(v["t"], v["i"]) for v in got}) == total  # exactly once
    assert len({v["id"] for v in got}) == total
    seen: dict[int, list[int]] = defaultdict(list)
    for v in got:  # records come back partition by partition, each in offset order
        seen[v["t"]].append(v["i"])
    for t in range(threads_n):
        assert seen[t] == list(range(per_thread)), f"thread {t} out of order"
    stats = handler.stats()
    assert stats["delivered"] == total
    assert stats["failed"] == stats["dropped"] == 0


def test_keys_land_on_the_java_murmur2_partition(
    kafka_broker: Any, topic: str, logger: logging.Logger, transport_name: str
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, key="uid",
                           transport=transport_name)
    logger.addHandler(handler)
    keys = [f"user-{i}" for i in range(60)] + ["ü-ñicode", "21", "foobar"]
    for k in keys:
        logger.info("k", extra={"uid": k})
    assert handler.flush(30)
    records = consume(kafka_broker.bootstrap, topic, len(keys))
    assert len(records) == len(keys)
    for r in records:
        assert r.partition == java_partition(r.key, 3), r.key
    assert {r.partition for r in records} == {0, 1, 2}


def test_pinned_partition_and_unkeyed_spread(
    kafka_broker: Any, topic: str, logger: logging.Logger, transport_name: str
) -> None:
    pinned = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, partition=2,
                          transport=transport_name)
    logger.addHandler(pinned)
    for i in range(20):
        logger.info("pinned %d", i)
    assert pinned.flush(30)
    logger.removeHandler(pinned)
    pinned.close()
    records = consume(kafka_broker.bootstrap, topic, 20)
    assert {r.partition for r in records} == {2}

    spread = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, linger_ms=0,
                          batch_size=1024, transport=transport_name)
    logger.addHandler(spread)
    for i in range(3000):
        logger.info("spread %d", i)
    assert spread.flush(30)
    records = consume(kafka_broker.bootstrap, topic, 3020)
    unkeyed = [r for r in records if orjson.loads(r.value)["message"].startswith("spread")]
    assert len(unkeyed) == 3000
    assert {r.partition for r in unkeyed} == {0, 1, 2}


class Colour(enum.Enum):
    RED = "red"


class Unprintable:
    def __repr__(self) -> str:
        raise RuntimeError("no repr")

    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_weird_values_are_all_delivered(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap)
    logger.addHandler(handler)
    odd: dict[str, Any] = {
        "when": dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc),
        "day": dt.date(2026, 1, 2),
        "price": decimal.Decimal("12.3400"),
        "ident": uuid.UUID(int=7),
        "colour": Colour.RED,
        "tags": {"a"},
        "blob": b"\x00\xffbytes",
        "huge": 2**100,
        "inf": math.inf,
        "nan": math.nan,
        "by_int": {1: "one", (2, 3): "tuple"},
        "surrogate": "bad \udc80 text",
        "unprintable": Unprintable(),
    }
    for name, value in odd.items():
        logger.info("odd %s", name, extra={"field": name, "value": value})
    logger.info("surrogate in message \ud800 here")
    logger.info("unprintable arg %s", Unprintable())
    assert handler.flush(30)
    records = consume(kafka_broker.bootstrap, topic, len(odd) + 2)
    got = values(records)
    assert len(got) == len(odd) + 2
    by_field = {v["field"]: v["value"] for v in got if "field" in v}
    assert set(by_field) == set(odd)
    assert by_field["price"] == "12.3400"
    assert by_field["ident"] == str(uuid.UUID(int=7))
    assert by_field["colour"] == "red"
    assert by_field["tags"] == ["a"]
    assert by_field["huge"] == str(2**100)
    assert by_field["day"] == "2026-01-02"
    assert "Unprintable" in by_field["unprintable"]
    assert handler.stats()["failed"] == 0


def test_five_megabyte_message_is_truncated_and_delivered(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap)
    logger.addHandler(handler)
    big = "x" * (5 * 1024 * 1024)
    logger.info(big)
    logger.info("after the big one")
    assert handler.flush(30)
    records = consume(kafka_broker.bootstrap, topic, 2)
    got = values(records)
    assert len(got) == 2
    truncated = next(v for v in got if v.get("truncated"))
    assert truncated["message"].startswith("xxxx")
    assert len(records[0].value) <= 1048576
    assert any(v["message"] == "after the big one" for v in got)


def test_kafka_python_debug_logging_does_not_loop(kafka_broker: Any, topic: str) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap)
    root = logging.getLogger()
    kafka_logger = logging.getLogger("kafka")
    old_level, old_root_level = kafka_logger.level, root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    kafka_logger.setLevel(logging.DEBUG)
    try:
        for i in range(200):
            logging.getLogger("it.app").info("app %d", i)
        assert handler.flush(30)
    finally:
        root.removeHandler(handler)
        kafka_logger.setLevel(old_level)
        root.setLevel(old_root_level)
        handler.close()
    got = values(consume(kafka_broker.bootstrap, topic, 200))
    assert len(got) == 200
    assert {v["logger"] for v in got} == {"it.app"}


def test_fork_child_records_are_delivered(
    kafka_broker: Any, topic: str, logger: logging.Logger, transport_name: str
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                           transport=transport_name)
    logger.addHandler(handler)
    logger.info("parent before fork")
    assert handler.flush(30)  # the parent now has a live producer and worker thread
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            logger.info("child %d", os.getpid())
            code = 0 if handler.flush(30) else 2
        finally:
            os._exit(code)
    logger.info("parent after fork")
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert handler.flush(30)
    got = sorted(v["message"] for v in values(consume(kafka_broker.bootstrap, topic, 3)))
    assert got == ["child " + str(pid), "parent after fork", "parent before fork"]


def _mp_child(log_name: str) -> None:
    logging.getLogger(log_name).info("from multiprocessing child")  # no flush: exit hooks do it


def test_multiprocessing_fork_child_delivers_without_explicit_flush(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, linger_ms=500)
    logger.addHandler(handler)
    logger.info("parent")
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_mp_child, args=(logger.name,)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert handler.flush(30)
    got = [v["message"] for v in values(consume(kafka_broker.bootstrap, topic, 4))]
    assert sorted(got) == ["from multiprocessing child"] * 3 + ["parent"]


def test_flush_and_close_are_bounded_when_the_broker_is_unreachable(
    logger: logging.Logger, transport_name: str
) -> None:
    handler = KafkaHandler(
        topic="nowhere",
        bootstrap_servers=f"127.0.0.1:{free_port()}",
        transport=transport_name,
        close_timeout_ms=1000,
        spill_dir=None,  # without a spill store, what can not be delivered is counted lost
    )
    logger.addHandler(handler)
    started = time.perf_counter()
    for i in range(1000):
        logger.error("lost cause %d", i)
    emit_s = time.perf_counter() - started
    started = time.perf_counter()
    assert handler.flush(timeout=0.5) is False
    flush_s = time.perf_counter() - started
    logger.removeHandler(handler)
    started = time.perf_counter()
    handler.close()
    close_s = time.perf_counter() - started
    assert emit_s < 2.0  # 1000 calls; each one is a format and an append
    assert flush_s < 1.5
    assert close_s < 3.0  # close_timeout_ms + the worker's last give-up
    stats = handler.stats()
    assert stats["delivered"] == 0
    assert stats["failed"] + stats["dropped"] == 1000


# CPython 3.12.0 and 3.12.1 start no thread in an atexit hook (3.12.2 allows it again), and
# kafka-python needs one to connect: records still queued at exit are spilled there instead,
# and the next process delivers them.
_NO_THREADS_AT_EXIT = (3, 12, 0) <= sys.version_info[:3] < (3, 12, 2)


def test_interpreter_exit_delivers_queued_records(
    kafka_broker: Any, topic: str, transport_name: str, tmp_path: Any
) -> None:
    script = f"""
import logging, sys
from kafkalog import KafkaHandler
h = KafkaHandler(topic={topic!r}, bootstrap_servers={kafka_broker.bootstrap!r}, linger_ms=60000,
                 transport={transport_name!r}, spill_dir={str(tmp_path)!r})
log = logging.getLogger("exit")
log.addHandler(h)
log.setLevel(logging.INFO)
for i in range(int(sys.argv[1])):
    log.info("at exit %d", i)
if sys.argv[2:] == ["close"]:
    h.close()
"""
    subprocess.run([sys.executable, "-c", script, "500"], check=True, timeout=60)
    expected = [f"at exit {i}" for i in range(500)]
    if transport_name == "kafka-python" and _NO_THREADS_AT_EXIT:
        assert any(tmp_path.glob("*.seg"))  # spilled, not dead-lettered as refused
        assert not any(tmp_path.glob("*.dead"))
        # The next process replays them, with its own first record.
        subprocess.run([sys.executable, "-c", script, "1", "close"], check=True, timeout=60)
        expected.append("at exit 0")
    got = values(consume(kafka_broker.bootstrap, topic, len(expected)))
    assert sorted(v["message"] for v in got) == sorted(expected)


def test_emit_returns_quickly_when_topic_metadata_is_missing(
    kafka_broker: Any, logger: logging.Logger
) -> None:
    # An invalid-for-auto-create situation is hard to stage; a topic on a closed port is the
    # worst case for kafka-python's send(), which would block for max_block_ms in emit().
    handler = KafkaHandler(topic="never-created", bootstrap_servers=f"127.0.0.1:{free_port()}")
    logger.addHandler(handler)
    worst = 0.0
    for i in range(200):
        started = time.perf_counter()
        logger.warning("quick %d", i)
        worst = max(worst, time.perf_counter() - started)
    assert worst < 0.5
    assert orjson.dumps(handler.stats())  # stats stay JSON-serialisable


@pytest.mark.parametrize("codec", ["gzip", "snappy", "lz4", "zstd"])
def test_compressed_batches_round_trip(
    kafka_broker: Any, topic: str, logger: logging.Logger, codec: str, transport_name: str
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                           compression_type=codec, acks="1", transport=transport_name)
    logger.addHandler(handler)
    for i in range(500):
        logger.info("compressed %d %s", i, "abc" * 20)
    assert handler.flush(30)
    got = values(consume(kafka_broker.bootstrap, topic, 500))
    assert sorted(int(v["message"].split()[1]) for v in got) == list(range(500))


# Run in a fresh interpreter: what the handler's threads import while it connects and delivers.
_IMPORTS_PROBE = """
import logging, sys, threading
from kafkalog import KafkaHandler
handler = KafkaHandler(topic=sys.argv[1], bootstrap_servers=sys.argv[2], spill_dir=None,
                       transport=sys.argv[3])
before = set(sys.modules)
log = logging.getLogger("probe")
log.propagate = False
log.addHandler(handler)
log.warning("imports probe")
assert handler.flush(30), handler.stats()
handler.close()
print(" ".join(sorted(set(sys.modules) - before)))
"""


def test_background_threads_import_nothing(
    kafka_broker: Any, topic: str, transport_name: str
) -> None:
    """A module first imported on a background thread can hang a forked child for good: if
    the fork lands while that thread holds the module's import lock, the child's own thread
    waits on it forever (the cause of a gunicorn --preload worker that never connected:
    ``socket.getaddrinfo`` importing ``encodings.idna`` on the connect thread)."""
    done = subprocess.run(
        [sys.executable, "-c", _IMPORTS_PROBE, topic, kafka_broker.bootstrap, transport_name],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == []
    assert consume(kafka_broker.bootstrap, topic, 1)[0].value.find(b"imports probe") > 0
