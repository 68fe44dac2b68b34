"""KafkaHandler with an in-memory transport: queueing, batching, retries, flush, close, fork."""

from __future__ import annotations

import logging
import logging.config
import os
import threading
import time

import orjson
import pytest

from kafkalog import KafkaHandler, TransportError
from kafkalog.testing import MemoryTransport


def make(transport: MemoryTransport, **options: object) -> KafkaHandler:
    opts: dict[str, object] = {"topic": "t", "linger_ms": 0, "retry_backoff_ms": 1,
                               "spill_dir": None, "overflow_policy": "drop_newest"}
    opts.update(options)
    return KafkaHandler(transport_factory=MemoryTransport.factory(transport), **opts)


def test_records_arrive_as_json_in_order(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = make(transport)
    logger.addHandler(handler)
    for i in range(100):
        logger.info("message %d", i, extra={"n": i})
    assert handler.flush(30.0)
    messages = transport.messages()
    assert [m["n"] for m in messages] == list(range(100))
    assert messages[0]["message"] == "message 0"
    assert handler.stats()["delivered"] == 100
    assert handler.stats()["enqueued"] == 100


def test_key_from_record_attribute_and_callable(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    keyed = make(transport, key="uid")
    logger.addHandler(keyed)
    logger.info("a", extra={"uid": 42})
    logger.info("b")
    logger.info("c", extra={"uid": "u-\u00e9"})
    logger.info("d", extra={"uid": "lone \ud800"})  # escaped, as str keys always were
    logger.info("e", extra={"uid": b"raw"})
    assert keyed.flush(30.0)
    assert [k for _, k in transport.records] == [
        b"42", None, "u-\u00e9".encode(), b"lone \\ud800", b"raw"]

    other = MemoryTransport()
    handler = make(other, key=lambda r: f"{r.levelname}-x")
    logger.addHandler(handler)
    logger.warning("c")
    assert handler.flush(30.0)
    assert other.records[0][1] == b"WARNING-x"


def test_a_record_refused_only_alongside_another_is_delivered(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    # kafka-python fails a whole batch after one fatal error; alone, the record goes through.
    transport.fail_next = [TransportError("batch poisoned", retriable=False)]
    handler = make(transport)
    logger.addHandler(handler)
    logger.error("innocent")
    assert handler.flush(30.0) is True
    assert [m["message"] for m in transport.messages()] == ["innocent"]
    assert handler.stats()["dead_lettered"] == 0


def test_retriable_failures_are_retried_until_delivered(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    transport.fail_next = [TransportError("down", retriable=True)] * 3
    handler = make(transport)
    logger.addHandler(handler)
    logger.error("survives")
    assert handler.flush(30.0)
    assert [m["message"] for m in transport.messages()] == ["survives"]
    assert handler.stats()["retries"] == 3


def test_fatal_failure_is_counted_and_not_retried(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    # Refused in its batch, and again when sent alone to confirm it is the culprit.
    transport.fail_next = [TransportError("never", retriable=False, cause_name="Fatal")] * 2
    handler = make(transport)
    logger.addHandler(handler)
    logger.error("doomed")
    assert handler.flush(5.0) is False
    assert handler.stats()["dead_lettered"] == 1
    assert handler.stats()["failed"] == 1  # no spill store to keep it in
    assert handler.stats()["retries"] == 0
    assert transport.calls == 2
    logger.error("fine")
    assert handler.flush(30.0) is True


def test_emit_does_not_block_when_the_transport_hangs(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()  # every send waits for the gate: a stuck broker
    handler = make(transport, queue_max_records=50, overflow_policy="drop_newest")
    logger.addHandler(handler)

    def log_1000() -> None:
        for i in range(1000):
            logger.info("r%d", i)

    # The gate stays shut until the calls are done: a call that waited on the transport would
    # never return (no wall-clock bound: a loaded machine only makes the calls slower).
    caller = threading.Thread(target=log_1000)
    caller.start()
    caller.join(60.0)
    assert not caller.is_alive(), "emit() waited on the hanging transport"
    stats = handler.stats()
    assert stats["dropped_newest"] > 0
    assert stats["enqueued"] + stats["dropped_newest"] == 1000
    transport.gate.set()
    # Records dropped as newest were never accepted, so flush() vouches for the rest.
    assert handler.flush(30.0) is True
    assert len(transport.records) == stats["enqueued"]


def test_drop_oldest_keeps_the_newest(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    gate = threading.Event()
    transport.gate = gate
    handler = make(transport, queue_max_records=10, overflow_policy="drop_oldest")
    logger.addHandler(handler)
    logger.info("first")  # taken by the worker, stuck at the gate
    deadline = time.monotonic() + 30
    while handler.stats()["queue_depth"]:
        assert time.monotonic() < deadline, "the worker did not take the first record"
        time.sleep(0.001)  # polled, bounded: the worker runs on its own thread
    for i in range(30):
        logger.info("r%d", i)
    gate.set()
    handler.flush(30.0)
    got = [m["message"] for m in transport.messages()]
    assert got[0] == "first"
    assert got[1:] == [f"r{i}" for i in range(20, 30)]
    assert handler.stats()["dropped_oldest"] == 20


def test_block_policy_waits_at_most_block_timeout(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()
    handler = make(transport, queue_max_records=1, overflow_policy="block", block_timeout_ms=50)
    logger.addHandler(handler)
    logger.info("a")
    logger.info("b")
    started = time.perf_counter()
    logger.info("c")  # the queue holds b; the worker holds a at the gate
    logger.info("d")
    elapsed = time.perf_counter() - started
    # It waited (at least once), and it returned although the gate stays shut; the upper bound
    # is loose on purpose: only a call that hangs fails it, not a slow machine.
    assert 0.05 <= elapsed < 30.0
    assert handler.stats()["dropped_newest"] >= 1
    transport.gate.set()


def test_sync_level_waits_for_acknowledgement(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = make(transport, sync_level="CRITICAL", linger_ms=60000, sync_timeout_ms=60000)
    logger.addHandler(handler)
    started = time.perf_counter()
    logger.critical("audit")
    assert time.perf_counter() - started < 30.0  # well inside sync_timeout_ms and linger_ms
    # Returned only after the broker (here: memory) acknowledged it, despite the long linger.
    assert [m["message"] for m in transport.messages()] == ["audit"]


def test_sync_level_wait_is_bounded(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()
    handler = make(transport, sync_level="ERROR", sync_timeout_ms=100)
    logger.addHandler(handler)
    started = time.perf_counter()
    logger.error("audit")
    assert 0.09 < time.perf_counter() - started < 15.0  # the gate stays shut: never returns
    transport.gate.set()


def test_linger_batches_records(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = make(transport, linger_ms=200)
    logger.addHandler(handler)
    for i in range(50):
        logger.info("r%d", i)
    assert handler.flush(30.0)
    assert transport.calls == 1


def test_kafka_and_own_loggers_never_enter_the_handler() -> None:
    transport = MemoryTransport()
    handler = make(transport)
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        logging.getLogger("kafka.conn").error("client chatter")
        logging.getLogger("kafka").error("client chatter")
        logging.getLogger("kafkalog").error("own chatter")
        logging.getLogger("kafkaesque").error("an app logger")
        assert handler.flush(30.0)
    finally:
        root.removeHandler(handler)
        handler.close()
    assert [m["message"] for m in transport.messages()] == ["an app logger"]


def test_reentrant_emit_is_skipped(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = make(transport)
    logger.addHandler(handler)

    class Loud:
        def __repr__(self) -> str:
            logger.info("from inside repr")
            return "Loud()"

    # Call the handler directly: pytest's own capture handler on this logger would call
    # __repr__ first, outside our emit.
    handler.handle(logger.makeRecord(logger.name, logging.INFO, __file__, 1, "value %r",
                                     (Loud(),), None))
    assert handler.flush(30.0)
    assert [m["message"] for m in transport.messages()] == ["value Loud()"]
    assert handler.stats()["reentrant_skipped"] == 1


def test_close_delivers_queued_records_and_is_idempotent() -> None:
    transport = MemoryTransport()
    handler = make(transport, linger_ms=60000)
    log = logging.getLogger("test.close")
    log.addHandler(handler)
    try:
        for i in range(10):
            log.warning("r%d", i)
    finally:
        log.removeHandler(handler)
    handler.close()
    handler.close()
    assert len(transport.records) == 10
    assert transport.closed
    log.addHandler(handler)
    log.warning("after close")
    log.removeHandler(handler)
    assert handler.stats()["dropped_after_close"] == 1


def test_close_is_bounded_when_nothing_can_be_delivered() -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()
    handler = make(transport, close_timeout_ms=200)
    log = logging.getLogger("test.close.bounded")
    log.addHandler(handler)
    log.warning("stuck")
    log.removeHandler(handler)
    started = time.perf_counter()
    handler.close()
    assert time.perf_counter() - started < 15.0  # not the stuck send's 30 s request timeout
    assert handler.stats()["failed"] == 1


def test_dictconfig_reconfiguration_does_not_deadlock() -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()  # the old handler can not deliver while reconfiguring

    def config() -> dict[str, object]:
        return {
            "version": 1,
            "handlers": {
                "kafka": {
                    "()": KafkaHandler,
                    "topic": "t",
                    "transport_factory": MemoryTransport.factory(transport),
                    "close_timeout_ms": 30000,
                    "spill_dir": None,
                }
            },
            "loggers": {"test.reconfig": {"handlers": ["kafka"], "level": "INFO"}},
        }

    logging.config.dictConfig(config())
    log = logging.getLogger("test.reconfig")
    log.info("before")
    started = time.perf_counter()
    logging.config.dictConfig(config())  # closes the old handler while holding logging's lock
    assert time.perf_counter() - started < 15.0  # not close_timeout_ms (30 s)
    log.info("after")
    transport.gate.set()
    new = next(h for h in log.handlers if isinstance(h, KafkaHandler))
    assert new.flush(30.0)
    deadline = time.monotonic() + 5
    while len(transport.records) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert sorted(m["message"] for m in transport.messages()) == ["after", "before"]
    logging.config.dictConfig({"version": 1, "incremental": False})
    new.close()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_forked_child_gets_a_fresh_pipeline(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()  # parent's records stay queued across the fork
    handler = make(transport)
    logger.addHandler(handler)
    logger.info("parent before fork")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            transport.gate.set()
            logger.info("child")
            ok = handler.flush(30.0)
            msgs = [m["message"] for m in transport.messages()]
            report = {"ok": ok, "msgs": msgs, "disowned": transport.disowned,
                      "enqueued": handler.stats()["enqueued"]}
            os.write(write_fd, orjson.dumps(report))
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        report = orjson.loads(pipe.read())
    os.waitpid(pid, 0)
    assert report == {"ok": True, "msgs": ["child"], "disowned": True, "enqueued": 1}
    transport.gate.set()
    assert handler.flush(30.0)
    assert [m["message"] for m in transport.messages()] == ["parent before fork"]


def test_a_dead_worker_is_restarted_when_the_queue_fills(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = make(transport, queue_max_records=5)
    logger.addHandler(handler)
    logger.info("first")
    assert handler.flush(30.0)
    handler.pipeline._worker.abort()  # simulate a crashed thread: it exits and nothing restarts it
    assert handler.pipeline._worker.join(30.0)
    for i in range(10):
        logger.info("after %d", i)
    stats = handler.stats()
    assert stats["worker_restarts"] == 1
    assert handler.flush(30.0)
    got = [m["message"] for m in transport.messages()]
    assert got[0] == "first"
    assert got[-1] == "after 9"
    assert len(got) == stats["enqueued"]  # every accepted record was delivered
    assert stats["dropped_newest"] == 10 - (stats["enqueued"] - 1)
