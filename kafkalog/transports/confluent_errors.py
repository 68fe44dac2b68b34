"""librdkafka's errors as kafkalog's, for the confluent transport: classified by error code
and librdkafka's own ``retriable()``/``fatal()`` flags, never by message text.

Imported only with ``transport="confluent"`` (confluent-kafka is an optional extra).
"""

from __future__ import annotations

from confluent_kafka import KafkaError, KafkaException

from kafkalog.errors import TransportError
from kafkalog.transports.errors import Refusal, invalid_topic, refused, unexpected


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
_REFUSALS: dict[int, Refusal] = {
    **dict.fromkeys(_codes("_SSL"), Refusal.TLS),
    **dict.fromkeys(_codes("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED",
                           "UNSUPPORTED_SASL_MECHANISM", "ILLEGAL_SASL_STATE"), Refusal.LOGIN),
    **dict.fromkeys(_codes("TOPIC_AUTHORIZATION_FAILED", "CLUSTER_AUTHORIZATION_FAILED"),
                    Refusal.DENIED),
}
# The broker refuses the topic itself (an internal topic, a name it does not accept).
INVALID_TOPIC_CODES = _codes("TOPIC_EXCEPTION", "INVALID_TOPIC_EXCEPTION")
# The cluster answered that it has no such topic.
UNKNOWN_TOPIC_CODES = _codes("UNKNOWN_TOPIC_OR_PART", "_UNKNOWN_TOPIC")
# The codes of records taken back from librdkafka's queues (by a purge).
PURGE_CODES = _codes("_PURGE_QUEUE", "_PURGE_INFLIGHT")


def security_error(
    code: int, detail: str, *, topic: str | None = None, login: str | None = None
) -> TransportError | None:
    """The :class:`~kafkalog.errors.SecurityError` for a librdkafka code, or None.

    ``detail`` is librdkafka's description, ``login`` says who logged in how (never a
    password), ``topic`` which topic was being written.
    """
    kind = _REFUSALS.get(code)
    if kind is None:
        return None
    return refused(kind, detail, topic=topic or "?", login=login)


def classify_error(
    err: KafkaError, *, topic: str | None = None, login: str | None = None
) -> TransportError:
    """A TransportError for a librdkafka error, retriable or not by its code and flags."""
    code = err.code()
    name = err.name()
    refusal = security_error(code, f"{name}: {err.str()}", topic=topic, login=login)
    if refusal is not None:
        return refusal
    if code in INVALID_TOPIC_CODES and topic is not None:
        return invalid_topic(topic, name)
    # A fatal error breaks the producer instance, not the record: a new producer may take it.
    retriable = code in RETRIABLE_CODES or bool(err.retriable()) or bool(err.fatal())
    return TransportError(f"{name}: {err.str()}", retriable=retriable, cause_name=name)


def classify(exc: BaseException) -> TransportError:
    """Turn any exception raised by confluent-kafka into a TransportError, by its type."""
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, KafkaException) and exc.args and isinstance(exc.args[0], KafkaError):
        return classify_error(exc.args[0])
    # BufferError: librdkafka's local queue is full, room comes back as acknowledgements do.
    return unexpected(exc, (BufferError, OSError, TimeoutError))
