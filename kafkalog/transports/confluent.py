"""The only module that imports confluent-kafka: a :class:`~kafkalog.transports.base.Transport` over
librdkafka, chosen with ``transport="confluent"`` (``pip install 'kafkalog[confluent]'``).

It keeps the contract of the kafka-python transport: the worker hands over a batch, gets one
result per record, and decides about retries and spilling itself. Differences that matter here:

- librdkafka never blocks to bootstrap, so the producer is built directly on the worker thread;
- a record not acknowledged when an attempt ends is *purged* from librdkafka's queues before
  ``send`` returns, so the client can not deliver it on its own later while the worker resends
  it (that race is why the kafka-python transport throws its client away instead);
- librdkafka reports errors as codes: they are classified by code (and its own
  ``retriable()``/``fatal()`` flags), never by message text.
"""

from __future__ import annotations

import ctypes
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

from kafkalog.config import PipelineConfig
from kafkalog.diagnostics import log
from kafkalog.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigError,
    TlsVerificationError,
    TransportError,
)
from kafkalog.transports.base import WAIT_SLICE_S, OutRecord

# librdkafka's own limits on the properties kafkalog derives from its options.
_MAX_REQUEST_TIMEOUT_MS = 900_000
_MAX_RETRY_BACKOFF_MS = 300_000
# How long close() waits for librdkafka to stop its threads before leaving it to finish alone.
_CLOSE_WAIT_S = 1.0
# After a purge, how long send() waits for librdkafka to report on the purged records.
_PURGE_REPORT_WAIT_S = 0.5
# At the end of an attempt, how long records already sent may still be acknowledged.
_IN_FLIGHT_GRACE_S = 0.5
# librdkafka's linger.ms (see producer_properties).
_QUEUEING_LINGER_MS = 5

# librdkafka properties kafkalog sets from its own options or needs for itself; setting them in
# producer_config would silently change delivery semantics, so it is refused. Aliases included.
MANAGED_PROPERTIES = frozenset(
    {
        "bootstrap.servers",
        "metadata.broker.list",
        "acks",
        "request.required.acks",
        "enable.idempotence",
        "compression.type",
        "compression.codec",
        "linger.ms",
        "queue.buffering.max.ms",
        "batch.size",
        "message.max.bytes",
        "request.timeout.ms",
        "message.timeout.ms",
        "delivery.timeout.ms",
        "retry.backoff.ms",
        "retry.backoff.max.ms",
        "client.id",
        "partitioner",
        "transactional.id",
        "delivery.report.only.error",
        "on_delivery",
        "error_cb",
        "logger",
    }
)


# kafkalog's connection-security options and the librdkafka properties they set.
SECURITY_PROPERTIES: dict[str, str] = {
    "security_protocol": "security.protocol",
    "sasl_mechanism": "sasl.mechanism",
    "sasl_username": "sasl.username",
    "sasl_password": "sasl.password",
    "ssl_cafile": "ssl.ca.location",
    "ssl_certfile": "ssl.certificate.location",
    "ssl_keyfile": "ssl.key.location",
    "ssl_check_hostname": "ssl.endpoint.identification.algorithm",
}
# Aliases librdkafka accepts for some of them.
_SECURITY_ALIASES: dict[str, str] = {"sasl.mechanisms": "sasl_mechanism",
                                     "sasl.user": "sasl_username"}


def _codes(*names: str) -> frozenset[int]:
    # getattr: a name missing from an older confluent-kafka is simply not in the set.
    return frozenset(getattr(KafkaError, n) for n in names if hasattr(KafkaError, n))


# Errors after which sending the same record again can succeed: the broker or the connection
# is (for now) unable, not the record unacceptable. Authentication and authorisation failures
# are here too: an operator fixes them (a credential, an ACL) and the held records then go,
# which is better than dead-lettering every record during the misconfiguration.
RETRIABLE_CODES = _codes(
    # librdkafka's local (negative) codes
    "_MSG_TIMED_OUT",
    "_TIMED_OUT",
    "_TIMED_OUT_QUEUE",
    "_TRANSPORT",
    "_ALL_BROKERS_DOWN",
    "_RESOLVE",
    "_QUEUE_FULL",
    "_PURGE_QUEUE",
    "_PURGE_INFLIGHT",
    "_DESTROY",
    "_UNKNOWN_TOPIC",
    "_ISR_INSUFF",
    "_RETRY",
    "_NODE_UPDATE",
    "_WAIT_COORD",
    "_IN_PROGRESS",
    "_PREV_IN_PROGRESS",
    "_STATE",
    "_FATAL",
    "_AUTHENTICATION",
    "_SSL",
    "_INTR",
    # the broker's codes that Kafka itself calls retriable, or that pass with time
    "UNKNOWN_TOPIC_OR_PART",
    "LEADER_NOT_AVAILABLE",
    "NOT_LEADER_FOR_PARTITION",
    "REQUEST_TIMED_OUT",
    "BROKER_NOT_AVAILABLE",
    "REPLICA_NOT_AVAILABLE",
    "NETWORK_EXCEPTION",
    "INVALID_MSG",  # the broker's CORRUPT_MESSAGE: damaged on the way, send it again
    "NOT_ENOUGH_REPLICAS",
    "NOT_ENOUGH_REPLICAS_AFTER_APPEND",
    "NOT_CONTROLLER",
    "KAFKA_STORAGE_ERROR",
    "FENCED_LEADER_EPOCH",
    "UNKNOWN_LEADER_EPOCH",
    "OFFSET_NOT_AVAILABLE",
    "PREFERRED_LEADER_NOT_AVAILABLE",
    "ELIGIBLE_LEADERS_NOT_AVAILABLE",
    "THROTTLING_QUOTA_EXCEEDED",
    "CONCURRENT_TRANSACTIONS",
    "OUT_OF_ORDER_SEQUENCE_NUMBER",
    "UNKNOWN_PRODUCER_ID",
    "INVALID_PRODUCER_EPOCH",
    "TOPIC_AUTHORIZATION_FAILED",
    "CLUSTER_AUTHORIZATION_FAILED",
    "SASL_AUTHENTICATION_FAILED",
    "REBOOTSTRAP_REQUIRED",
)
# Any other code (a record too large, an invalid record or timestamp, an unknown partition, a
# policy violation, ...) means Kafka refuses the record: the worker confirms that by sending
# it alone, then dead-letters it.


# Refusals of this client rather than of its records: reported as kafkalog's SecurityError
# kinds (retriable: an operator fixes a CA, a password or an ACL, and the held records go).
_TLS_CODES = _codes("_SSL")
_LOGIN_CODES = _codes(
    "_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED", "UNSUPPORTED_SASL_MECHANISM",
    "ILLEGAL_SASL_STATE",
)  # fmt: skip
_DENIED_CODES = _codes("TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED")


def security_error(
    code: int, detail: str, *, topic: str | None = None, login: str | None = None
) -> TransportError | None:
    """The :class:`~kafkalog.errors.SecurityError` for a librdkafka code, or None.

    ``detail`` is librdkafka's description, ``login`` says who logged in how (never a
    password), ``topic`` which topic was being written.
    """
    if code in _TLS_CODES:
        return TlsVerificationError.failed(detail)
    if code in _LOGIN_CODES:
        return AuthenticationError.rejected(detail, login=login)
    if code in _DENIED_CODES:
        return AuthorizationError.denied(detail, topic=topic or "?", login=login)
    return None


def classify_error(
    err: KafkaError, *, topic: str | None = None, login: str | None = None
) -> TransportError:
    """A TransportError for a librdkafka error, retriable or not by its code and flags."""
    code = err.code()
    name = err.name()
    refused = security_error(code, f"{name}: {err.str()}", topic=topic, login=login)
    if refused is not None:
        return refused
    # A fatal error breaks the producer instance, not the record: a new producer may take it.
    retriable = code in RETRIABLE_CODES or bool(err.retriable()) or bool(err.fatal())
    return TransportError(f"{name}: {err.str()}", retriable=retriable, cause_name=name)


def classify(exc: BaseException) -> TransportError:
    """Turn any exception raised by confluent-kafka into a TransportError, by its type."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return classify_error(exc.args[0])
    name = type(exc).__name__
    # BufferError: librdkafka's local queue is full, room comes back as acknowledgements do.
    retriable = isinstance(exc, (BufferError, OSError, TimeoutError))
    return TransportError(f"{name}: {exc}", retriable=retriable, cause_name=name)


class _LibrdkafkaLog:
    """librdkafka's log lines go to kafkalog's diagnostics logger at DEBUG, not to stderr.

    During an outage librdkafka logs every failed reconnect; the worker already reports the
    outage once a minute (rate-limited), so these lines are for debugging only.
    """

    def log(self, level: int, msg: str, *args: object) -> None:
        log.debug("librdkafka: " + msg, *args)


def producer_properties(config: PipelineConfig) -> dict[str, Any]:
    """librdkafka properties for kafkalog's options (without ``producer_config``)."""
    c = config
    request_timeout_ms = min(c.request_timeout_ms, _MAX_REQUEST_TIMEOUT_MS)
    backoff_ms = min(max(1, c.retry_backoff_ms), _MAX_RETRY_BACKOFF_MS)
    backoff_max_ms = min(max(backoff_ms, c.retry_backoff_max_ms), _MAX_RETRY_BACKOFF_MS)
    props: dict[str, Any] = {
        "bootstrap.servers": ",".join(c.bootstrap_servers),
        "acks": "all" if c.acks == -1 else str(c.acks),
        # As with kafka-python: idempotence keeps per-partition order through librdkafka's own
        # retries; it needs acks=all, so it follows the acks setting.
        "enable.idempotence": c.acks == -1,
        "compression.type": c.compression_type,
        # The worker lingers and hands over whole batches, and each send ends in flush(),
        # which makes librdkafka send at once whatever its linger: this linger only applies
        # while send() is still queueing a batch. With 0, librdkafka woke its thread for
        # nearly every record queued, which cost ~20% of the process's CPU per record.
        "linger.ms": _QUEUEING_LINGER_MS,
        # librdkafka puts one partition in each produce request, so a batch is a request:
        # with kafka-python's 16 KiB it would make ~60 times more requests (a hand-over of
        # 20,000 records took seconds on a cold broker). kafkalog's batch_size stays what it is
        # for the worker: the queued bytes that end its linger.
        "batch.size": c.max_request_size,
        "message.max.bytes": c.max_request_size,
        "request.timeout.ms": request_timeout_ms,
        # Records not acknowledged when an attempt ends are purged by send(); this bound only
        # makes librdkafka give up by itself no later than the attempt would.
        "message.timeout.ms": request_timeout_ms,
        "retry.backoff.ms": backoff_ms,
        "retry.backoff.max.ms": backoff_max_ms,
        # librdkafka's default reconnect backoff grows to 10 s: after an outage the first
        # attempt would wait that long. Keep it within the worker's own backoff.
        "reconnect.backoff.ms": backoff_ms,
        "reconnect.backoff.max.ms": backoff_max_ms,
        # murmur2 for keyed records, like Kafka's Java client and kafka-python, so a key lands
        # on the same partition whichever transport sent it; unkeyed records spread randomly.
        "partitioner": "murmur2_random",
        # librdkafka sticks unkeyed records to one partition for twice linger.ms; with the
        # 5 ms linger above a whole batch could land on one partition. 0 keeps them random.
        "sticky.partitioning.linger.ms": 0,
        # Kafka's (and kafka-python's) default. librdkafka's own is a million, which without
        # idempotence (acks 0 or 1) lets its retries reorder records over a far wider window.
        "max.in.flight.requests.per.connection": 5,
    }
    if c.client_id:
        props["client.id"] = c.client_id
    props.update(_security_properties(c))
    return props


def _security_properties(config: PipelineConfig) -> dict[str, Any]:
    """librdkafka properties for the handler's security options (TLS, SASL), if any are set."""
    protocol = config.security_protocol
    if str(protocol).upper() == "PLAINTEXT":
        return {}
    props: dict[str, Any] = {"security.protocol": str(protocol).lower()}
    for option, prop in SECURITY_PROPERTIES.items():
        value = getattr(config, option, None)
        if option == "security_protocol" or value is None:
            continue
        if option == "ssl_check_hostname":
            if str(protocol).upper() in ("SSL", "SASL_SSL"):
                props[prop] = "https" if value else "none"
            continue
        reveal = getattr(value, "reveal", None)  # a kafkalog Secret: the client needs the text
        props[prop] = reveal() if callable(reveal) else value
    return props


def _validate(props: Mapping[str, Any]) -> str | None:
    """librdkafka's complaint about ``props``, or None. Builds (and at once drops) a producer.

    Only librdkafka knows its properties and their ranges. Without ``bootstrap.servers`` the
    producer makes no connection, so this is a few milliseconds of local work.
    """
    trial = {k: v for k, v in props.items() if k not in ("bootstrap.servers", "logger")}
    trial["logger"] = _LibrdkafkaLog()
    try:
        producer = confluent_kafka.Producer(trial)
    except KafkaException as exc:
        err = exc.args[0] if exc.args else None
        return err.str() if isinstance(err, KafkaError) else str(exc)
    except (TypeError, ValueError) as exc:
        return str(exc)
    producer.close()
    return None


def check_producer_config(config: PipelineConfig) -> None:
    """Check the librdkafka properties of ``config`` at construction; ConfigError if refused.

    For this transport ``producer_config`` holds librdkafka property names (``"security.protocol"``,
    ``"sasl.username"``, ...). A name librdkafka does not know, a bad value, or a property
    kafkalog manages is refused here rather than on the worker thread.
    """
    managed = sorted(MANAGED_PROPERTIES & set(config.producer_config))
    if managed:
        raise ConfigError(
            "producer_config",
            f"sets {managed}: kafkalog sets these from its own options (see docs/transports.md)",
        )
    by_property = {prop: option for option, prop in SECURITY_PROPERTIES.items()}
    by_property.update(_SECURITY_ALIASES)
    for prop in sorted(config.producer_config):
        option = by_property.get(prop)
        if option is not None:
            raise ConfigError(
                "producer_config", f"sets {prop!r}: use the handler option {option!r} instead"
            )
    own = producer_properties(config)
    problem = _validate(own)
    if problem is not None:
        raise ConfigError("transport", f"librdkafka refuses kafkalog's settings: {problem}")
    problem = _validate({**own, **config.producer_config}) if config.producer_config else None
    if problem is not None:
        raise ConfigError("producer_config", f"librdkafka refuses it: {problem}")


_PURGED = TransportError("taken back at the end of the attempt", retriable=True,
                         cause_name="_PURGE_QUEUE")
_PURGE_CODES = _codes("_PURGE_QUEUE", "_PURGE_INFLIGHT")


class _Outcome:
    """Results of one send(): None (delivered) unless a delivery callback reports a failure.

    The producer runs with ``delivery.report.only.error``, so librdkafka's successes never reach
    Python; a record with no failure report is delivered once librdkafka holds nothing more.
    """

    __slots__ = ("login", "purged", "results", "topic")

    def __init__(self, count: int, topic: str, login: str | None) -> None:
        self.results: list[TransportError | None] = [None] * count
        self.purged = 0
        self.topic = topic
        self.login = login

    def failed(self, index: int, err: KafkaError | None) -> None:
        if err is None:
            return  # a success: delivered is what results already says
        if err.code() in _PURGE_CODES:
            self.results[index] = _PURGED  # send() says why: the client's last error
            self.purged += 1
        else:
            self.results[index] = classify_error(err, topic=self.topic, login=self.login)


class _Current:
    """Which send() the delivery callbacks of one producer report to (None between sends)."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: _Outcome | None = None


class _Report:
    """The delivery callback of the record at ``index`` of whichever batch is being sent.

    One per position, made once per producer and reused by every send(): a new callable per
    record (and the dict produce_batch() wants) kept tens of thousands of young objects alive
    per batch, and the garbage collector's passes over them cost more than the sending.
    """

    __slots__ = ("current", "index")

    def __init__(self, current: _Current, index: int) -> None:
        self.current = current
        self.index = index

    def __call__(self, err: KafkaError | None, _msg: object) -> None:
        outcome = self.current.outcome
        if outcome is not None:  # else a report after send() returned: the worker has acted
            outcome.failed(self.index, err)


class ConfluentTransport:
    """A :class:`~kafkalog.transports.base.Transport` over ``confluent_kafka.Producer``
    (librdkafka).

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        config: PipelineConfig,
        *,
        on_new_client: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._topic = config.topic
        self._partition = config.partition
        self._on_new_client = on_new_client
        self._clock = clock
        self._producer: confluent_kafka.Producer | None = None
        # The current producer's delivery callbacks, one per position in a batch (see _Report).
        self._current = _Current()
        self._reports: list[_Report] = []
        self._interrupted = threading.Event()
        self._fatal = False
        self._last_client_error: str | None = None
        self._last_client_code: int | None = None
        # Who this client is, for messages about refusals (never the password).
        self._login: str | None = None
        if config.sasl_username:
            self._login = f"SASL user {config.sasl_username!r} ({config.sasl_mechanism})"
        elif config.ssl_certfile:
            self._login = f"the client certificate {config.ssl_certfile}"

    def producer_settings(self) -> dict[str, Any]:
        """The librdkafka properties kafkalog gives the producer (``producer_config`` last)."""
        props = producer_properties(self._config)
        props.update(self._config.producer_config)
        return props

    def _ensure_producer(self) -> confluent_kafka.Producer:
        producer = self._producer
        if producer is None:
            props = self.producer_settings()
            props["logger"] = _LibrdkafkaLog()
            props["error_cb"] = self._client_error
            # Only failures reach the per-record callbacks, which spares a Message object and
            # a Python call per delivered record. confluent-kafka implements this itself (it
            # still frees each record's state); librdkafka still counts every record until it
            # is acknowledged, which is how send() knows the silent ones were delivered.
            props["delivery.report.only.error"] = True
            # librdkafka connects in the background: building it never waits for a broker.
            producer = confluent_kafka.Producer(props)
            self._producer = producer
            # New callbacks too: a report from the old producer (being destroyed on another
            # thread) can never land in this one's results.
            self._current = _Current()
            self._reports = []
            self._fatal = False
            self._last_client_error = self._last_client_code = None
            if self._on_new_client is not None:
                self._on_new_client()
        return producer

    def _client_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (served on the worker thread, from poll/flush)."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self._last_client_error is not None:
            return  # a summary of failures already seen: keep the one that says why
        self._last_client_error = f"{err.name()}: {err.str()}"
        self._last_client_code = err.code()
        if err.fatal():
            self._fatal = True

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        """Send the batch and wait for acknowledgements, up to ``timeout_s``."""
        if not records:
            return []
        deadline = self._clock() + timeout_s
        try:
            producer = self._ensure_producer()
        except Exception as exc:
            # A client that can not be built says nothing about the records: never dead-letter
            # them for it (the settings were checked at construction; a file may have gone).
            err = classify(exc)
            err = TransportError(str(err), retriable=True, cause_name=err.cause_name)
            return [err] * len(records)
        partition = -1  # librdkafka's "unassigned": its partitioner decides
        if topic is None:
            topic = self._topic
            if self._partition is not None:
                partition = self._partition
        outcome = _Outcome(len(records), topic, self._login)
        current = self._current
        current.outcome = outcome
        try:
            held = self._produce(producer, records, topic, partition, outcome)
            # flush() makes librdkafka send at once and serves the failure reports; it waits in
            # slices so that interrupt() is noticed promptly. It returns what librdkafka still
            # holds: 0 means every record has been acknowledged or reported as failed.
            while held > 0 and not self._interrupted.is_set():
                remaining = deadline - self._clock()
                if remaining <= 0:
                    break
                held = producer.flush(min(remaining, WAIT_SLICE_S))
            if held > 0:
                # Out of time: take back what was never sent (certainly not delivered), and give
                # what is on the wire a short grace to be acknowledged: a record purged in
                # flight may still have been written, and the worker's resend would duplicate it.
                self._purge(producer, in_flight=False)
                held = self._serve_reports(producer, _IN_FLIGHT_GRACE_S, interruptible=True)
            if held > 0:
                # Take the rest back, so that librdkafka can not deliver it by itself after the
                # worker has decided to resend or spill it.
                held = self._purge(producer, wait_s=_PURGE_REPORT_WAIT_S)
        finally:
            current.outcome = None
        results = outcome.results
        if held > 0:
            # librdkafka still holds something after the purge and its grace: a record
            # without a failure report may have been delivered or not. Resending it is the
            # safe side (a possible duplicate, never a loss).
            timeout = self._timeout_error()
            results = [timeout if r is None or r is _PURGED else r for r in results]
        elif outcome.purged:
            # Reports that only say "purged": name the client's last error instead (a refused
            # connection, a failed TLS handshake or login).
            timeout = self._timeout_error()
            results = [timeout if r is _PURGED else r for r in results]
        elif not any(results):
            # All delivered: an old error no longer applies.
            self._last_client_error = self._last_client_code = None
        del producer  # so that a discarded producer is destroyed off this thread
        if self._fatal or held > 0:
            # Fatal: the idempotent producer's state is broken for good. Held: librdkafka
            # still has records the worker will resend; destroying it (without a flush) is
            # the one way to be sure it does not deliver them as well.
            self._discard_producer()
        return results

    def _produce(
        self,
        producer: confluent_kafka.Producer,
        records: Sequence[OutRecord],
        topic: str,
        partition: int,
        outcome: _Outcome,
    ) -> int:
        """Hand ``records`` to librdkafka; return how much it holds (0: nothing was queued).

        A produce() per record with a reused callback measured cheaper than produce_batch()
        with a dict per record. A record librdkafka refuses to queue (its queue is full, the
        record too large) gets its error here and no report later.
        """
        reports = self._reports
        if len(reports) < len(records):
            current = self._current
            reports.extend(_Report(current, i) for i in range(len(reports), len(records)))
        produce = producer.produce
        refused = 0
        for (value, key), report in zip(records, reports, strict=False):  # reports may be longer
            try:
                produce(topic, value, key, partition, report)
            except Exception as exc:
                outcome.results[report.index] = classify(exc)
                refused += 1
        return 0 if refused == len(records) else _held(producer)

    def _serve_reports(
        self, producer: confluent_kafka.Producer, wait_s: float, *, interruptible: bool = False
    ) -> int:
        """Serve delivery reports while librdkafka holds something, for up to ``wait_s`` (less
        if ``interruptible`` and interrupt() is called); return what it still holds."""
        end = self._clock() + wait_s
        held = _held(producer)
        while held > 0 and self._clock() < end:
            if interruptible and self._interrupted.is_set():
                break
            producer.poll(WAIT_SLICE_S / 2)
            held = _held(producer)
        return held

    def _purge(
        self, producer: confluent_kafka.Producer, *, in_flight: bool = True, wait_s: float = 0.0
    ) -> int:
        """Take every unacknowledged record out of librdkafka and serve their reports.

        Reports of purged records normally come at once; those of records that were in flight
        can lag a little, so this waits up to ``wait_s`` for librdkafka to hold nothing more.
        Returns what it still holds.
        """
        try:
            producer.purge(in_queue=True, in_flight=in_flight, blocking=True)
            producer.poll(0)
            return self._serve_reports(producer, wait_s)
        except Exception:
            log.debug("purging the producer", exc_info=True)
            return _held(producer)

    def _timeout_error(self) -> TransportError:
        last = self._last_client_error
        code = self._last_client_code
        if last is not None and code is not None:
            refused = security_error(code, last, topic=self._topic, login=self._login)
            if refused is not None:
                return refused
        detail = f" (last client error: {last})" if last else ""
        return TransportError(
            f"_MSG_TIMED_OUT: not acknowledged in time{detail}",
            retriable=True,
            cause_name="_MSG_TIMED_OUT",
        )

    def _discard_producer(self, wait_s: float = 0.0) -> None:
        producer = self._producer
        if producer is None:
            return
        self._purge(producer)
        holder = [producer]
        self._producer = None
        del producer
        _destroy_in_background(holder, wait_s)

    def interrupt(self) -> None:
        """Cut short the ``send`` in progress and any later ones (used at close)."""
        self._interrupted.set()

    def close(self, timeout_s: float) -> None:
        """Drop what librdkafka still holds (the worker has resolved every record) and stop it."""
        self._discard_producer(min(max(0.0, timeout_s), _CLOSE_WAIT_S))

    def disown(self) -> None:
        """In a forked child: forget the parent's producer without touching it.

        librdkafka's threads do not exist in the child, and destroying the producer there waits
        for them (it hangs). So the child keeps it alive forever: one extra reference that is
        never released, so that neither the garbage collector nor interpreter shutdown
        destroys it.
        """
        producer, self._producer = self._producer, None
        if producer is not None:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(producer))


def _held(producer: confluent_kafka.Producer) -> int:
    """What librdkafka still holds: records not yet acknowledged or reported, and unserved
    events. A producer that can not say counts as holding something."""
    try:
        return len(producer)
    except Exception:
        return 1


def _destroy_in_background(holder: list[confluent_kafka.Producer], wait_s: float) -> None:
    """Destroy the producer in ``holder`` (its only reference) on a daemon thread.

    Dropping the last reference destroys the client without flushing; ``Producer.close()``
    would first wait, without a time limit, for every record it still holds. Destroying joins
    librdkafka's threads, which can take a while when one is in a blocking call (a DNS lookup),
    so the worker waits at most ``wait_s`` for it.
    """
    thread = threading.Thread(target=holder.clear, name="kafkalog-confluent-close", daemon=True)
    thread.start()
    thread.join(wait_s)
