"""``KafkaHandler``: format the record, put the bytes on the queue, return. No network code here.

Everything that waits (connecting, sending, retrying) happens on the worker thread. This module
also owns the process-wide hooks: flushing at interpreter exit before kafka-python closes its
clients, and starting afresh in a forked child.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util as mp_util
import os
import threading
import time
import weakref
from collections.abc import Callable
from typing import Any

from kafkalog.config import HandlerConfig
from kafkalog.context import fields_get as _bound_fields
from kafkalog.diagnostics import LOGGER_NAME, RateLimitedWarnings
from kafkalog.errors import ConfigError
from kafkalog.formatting.formatter import JsonFormatter
from kafkalog.pipeline.queue import Entry, RecordQueue
from kafkalog.pipeline.worker import BatchWorker
from kafkalog.spill import SpillStore
from kafkalog.transports import Transport, build_transport, check_transport_config

_get_ident = threading.get_ident

TransportFactory = Callable[[HandlerConfig, Callable[[], None]], Transport]

# Records of these top-level loggers never enter the handler: kafka-python's own logging (it
# would feed back into the client that is sending it) and kafkalog's diagnostics.
_OWN_LOGGERS = frozenset({"kafka", LOGGER_NAME})
# Logger name -> whether it is one of _OWN_LOGGERS or below one: a dict lookup per record
# instead of splitting the name. Bounded, in case an application makes loggers without end.
_OWN_BY_NAME: dict[str, bool] = {}
_OWN_BY_NAME_MAX = 10_000


def _remember_own(name: str) -> bool:
    if len(_OWN_BY_NAME) >= _OWN_BY_NAME_MAX:
        _OWN_BY_NAME.clear()
    own = _OWN_BY_NAME[name] = name.partition(".")[0] in _OWN_LOGGERS
    return own


# Room left in a request for the record batch header, the record header and the key.
RECORD_OVERHEAD_BYTES = 1024


def _default_transport(config: HandlerConfig, on_new_client: Callable[[], None]) -> Transport:
    return build_transport(config, on_new_client)  # the one the ``transport`` option names


def _holding_logging_lock() -> bool:
    """True if this thread holds logging's module lock (dictConfig does while it reconfigures).

    Waiting for the worker then could stall every thread that logs, so close() and flush()
    hand the remaining work to the worker and return at once instead.
    """
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


class KafkaHandler(logging.Handler):
    """A logging handler that ships each record as one JSON message to a Kafka topic.

    ``emit()`` only formats the record (JSON, with orjson) and appends it to a bounded queue;
    a background thread batches the records and sends them with kafka-python (or librdkafka,
    with ``transport="confluent"``; see ``docs/transports.md``). ``emit()`` never does network
    I/O, never raises, and never waits longer than ``block_timeout_ms`` (policy ``block``) or
    ``sync_timeout_ms`` (records at or above ``sync_level``).

    Options are keyword arguments named like Kafka's producer settings; see
    :class:`~kafkalog.config.HandlerConfig` and ``docs/configuration.md``. A bad option raises
    :class:`~kafkalog.errors.ConfigError` (a ``ValueError``) naming it.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        topic: str | None = None,
        *,
        level: int | str = logging.NOTSET,
        config: HandlerConfig | None = None,
        transport_factory: TransportFactory | None = None,
        **options: Any,
    ) -> None:
        # Everything that can refuse the options runs before logging.Handler.__init__, which
        # registers the handler with logging: a half-built one would be flushed and closed by
        # logging.shutdown() at exit (and by dictConfig), and fail there.
        if config is None:
            if topic is not None:
                options["topic"] = topic
            config = HandlerConfig.from_options(options)
        elif topic is not None or options:
            raise ConfigError("config", "give either config= or individual options, not both")
        if transport_factory is None:
            check_transport_config(config)  # codec packages, producer_config
        self.config = config
        self._transport_factory = transport_factory or _default_transport
        try:
            self._json = JsonFormatter(
                schema=config.schema,
                static_fields=config.static_fields,
                max_bytes=self._max_value_bytes(),
                redact_keys=config.redact_keys,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError("static_fields", str(exc)) from None
        super().__init__(level)
        self._key_of = _key_function(config.key)
        self._sync_level = config.sync_level
        self._keyless_async = self._key_of is None and self._sync_level is None
        self._sync_timeout_s = config.sync_timeout_ms / 1000
        self._close_timeout_s = config.close_timeout_ms / 1000
        self._build_pipeline()
        _LIVE.add(self)
        _register_child_exit(self)

    def _max_value_bytes(self) -> int:
        return self.config.max_request_size - RECORD_OVERHEAD_BYTES

    def _build_pipeline(self) -> None:
        """Create the queue, transport and worker (again in a forked child)."""
        config = self.config
        self._emitting: set[int] = set()
        self._state_lock = threading.Lock()
        self._warnings = RateLimitedWarnings()
        spill_path = config.spill_path()
        self._spill = (
            None
            if spill_path is None
            else SpillStore(
                spill_path,
                config.topic,
                fsync=config.spill_fsync,
                fsync_interval_s=config.spill_fsync_interval_ms / 1000,
                max_bytes=config.spill_max_bytes,
                segment_bytes=config.spill_segment_bytes,
                full_policy=config.spill_full_policy,
                warnings=self._warnings,
            )
        )
        self._queue = RecordQueue(
            max_records=config.queue_max_records,
            max_bytes=config.queue_max_bytes,
            batch_bytes=config.batch_size,
            policy=config.overflow_policy,
            block_timeout_s=config.block_timeout_ms / 1000,
            overflow_sink=self._overflow_to_spill if self._spill is not None else None,
            on_drop=self._dropped_oldest,
        )
        self._transport = self._transport_factory(config, _keep_exit_hook_first)
        self._worker = self._new_worker()
        self._revived = 0
        self._started = False
        self._closed = False
        self._dropped_after_close = 0
        self._reentrant = 0
        self._failures_reported = 0

    # -- the caller's thread -------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit without taking the handler lock: the queue is thread-safe, and the
        lock would make every logging thread wait behind one that waits (``sync_level``)."""
        if not self.filters:  # the common case: skip Filterer.filter's loop
            self.emit(record)
            return True
        rv = self.filter(record)
        if isinstance(rv, logging.LogRecord):  # Python 3.12+: a filter may return a new record
            record = rv
        if rv:
            self.emit(record)
        return bool(rv)

    def emit(self, record: logging.LogRecord) -> None:
        """Format ``record`` to JSON and queue it. Never raises; errors go to ``handleError``."""
        own = _OWN_BY_NAME.get(record.name)
        if own is None:
            own = _remember_own(record.name)
        if own:
            return
        if self._closed:
            self._dropped_after_close += 1
            return
        # The threads inside emit() right now, by ident: a set test, add and discard cost
        # about half of a threading.local's get and two sets.
        emitting = self._emitting
        thread = _get_ident()
        if thread in emitting:
            # Logging from inside this emit (say, in an argument's __repr__) would recurse.
            self._reentrant += 1
            return
        emitting.add(thread)
        try:
            # The handler's own JsonFormatter returns right-sized bytes (see
            # JsonFormatter.encode); _encode copies what other formatters return.
            value = self._json.encode(record) if self.formatter is None else self._encode(record)
            if self._keyless_async:  # the default: no key, no sync_level
                key = waiter = None
            else:
                key_of = self._key_of
                key = key_of(record) if key_of is not None else None
                sync_level = self._sync_level
                waiter = (
                    threading.Event()
                    if sync_level is not None and record.levelno >= sync_level
                    else None
                )
            if not self._started:
                self._start_worker()
            if not self._queue.put((value, key, waiter)):
                self._revive_worker()
            elif waiter is not None:
                self._worker.request_flush(self._queue.accepted)
                waiter.wait(self._sync_timeout_s)
        except Exception:
            self.handleError(record)
        finally:
            emitting.discard(thread)

    def _encode(self, record: logging.LogRecord) -> bytes:
        """The value for ``record`` with a formatter set by the application, owning only its
        length (a JsonFormatter subclass may return orjson's 4 KiB+ buffer: that is copied), so
        that a queued record does not pin more than ``queue_max_bytes`` counts for it."""
        fmt = self.formatter
        if fmt is None:
            return self._json.encode(record)
        if isinstance(fmt, JsonFormatter):
            out = fmt.encode(record)  # right-sized already, unless a subclass changed encode()
            return out if type(fmt) is JsonFormatter else bytes(memoryview(out))
        # A plain stdlib formatter: its text is the message value, cut to what Kafka accepts.
        data = fmt.format(record).encode("utf-8", "backslashreplace")
        limit = self._max_value_bytes()
        return data if len(data) <= limit else data[:limit].decode("utf-8", "ignore").encode()

    def setFormatter(self, fmt: logging.Formatter | None) -> None:  # noqa: N802 - stdlib name
        """Set the formatter; a :class:`JsonFormatter` without ``max_bytes`` gets this handler's
        limit, so that an oversized record is truncated rather than refused by Kafka."""
        if isinstance(fmt, JsonFormatter) and fmt.max_bytes is None:
            fmt.max_bytes = self._max_value_bytes()
        super().setFormatter(fmt)

    def _new_worker(self) -> BatchWorker:
        return BatchWorker(
            self._queue,
            self._transport,
            self.config,
            spill=self._spill,
            warnings=self._warnings,
            name=f"kafkalog-worker-{self.config.topic}",
        )

    def _revive_worker(self) -> None:
        """The queue is full: if the worker thread died (a bug in it), start a new one.

        Checked only on overflow, so the common path pays nothing for it.
        """
        dead = self._worker
        if dead.alive or not self._started or self._closed:
            return
        with self._state_lock:
            if self._worker is not dead or self._closed:
                return
            worker = self._new_worker()
            for counter in ("delivered", "failed", "dead_lettered", "retries", "batches",
                            "batch_sizes", "send_latencies"):
                setattr(worker, counter, getattr(dead, counter))
            self._worker = worker
            self._revived += 1
            worker.start()
        self._warnings.warn("revived", "the kafkalog worker thread had stopped; restarted it")

    def _start_worker(self) -> None:
        with self._state_lock:
            if not self._started and not self._closed:
                self._worker.start()
                self._started = True

    # -- the worker's callbacks ----------------------------------------------------------------

    def _overflow_to_spill(self, entries: list[Entry], batch_in_hand: bool) -> bool:
        """Queue full, policy ``spill``: write its oldest records to disk on the caller's thread.

        An append is one ``os.write`` (no fsync here: the worker syncs), so the caller does
        not wait on the disk's flush. If the worker holds a batch taken from the queue, that
        batch is older still: a slot ahead of these records is kept for it, in case it ends
        up in the spill too.
        """
        spill = self._spill
        assert spill is not None
        if batch_in_hand:
            spill.reserve_slot()
        # Handed over either way: a record the store can not write is counted by the store
        # (spill_dropped), so it must not be counted again as dropped by the queue.
        spill.append([(e[0], e[1]) for e in entries], sync=False)
        for entry in entries:
            if entry[2] is not None:
                entry[2].set()
        self._worker.request_flush(0)  # wake the worker: it must replay behind these
        self._revive_worker()
        return True

    def _dropped_oldest(self, entry: Entry) -> None:
        waiter = entry[2]
        if waiter is not None:
            waiter.set()

    # -- flush, close, stats -------------------------------------------------------------------

    # logging calls flush() with no argument and ignores the result, so a bool is compatible.
    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every record accepted before the call is acknowledged or safely spilled.

        ``timeout`` is in seconds; None means ``close_timeout_ms``, so that ``logging.shutdown``
        can not hang on an unreachable broker. Returns True only if every such record was
        acknowledged by the broker or written to the spill store, and no accepted record was
        lost, dropped from the queue or dead-lettered since the previous flush. (Records the
        full queue refused were never accepted; ``stats()["dropped_newest"]`` counts them.)
        """
        if not self._started:
            return True
        target = self._queue.accepted
        self._worker.request_flush(target)
        wait_s = self._close_timeout_s if timeout is None else max(0.0, timeout)
        if _holding_logging_lock():
            wait_s = 0.0
        done = self._queue.wait_resolved(target, wait_s)
        failures = self._failures()
        ok = done and failures == self._failures_reported
        if done:
            self._failures_reported = failures
        return ok

    def _failures(self) -> int:
        spill_dropped = self._spill.dropped if self._spill is not None else 0
        worker = self._worker
        return worker.failed + worker.dead_lettered + self._queue.dropped_oldest + spill_dropped

    def close(self) -> None:
        """Deliver what is queued within ``close_timeout_ms``, then stop the worker.

        Idempotent. Called by ``logging.shutdown`` at exit and by ``dictConfig`` when it
        replaces handlers; in the latter case it returns at once and the worker finishes the
        delivery in the background (an exit hook waits for it).
        """
        with self._state_lock:
            already, self._closed = self._closed, True
        try:
            if not already and self._started:
                worker = self._worker
                worker.request_flush(self._queue.accepted)
                worker.stop(time.monotonic() + self._close_timeout_s)
                _DRAINING.add(worker)
                if not _holding_logging_lock():
                    _finish(worker, self._close_timeout_s)
            _LIVE.discard(self)
        finally:
            super().close()

    def stats(self) -> dict[str, Any]:
        """Counters since the handler was built (or since fork, in a child process).

        Keys: ``enqueued``, ``delivered``, ``failed``, ``dropped``, ``spilled``, ``replayed``,
        ``queue_depth``, ``queue_bytes``, and more detailed ones. ``batch_size`` and
        ``send_latency_s`` are distributions over the requests sent to Kafka (one observation
        per request): ``bounds``, ``counts`` per bucket (the last one above every bound),
        ``count`` and ``sum``.
        """
        q = self._queue.counters()
        w = self._worker.counters()
        s = self._spill.counters() if self._spill is not None else {}
        dropped = (
            q["dropped_newest"]
            + q["dropped_oldest"]
            + self._dropped_after_close
            + s.get("spill_dropped", 0)
        )
        return {
            "enqueued": q["enqueued"],
            "delivered": w["delivered"],
            "failed": w["failed"],
            "dropped": dropped,
            "spilled": s.get("spilled", 0),
            "replayed": s.get("replayed", 0),
            "queue_depth": q["queue_depth"],
            "queue_bytes": q["queue_bytes"],
            "dropped_newest": q["dropped_newest"],
            "dropped_oldest": q["dropped_oldest"],
            "dropped_after_close": self._dropped_after_close,
            "blocked": q["blocked"],
            "reentrant_skipped": self._reentrant,
            "worker_restarts": self._revived,
            "dead_lettered": w["dead_lettered"],
            "retries": w["retries"],
            "batches": w["batches"],
            "last_error": w["last_error"],
            "batch_size": w["batch_size"],
            "send_latency_s": w["send_latency_s"],
            "overflowed_to_spill": q["overflowed"],
            **s,
        }

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        servers = ",".join(self.config.bootstrap_servers)
        return f"<KafkaHandler topic={self.config.topic!r} servers={servers!r} ({level})>"

    # -- fork ----------------------------------------------------------------------------------

    def _reset_after_fork(self) -> None:
        """In a forked child: forget the parent's queue, worker and connections; start clean.

        The parent delivers the records it had queued; the child must not send them again.
        """
        self._transport.disown()
        if self._spill is not None:
            self._spill.forget_after_fork()
        self._build_pipeline()


def _key_function(key: Any) -> Callable[[logging.LogRecord], bytes | None] | None:
    """Turn the ``key`` option into record -> key bytes (None: no key)."""
    if key is None:
        return None

    def to_bytes(value: Any) -> bytes | None:
        if value is None:
            return None
        if isinstance(value, bytes):
            return value
        return str(value).encode("utf-8", "backslashreplace")

    if isinstance(key, str):
        attr = key

        def from_attribute(record: logging.LogRecord) -> bytes | None:
            value = record.__dict__.get(attr)
            if value is None:  # not passed with extra=: maybe bound with kafkalog.context
                value = _bound_fields().get(attr)
            return to_bytes(value)

        return from_attribute

    func: Callable[[logging.LogRecord], Any] = key

    def from_callable(record: logging.LogRecord) -> bytes | None:
        return to_bytes(func(record))

    return from_callable


# -- process-wide hooks --------------------------------------------------------------------------

_LIVE: weakref.WeakSet[KafkaHandler] = weakref.WeakSet()
_DRAINING: weakref.WeakSet[BatchWorker] = weakref.WeakSet()


def live_handlers() -> list[KafkaHandler]:
    """Every KafkaHandler of this process that is not closed (used by :mod:`kafkalog.metrics`)."""
    return list(_LIVE)


def _finish(worker: BatchWorker, timeout_s: float) -> None:
    """Wait for a stopping worker; past ``timeout_s``, make it give up what it still holds."""
    if not worker.join(timeout_s):
        worker.abort()
        worker.join(1.0)


def _exit_hook() -> None:
    """At interpreter exit: close every handler, then wait for workers still draining."""
    for handler in list(_LIVE):
        handler.close()
    for worker in list(_DRAINING):
        _finish(worker, max(0.0, worker.stop_deadline - time.monotonic()))


def _keep_exit_hook_first() -> None:
    """Re-register the exit hook so that it runs before the one kafka-python just registered.

    atexit runs hooks in reverse order of registration; every new ``KafkaProducer`` registers
    a hook that closes it within 1 s, which would cut off the records still to be flushed.
    """
    atexit.unregister(_exit_hook)
    atexit.register(_exit_hook)


def _after_fork_in_child() -> None:
    for handler in list(_LIVE):
        handler._reset_after_fork()
    _DRAINING.clear()


def _register_child_exit(handler: KafkaHandler) -> None:
    """Close ``handler`` when a multiprocessing child exits (it skips atexit: ``os._exit``)."""

    def in_child(h: KafkaHandler) -> None:
        mp_util.Finalize(None, h.close, exitpriority=100)

    mp_util.register_after_fork(handler, in_child)


atexit.register(_exit_hook)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
