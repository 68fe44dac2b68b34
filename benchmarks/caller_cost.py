"""Section 1: what one enabled log call costs the calling thread, handler by handler.

A tight loop on one thread logs the same message on the same kind of logger; the broker is up
and every handler's background thread (if it has one) runs while the loop does, as it would in
an application. The handlers take turns, one run each per round. Reported: µs per call (median
of the runs) and the ratio to ``NullHandler`` (median of the per-round ratios).

Three records are measured: the plain one (a message and its arguments); the structured keyed
record applications log, ``log.info("user %s did %d", uid, n, extra={"uid": uid, "seq": n})``
into kafkalog with ``key="uid"`` and the default options (rows ending in :data:`STRUCTURED`);
and a rich one, ten extras with nested values and a field bound with :mod:`kafkalog.context`
(rows ending in :data:`RICH`; reported, no target). Each is compared with the same call into a
``NullHandler``.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import queue
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from kafka import KafkaProducer
from logstash_async.constants import constants as logstash_constants
from logstash_async.handler import AsynchronousLogstashHandler

from benchmarks.harness import FILLER, MESSAGE, Settings, new_topic, summary
from kafkalog import ConfigError, JsonFormatter, KafkaHandler, context

# A TCP sink for python-logstash-async: accepts connections and throws the bytes away. It runs
# as its own process so that it does not take the GIL from the loop being measured.
_SINK = """
import os, socket, sys, threading
def orphaned():  # stdin closes when the suite exits, however it exits
    sys.stdin.read()
    os._exit(0)
threading.Thread(target=orphaned, daemon=True).start()
srv = socket.create_server(("127.0.0.1", 0))
print(srv.getsockname()[1], flush=True)
def drain(conn):
    with conn:
        while conn.recv(1 << 16):
            pass
while True:
    conn, _ = srv.accept()
    threading.Thread(target=drain, args=(conn,), daemon=True).start()
"""


#: Suffix of the rows that log the structured keyed record.
STRUCTURED = ", structured keyed"
STRUCTURED_MESSAGE = "user %s did %d"
#: Suffix of the rows that log ten extras, some nested, with a bound field.
RICH = ", 10 extras + bound"
_RICH_EXTRA = {
    "uid": "u-42", "order": "o-981", "amount": 1234, "currency": "EUR", "ok": True,
    "ratio": 0.25, "tags": ["web", "beta"], "http": {"method": "POST", "path": "/pay"},
    "client": {"ip": "127.0.0.1", "agent": "bench/1.0"}, "items": [{"sku": "a", "n": 2}],
}


class StdlibJsonFormatter(logging.Formatter):
    """What an application without a JSON library writes: the usual fields with ``json``."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as one line of JSON."""
        return json.dumps({
            "@timestamp": self.formatTime(record),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "module": record.module,
            "function": record.funcName,
            "line": record.lineno,
            "process": record.process,
            "thread_name": record.threadName,
        })


class NaiveKafkaHandler(logging.Handler):
    """The handler people write first: ``KafkaProducer.send()`` inside ``emit()``.

    Same JSON as kafkalog (its formatter) and the same producer settings, so the difference
    is only where the hand-off to kafka-python happens.
    """

    def __init__(self, bootstrap: str, topic: str) -> None:
        super().__init__()
        self._topic = topic
        self._json = JsonFormatter()
        self._producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", linger_ms=5,
                                       batch_size=16384, enable_idempotence=True)
        self._closed = False

    def emit(self, record: logging.LogRecord) -> None:
        """Format and hand to kafka-python on the caller's thread."""
        try:
            self._producer.send(self._topic, value=self._json.encode(record))
        except Exception:
            self.handleError(record)

    def flush(self) -> None:
        """Wait for kafka-python's buffer to drain (nothing to wait for once closed)."""
        if not self._closed:
            self._producer.flush(timeout=60)

    def close(self) -> None:
        """Close the producer (idempotent: dictConfig and logging.shutdown close again)."""
        if not self._closed:
            self._closed = True
            self._producer.close(timeout=10)
        super().close()


@contextmanager
def tcp_sink() -> Iterator[int]:
    """A discarding TCP server in a child process; yields its port."""
    proc = subprocess.Popen([sys.executable, "-c", _SINK], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        yield int(proc.stdout.readline())
    finally:
        proc.kill()
        proc.wait(10)


def kafkalog_transports() -> dict[str, str | None]:
    """Each transport name -> None if this kafkalog has it, else why it is skipped."""
    out: dict[str, str | None] = {"kafka-python": None}  # the default: always there
    try:
        KafkaHandler(topic="probe", spill_dir=None, **transport_option("confluent")).close()
        out["confluent"] = None
    except (ConfigError, TypeError, ImportError) as exc:
        out["confluent"] = f"not available in this kafkalog: {exc}"
    return out


def transport_option(name: str) -> dict[str, Any]:
    """The keyword selecting transport ``name`` (none for the default, so that the suite also
    runs on a kafkalog without the ``transport`` option)."""
    return {} if name == "kafka-python" else {"transport": name}


class Loop:
    """A tight logging loop on a logger whose only handler is the one being measured."""

    def __init__(self, handler: logging.Handler, calls: int, kind: str = "") -> None:
        self.handler = handler
        self.calls = calls
        self.kind = kind  # "" (plain), STRUCTURED or RICH
        self.log = logging.getLogger(f"bench.caller.{id(handler)}")
        self.log.propagate = False
        self.log.setLevel(logging.INFO)
        self.log.handlers[:] = [handler]

    def one_run(self) -> float:
        """µs per call over ``calls`` calls; the handler is flushed afterwards, untimed, so
        that the next run (of any handler) starts from an empty pipeline."""
        log = self.log
        if self.kind == STRUCTURED:
            started = time.perf_counter()
            for i in range(self.calls):
                log.info(STRUCTURED_MESSAGE, "u-42", i, extra={"uid": "u-42", "seq": i})
            elapsed = time.perf_counter() - started
        elif self.kind == RICH:
            with context.bound(request_id="r-7f3a"):
                started = time.perf_counter()
                for i in range(self.calls):
                    log.info(STRUCTURED_MESSAGE, "u-42", i, extra=_RICH_EXTRA)
                elapsed = time.perf_counter() - started
        else:
            started = time.perf_counter()
            for i in range(self.calls):
                log.info(MESSAGE, "u-42", i, FILLER)
            elapsed = time.perf_counter() - started
        self.handler.flush()
        return elapsed / self.calls * 1e6

    def close(self) -> None:
        """Detach and close the handler."""
        self.log.handlers[:] = []
        self.handler.close()


def _kind(label: str) -> str:
    """Which record a row logs: "" (plain), STRUCTURED or RICH."""
    return next((kind for kind in (STRUCTURED, RICH) if label.endswith(kind)), "")


def interleaved(loops: dict[str, Loop], warmup: int, runs: int) -> dict[str, list[float]]:
    """Each loop's µs per call, run after run: every round runs every handler once, so that a
    slow spell of a shared machine falls on all of them instead of on whichever ran then."""
    samples: dict[str, list[float]] = {label: [] for label in loops}
    for round_no in range(warmup + runs):
        for label, loop in loops.items():
            us = loop.one_run()
            if round_no >= warmup:
                samples[label].append(us)
    return samples


def run(bootstrap: str, settings: Settings, *, only_kafkalog: bool = False) -> dict[str, Any]:
    """Every handler's µs per call and ratio to NullHandler (``only_kafkalog``: NullHandler
    and kafkalog alone, with every transport)."""
    topic = new_topic(bootstrap, "caller")
    rows: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-") as tmp, tcp_sink() as sink_port:
        work = Path(tmp)

        def file_json() -> logging.Handler:
            h = logging.FileHandler(work / "app.log")
            h.setFormatter(StdlibJsonFormatter())
            return h

        def queue_handler() -> logging.Handler:
            # With its listener, as it is used: the listener's thread takes the GIL too.
            q: queue.SimpleQueue[Any] = queue.SimpleQueue()
            h = logging.handlers.QueueHandler(q)
            listener = logging.handlers.QueueListener(q, logging.NullHandler())
            listener.start()
            stopped: list[bool] = []

            def close() -> None:
                # Idempotent, as handlers' close() is: logging.shutdown and dictConfig (in the
                # throughput section) close every handler again.
                if not stopped:
                    stopped.append(True)
                    listener.stop()
                logging.Handler.close(h)

            h.close = close  # type: ignore[method-assign]
            return h

        # Its worker sends 50 events per TCP connection and waits (polling every 50 ms) for the
        # socket to drain before the next: a benchmark's backlog would take minutes to close.
        # Larger batches (its documented knobs) keep it from still sending, and taking the
        # GIL, while the next handler is measured.
        logstash_constants.QUEUED_EVENTS_BATCH_SIZE = 5000
        logstash_constants.QUEUED_EVENTS_FLUSH_COUNT = 5000
        cases: dict[str, Callable[[], logging.Handler]] = {"NullHandler": logging.NullHandler}
        if not only_kafkalog:
            cases.update({
                "QueueHandler": queue_handler,
                "FileHandler+JSON": file_json,
                "python-logstash-async": lambda: AsynchronousLogstashHandler(
                    "127.0.0.1", sink_port, database_path=None),
                "naive KafkaProducer.send": lambda: NaiveKafkaHandler(bootstrap, topic),
            })
        transports = kafkalog_transports()  # both, in --quick too
        for name, why_not in transports.items():
            if why_not is not None:
                skipped[f"kafkalog ({name})"] = why_not
                continue
            cases[f"kafkalog ({name})"] = lambda name=name: KafkaHandler(  # type: ignore[misc]
                topic=topic, bootstrap_servers=bootstrap, **transport_option(name),
                spill_dir=str(work / f"spill-{name}"), close_timeout_ms=30_000)
        # The structured keyed and the rich record, into NullHandler and each transport.
        for kind in (STRUCTURED, RICH):
            cases["NullHandler" + kind] = logging.NullHandler
            for name, why_not in transports.items():
                if why_not is None:
                    cases[f"kafkalog ({name})" + kind] = (
                        lambda name=name, kind=kind: KafkaHandler(  # type: ignore[misc]
                            topic=topic, bootstrap_servers=bootstrap, **transport_option(name),
                            key="uid", spill_dir=str(work / f"spill-{name}-{len(kind)}"),
                            close_timeout_ms=30_000))
        loops: dict[str, Loop] = {}
        try:
            for label, make in cases.items():
                loops[label] = Loop(make(), settings.calls, _kind(label))
            samples = interleaved(loops, settings.warmup, settings.runs)
        finally:
            for loop in loops.values():
                loop.close()
    for label, values in samples.items():
        floor = samples["NullHandler" + _kind(label)]
        rows[label] = summary(values)
        # The ratio of each round's run to NullHandler's run in the same round, then the
        # median of those: steadier than a ratio of medians when the machine's speed drifts.
        rows[label]["ratio_to_null"] = round(
            statistics.median(v / f for v, f in zip(values, floor, strict=True)), 2)
        print(f"  {label:44s} {rows[label]['median']:7.2f} µs/call  "
              f"{rows[label]['ratio_to_null']:5.2f}x NullHandler", flush=True)
    return {"unit": "µs per call", "calls_per_run": settings.calls, "runs": settings.runs,
            "warmup": settings.warmup, "interleaved": True, "topic": topic, "results": rows,
            "skipped": skipped}
