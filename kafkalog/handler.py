"""``KafkaHandler``: logging glue over the delivery pipeline.

A record becomes JSON bytes (the formatter) and a key (the ``key`` option), and goes to a
:class:`~kafkalog.pipeline.Pipeline`; that is all. No queue, thread or network code lives
here: the pipeline owns them, with the spill, fork safety and the exit ordering.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from kafkalog.config import HandlerConfig
from kafkalog.context import fields_get as _bound_fields
from kafkalog.diagnostics import LOGGER_NAME
from kafkalog.errors import ConfigError
from kafkalog.formatting import JsonFormatter
from kafkalog.pipeline import Pipeline, TransportFactory

_get_ident = threading.get_ident

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


class KafkaHandler(logging.Handler):
    """A logging handler that ships each record as one JSON message to a Kafka topic.

    ``emit()`` only formats the record (JSON, with orjson) and submits it to its
    :class:`~kafkalog.pipeline.Pipeline`, whose background thread batches the records and
    sends them with kafka-python (or librdkafka, with ``transport="confluent"``; see
    ``docs/transports.md``). ``emit()`` never does network I/O, never raises, and never waits
    longer than ``block_timeout_ms`` (policy ``block``) or ``sync_timeout_ms`` (records at or
    above ``sync_level``).

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
        config = HandlerConfig.given(config, topic, options)
        self.config = config
        try:
            self._json = JsonFormatter(
                schema=config.schema,
                static_fields=config.static_fields,
                max_bytes=self._max_value_bytes(),
                redact_keys=config.redact_keys,
            )
        except (TypeError, ValueError) as exc:
            raise ConfigError("static_fields", str(exc)) from None
        # Checks what the transport needs (codec packages, producer_config) before it exists.
        self.pipeline = Pipeline(
            config=config,
            transport_factory=transport_factory,
            on_fork=self._reset_after_fork,
        )
        self._submit = self.pipeline._enqueue  # bytes by construction: no type check
        super().__init__(level)
        self._key_of = _key_function(config.key)
        self._sync_level = config.sync_level
        self._keyless_async = self._key_of is None and self._sync_level is None
        self._keyed_async = self._key_of is not None and self._sync_level is None
        self._sync_timeout_s = config.sync_timeout_ms / 1000
        self._reentrant = 0
        self._emitting: set[int] = set()

    def _max_value_bytes(self) -> int:
        return self.config.max_request_size - RECORD_OVERHEAD_BYTES

    # -- the caller's thread -------------------------------------------------------------------

    def handle(self, record: logging.LogRecord) -> bool:
        """Filter and emit without taking the handler lock: the pipeline is thread-safe, and
        the lock would make every logging thread wait behind one that waits (``sync_level``)."""
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
        """Format ``record`` to JSON and submit it. Never raises; errors go to ``handleError``."""
        own = _OWN_BY_NAME.get(record.name)
        if own is None:
            own = _remember_own(record.name)
        if own:
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
                self._submit(value)
            elif self._keyed_async:  # a key, no sync_level: nothing to wait for
                self._submit(value, self._key_of(record))  # type: ignore[misc]
            else:
                key_of = self._key_of
                number = self._submit(value, key_of(record) if key_of is not None else None)
                sync_level = self._sync_level
                if sync_level is not None and record.levelno >= sync_level and number:
                    self.pipeline.wait(number, self._sync_timeout_s)
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

    # -- flush, close, stats -------------------------------------------------------------------

    # logging calls flush() with no argument and ignores the result, so a bool is compatible.
    def flush(self, timeout: float | None = None) -> bool:  # type: ignore[override]
        """Wait until every record logged before the call is acknowledged or safely spilled.

        ``timeout`` is in seconds; None means ``close_timeout_ms``, so that ``logging.shutdown``
        can not hang on an unreachable broker. Returns True only if every such record was
        acknowledged by the broker or durably written to the spill store, and no record was
        lost, dropped from the queue or dead-lettered since the previous flush. (Records the
        full queue refused were never accepted; ``stats()["dropped_newest"]`` counts them.)
        """
        return self.pipeline.flush(timeout)

    def close(self) -> None:
        """Deliver what is queued within ``close_timeout_ms``, then stop the worker.

        Idempotent. Called by ``logging.shutdown`` at exit and by ``dictConfig`` when it
        replaces handlers; in the latter case it returns at once and the worker finishes the
        delivery in the background (an exit hook waits for it).
        """
        try:
            self.pipeline.close()
        finally:
            super().close()

    def stats(self) -> dict[str, Any]:
        """The pipeline's counters (:meth:`Pipeline.stats <kafkalog.pipeline.Pipeline.stats>`),
        and ``reentrant_skipped``: records logged from inside this handler's own emit."""
        return {**self.pipeline.stats(), "reentrant_skipped": self._reentrant}

    def __repr__(self) -> str:
        level = logging.getLevelName(self.level)
        servers = ",".join(self.config.bootstrap_servers)
        return f"<KafkaHandler topic={self.config.topic!r} servers={servers!r} ({level})>"

    def _reset_after_fork(self) -> None:
        """In a forked child, after the pipeline started afresh."""
        self._emitting = set()  # a parent thread's ident may be reused by a child's thread


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
            if type(value) is str:  # the common key, encoded here: one call less per record
                return value.encode("utf-8", "backslashreplace")
            if value is None:  # not passed with extra=: maybe bound with kafkalog.context
                value = _bound_fields().get(attr)
            return to_bytes(value)

        return from_attribute

    func: Callable[[logging.LogRecord], Any] = key

    def from_callable(record: logging.LogRecord) -> bytes | None:
        return to_bytes(func(record))

    return from_callable
