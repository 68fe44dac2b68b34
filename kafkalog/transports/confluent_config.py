"""kafkalog's options as librdkafka properties, for the confluent transport, and the checks of
``producer_config`` (librdkafka property names) made at construction.

Imported only with ``transport="confluent"`` (confluent-kafka is an optional extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

from kafkalog.config import PipelineConfig
from kafkalog.diagnostics import log
from kafkalog.errors import ConfigError
from kafkalog.transports.security import security_options, uses_tls

# librdkafka's own limits on the properties kafkalog derives from its options.
_MAX_REQUEST_TIMEOUT_MS = 900_000
_MAX_RETRY_BACKOFF_MS = 300_000
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


class LibrdkafkaLog:
    """librdkafka's log lines go to kafkalog's diagnostics logger at DEBUG, not to stderr.

    During an outage librdkafka logs every failed reconnect; the worker already reports the
    outage once a minute (rate-limited), so these lines are for debugging only.
    """

    def log(self, level: int, msg: str, *args: object) -> None:
        """Pass one librdkafka log line on (confluent-kafka calls this as a logger's ``log``)."""
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
    protocol = str(config.security_protocol).upper()
    if protocol == "PLAINTEXT":
        return {}
    props = {SECURITY_PROPERTIES[option]: value
             for option, value in security_options(config).items()}
    props["security.protocol"] = protocol.lower()
    if uses_tls(config):
        hostname = "https" if config.ssl_check_hostname else "none"
        props[SECURITY_PROPERTIES["ssl_check_hostname"]] = hostname
    return props


def _validate(props: Mapping[str, Any]) -> str | None:
    """librdkafka's complaint about ``props``, or None. Builds (and at once drops) a producer.

    Only librdkafka knows its properties and their ranges. Without ``bootstrap.servers`` the
    producer makes no connection, so this is a few milliseconds of local work.
    """
    trial = {k: v for k, v in props.items() if k not in ("bootstrap.servers", "logger")}
    trial["logger"] = LibrdkafkaLog()
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
