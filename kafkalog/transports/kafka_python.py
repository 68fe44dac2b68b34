"""The kafka-python transport: a :class:`~kafkalog.transports.base.Transport` over
``kafka.KafkaProducer``, and how kafka-python's exceptions become kafkalog's errors.

The worker hands a transport a batch of encoded records and gets back, for each record, None
(acknowledged) or a :class:`~kafkalog.errors.TransportError` that says whether retrying may help.
The producer is built lazily on a thread of its own (:mod:`kafkalog.transports.connect`), so
bootstrapping never blocks the application, and it is thrown away and rebuilt after it fails.
A batch goes to kafka-python whole where its internals allow (:mod:`kafkalog.transports.bulk`,
checked by :mod:`kafkalog.transports.kafka_python_internals`), else record by record through
the public ``send()``.
"""

from __future__ import annotations

import contextlib
import ssl
import threading
from collections.abc import Callable, Sequence
from operator import attrgetter
from typing import Any, TypeVar

import kafka
import kafka.errors

from kafkalog.diagnostics import log
from kafkalog.errors import SecurityError, TransportError
from kafkalog.transports import bulk
from kafkalog.transports.base import BaseTransport, OutRecord
from kafkalog.transports.connect import ConnectAttempt, abandon, orphan, watch_topic_errors
from kafkalog.transports.errors import (
    Refusal,
    TopicMissingError,
    invalid_topic,
    not_acknowledged,
    refusal_in,
    refused,
    unexpected,
)
from kafkalog.transports.kafka_python_config import (
    check_compression_available,
    check_producer_config,
    security_settings,
)
from kafkalog.transports.kafka_python_internals import (
    hand_off_broken,
    hand_off_usable,
    public_api_forced,
)
from kafkalog.transports.partition import KeyPartitioner
from kafkalog.transports.reach import summary
from kafkalog.transports.security import check_tls_files

__all__ = [
    "CONNECT_WAIT_S", "MAX_BLOCK_MS", "KafkaPythonTransport", "check_compression_available",
    "check_producer_config", "check_tls_files", "classify", "security_settings",
]

# Upper bound on how long send() may wait for a topic's metadata on the worker thread. Beyond
# it the worker's own backoff takes over, and close() stays prompt.
MAX_BLOCK_MS = 1000
# How long one send() waits for a bootstrap in progress before the worker backs off and retries.
CONNECT_WAIT_S = 1.0

_T = TypeVar("_T")


# -- kafka-python's exceptions, by type -------------------------------------------------------

_LOGIN_ERRORS = (
    kafka.errors.SaslAuthenticationFailedError,
    kafka.errors.UnsupportedSaslMechanismError,
)


def _refusal(exc: BaseException) -> tuple[Refusal, str] | None:
    """The refusal of this client that ``exc`` is, by its type, and why; None if none."""
    if isinstance(exc, ssl.SSLCertVerificationError):
        why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or "rejected"
        return Refusal.TLS, str(why)
    if isinstance(exc, _LOGIN_ERRORS):
        return Refusal.LOGIN, type(exc).__name__
    if isinstance(exc, kafka.errors.AuthorizationError):
        # Without WRITE on any topic the idempotent producer's id is refused (cluster
        # authorization) before the topic is: the remedy is the same ACL. Outside a send
        # (topic None) which operation was refused is not known here.
        return Refusal.DENIED, type(exc).__name__
    return None


def _is_refusal(exc: BaseException) -> bool:
    return refusal_in(exc, _refusal) is not None


# A bootstrap that gave up for these says nothing of the cause: the servers are tried instead.
_BOOTSTRAP_FAILURES = (kafka.errors.KafkaTimeoutError, kafka.errors.KafkaConnectionError)


def _not_connected(connect: ConnectAttempt) -> TransportError:
    """The error of a send while the bootstrap has not succeeded: why, server by server."""
    cause, where = summary(connect.reach.findings())
    return TransportError(
        f"still connecting to the bootstrap servers: {where}", retriable=True, cause_name=cause
    )


def classify(
    exc: BaseException, *, topic: str | None = None, login: str | None = None
) -> TransportError:
    """Turn any client exception into a TransportError, retriable or not, by its type.

    TLS, login and permission failures (in ``exc`` or the exceptions it was raised from) become
    a :class:`~kafkalog.errors.SecurityError` whose message names the cause; ``topic`` and
    ``login`` (who logged in how, never a password) make those messages say which topic and
    which user.
    """
    if isinstance(exc, TransportError):
        return exc
    found = refusal_in(exc, _refusal)
    if found is not None:
        return refused(*found, topic=topic, login=login)
    if isinstance(exc, kafka.errors.KafkaError):
        # kafka-python's errors already start with their class name.
        return TransportError(
            str(exc), retriable=bool(type(exc).retriable), cause_name=type(exc).__name__
        )
    return unexpected(exc)


class KafkaPythonTransport(BaseTransport):
    """A :class:`~kafkalog.transports.base.Transport` over ``kafka.KafkaProducer``
    (kafka-python)."""

    def _setup(self) -> None:
        self._producer: Any = None
        self._connect: ConnectAttempt | None = None
        self._lock = threading.Lock()
        self._keys = KeyPartitioner()
        self._whole = False
        # The producer the hand-off was last checked for, and whether it may be used with it.
        self._checked: tuple[Any, bool] = (None, False)
        self._public_only = public_api_forced()
        # The broker's error type per topic in the producer's latest metadata (see
        # watch_topic_errors): tells a missing or invalid topic from a slow cluster.
        self._topic_errors: dict[str, type[BaseException]] = {}

    @property
    def bulk(self) -> bool:
        """True if the last batch went to kafka-python whole rather than record by record."""
        return self._whole

    def producer_settings(self, bootstrap_timeout_ms: int) -> dict[str, Any]:
        """The keyword arguments kafkalog gives ``KafkaProducer``."""
        c = self._config
        max_block_ms = min(MAX_BLOCK_MS, c.request_timeout_ms)
        settings: dict[str, Any] = {
            "bootstrap_servers": list(c.bootstrap_servers),
            "acks": c.acks,
            "compression_type": None if c.compression_type == "none" else c.compression_type,
            # The worker already lingers and hands over whole batches, then flushes; a second
            # linger inside kafka-python would only add latency.
            "linger_ms": 0,
            # kafka-python, like librdkafka, puts at most one batch per partition in a produce
            # request, and each request costs its network thread Python time under the GIL:
            # with 16 KiB batches a tight logging loop made ~1,900 requests per 100k records,
            # with batches of max_request_size 60-90. kafkalog's batch_size stays the worker's
            # trigger (queued bytes that end its linger early), as with the confluent transport.
            "batch_size": c.max_request_size,
            "max_request_size": c.max_request_size,
            # kafka-python's own sensors: kafkalog keeps its stats itself and never reads them,
            # and recording them took ~15% of the network thread's time under the GIL.
            "metrics_enabled": False,
            "request_timeout_ms": c.request_timeout_ms,
            "retry_backoff_ms": c.retry_backoff_ms,
            "max_block_ms": max_block_ms,
            "bootstrap_timeout_ms": bootstrap_timeout_ms,
            # Idempotence keeps per-partition order through kafka-python's internal retries;
            # it needs acks=all, so it follows the acks setting instead of warning about it.
            "enable_idempotence": c.acks == -1,
        }
        if c.client_id:
            settings["client_id"] = c.client_id
        settings.update(security_settings(c))
        settings.update(c.producer_config)
        return settings

    def _classify(self, exc: BaseException, topic: str | None = None) -> TransportError:
        topic = topic or self._topic
        if isinstance(exc, kafka.errors.InvalidTopicError):
            return invalid_topic(topic, type(exc).__name__)
        if isinstance(exc, kafka.errors.KafkaTimeoutError):
            # Metadata for the topic did not come: the cluster may have answered about it.
            known = self._topic_errors.get(topic)
            if known is not None and issubclass(known, kafka.errors.UnknownTopicOrPartitionError):
                return TopicMissingError.on(topic, self._config.bootstrap_servers)
            if known is not None and issubclass(known, kafka.errors.InvalidTopicError):
                return invalid_topic(topic, known.__name__)
        return classify(exc, topic=topic, login=self._login)

    def _ensure_producer(self, timeout_s: float) -> Any:
        """The producer, building it on a helper thread and waiting at most ``timeout_s``.

        kafka-python's constructor blocks until it has bootstrapped. Running it on its own
        thread keeps every call of the worker bounded (so close() is prompt), and lets one
        bootstrap attempt go on across several of the worker's retries instead of restarting.
        """
        if self._producer is not None:
            return self._producer
        with self._lock:
            connect = self._connect
            if connect is None or connect.failed:
                settings = self.producer_settings(self._config.request_timeout_ms)
                connect = self._connect = ConnectAttempt(settings, _is_refusal)
        # At most CONNECT_WAIT_S per call: the worker's backoff and deadlines apply between.
        if not self._wait(connect.done, min(timeout_s, CONNECT_WAIT_S), hurry=True):
            # A refused certificate or login is known long before the bootstrap gives up.
            failure = connect.refusal()
            if failure is not None:
                raise failure
            raise _not_connected(connect)
        if connect.error is not None:
            if isinstance(connect.error, _BOOTSTRAP_FAILURES):
                raise _not_connected(connect) from connect.error  # it says why, by server
            raise connect.error
        with self._lock:
            self._producer, self._connect = connect.producer, None
            self._topic_errors = {}
            watch_topic_errors(self._producer, self._topic_errors)
        self._new_client()
        return self._producer

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                abandon(producer)  # the worker resends what it still holds
            except Exception:
                log.debug("abandoning a failed producer", exc_info=True)

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        """Send the batch and wait for acknowledgements, up to ``timeout_s``."""
        deadline = self._clock() + timeout_s
        try:
            producer = self._ensure_producer(timeout_s)
        except Exception as exc:
            err = self._classify(exc, topic)
            return [err] * len(records)
        self._whole = self._hand_off_usable(producer)
        if self._whole:
            return self._send_bulk(producer, records, deadline, topic)
        return self._send_each(producer, records, deadline, topic)

    def _hand_off_usable(self, producer: Any) -> bool:
        """Whether batches may go to ``producer`` whole: checked once per producer."""
        if self._checked[0] is not producer:
            self._checked = (producer, not self._public_only and hand_off_usable(producer))
        return self._checked[1]

    def _send_each(
        self, producer: Any, records: Sequence[OutRecord], deadline: float, topic: str | None
    ) -> list[TransportError | None]:
        """The public path: one ``KafkaProducer.send()`` per record."""
        results: list[TransportError | None] = [None] * len(records)
        positions: list[int] = []
        futures: list[Any] = []
        topic, partition = self._destination(topic)
        client_refused = False  # TLS, login or ACL: this client is refused, whatever it sends
        for i, (value, key) in enumerate(records):
            try:
                future = producer.send(topic, value=value, key=key, partition=partition)
                positions.append(i)
                futures.append(future)
                if future.is_done and future.failed():
                    # kafka-python hands back a refused topic as a failed future, after
                    # waiting on metadata for each record: stop at the first refusal.
                    err = self._classify(future.exception, topic)
                    if isinstance(err, SecurityError):
                        client_refused = True
                        for j in range(i + 1, len(records)):
                            results[j] = err
                        break
            except Exception as exc:
                err = self._classify(exc, topic)
                client_refused = isinstance(err, SecurityError)
                if err.retriable:
                    # Missing metadata or a full buffer: the rest would wait and fail the same way.
                    for j in range(i, len(records)):
                        results[j] = err
                    break
                results[i] = err

        # What is still pending when the time is up is reported as retriable below.
        self._flush_until(producer, deadline, futures, attrgetter("is_done"))
        broken = client_refused  # a refused client may hold a fatal state (a refused producer id)
        for i, future in zip(positions, futures, strict=True):
            if not future.is_done:
                results[i] = not_acknowledged("KafkaTimeoutError")
                broken = True
            elif future.failed():
                results[i] = self._classify(future.exception, topic)
                broken = True  # after a fatal error kafka-python fails every later batch too
        if broken:
            # Rebuild rather than let a client with stale connections keep retrying on its own:
            # those retries would race the worker's and send duplicates.
            self._discard_producer()
        return results

    def _send_bulk(
        self, producer: Any, records: Sequence[OutRecord], deadline: float, topic: str | None
    ) -> list[TransportError | None]:
        """Encode each producer batch in one pass and hand it to kafka-python whole (see
        :mod:`kafkalog.transports.bulk`): one future per producer batch, not one per record."""
        n = len(records)
        results: list[TransportError | None] = [None] * n
        topic, pinned = self._destination(topic)
        limit = producer.config["max_request_size"]
        no_keys = bulk.unkeyed_only(records)
        too_big = bulk.oversized(records, limit, no_keys=no_keys)
        for i in too_big:
            results[i] = self._classify(kafka.errors.MessageSizeTooLargeError(
                f"a record of {len(records[i][0])} bytes is over max_request_size ({limit})"
            ), topic)
        try:
            partitions = sorted(producer.partitions_for(topic))  # waits for metadata, bounded
            groups, unkeyed = self._keys.group(records, topic, partitions, pinned, too_big,
                                               unkeyed_only=no_keys)
        except Exception as exc:
            err = self._classify(exc, topic)
            if isinstance(err, SecurityError):
                self._discard_producer()
            return [results[i] if i in too_big else err for i in range(n)]
        placed: list[bulk.Placed] = []
        try:
            bulk.hand_over(producer, records, topic, groups, unkeyed,
                           run_bytes=self._config.batch_size, placed=placed)
        except Exception as exc:
            # What kafka-python holds is settled below, the rest retried. An error that is not
            # kafka-python's own means its internals changed: later batches take send().
            if not isinstance(exc, kafka.errors.KafkaError):
                self._public_only, self._checked = True, (producer, False)
                hand_off_broken(f"handing a batch over raised {exc!r}")
            bulk.not_placed(placed, results, not_acknowledged(type(exc).__name__, f" ({exc})"))
        # What is still open when the time is up is reported as retriable by settle().
        self._flush_until(producer, deadline, [p for p, _ in placed], bulk.Positions.done)
        if bulk.settle(placed, lambda exc: self._classify(exc, topic), results):
            # As in _send_each: a client that failed may hold stale connections or a fatal
            # state; rebuild it rather than let its own retries race the worker's.
            self._discard_producer()
        return results

    def _flush_until(
        self, producer: Any, deadline: float, pending: Sequence[_T], done: Callable[[_T], bool]
    ) -> None:
        """Flush until every one of ``pending`` is ``done``, up to ``deadline``, in slices so
        that interrupt() is noticed. flush() can raise on its own (a batch being split and
        retried): that only ends the slice; ``pending`` says how each record fared."""
        first_open = 0
        for wait_s in self._slices(deadline):
            while first_open < len(pending) and done(pending[first_open]):
                first_open += 1
            if first_open == len(pending):
                return
            with contextlib.suppress(kafka.errors.KafkaError):
                producer.flush(timeout=wait_s)

    def close(self, timeout_s: float) -> None:
        """Flush what the client holds (bounded) and close it."""
        with self._lock:
            producer, self._producer = self._producer, None
            connect, self._connect = self._connect, None
        if connect is not None:
            connect.abandon()
        if producer is not None:
            try:
                producer.close(timeout=max(0.0, timeout_s))
            except Exception:
                log.debug("closing the producer", exc_info=True)
                with contextlib.suppress(Exception):
                    abandon(producer)  # not flushed in time: stop it anyway

    def disown(self) -> None:
        """In a forked child: drop the parent's producer without flushing or closing its sockets
        (see :func:`kafkalog.transports.connect.orphan`)."""
        producer, self._producer = self._producer, None
        self._connect = None  # its thread did not survive the fork
        self._lock = threading.Lock()
        if producer is not None:
            orphan(producer)
