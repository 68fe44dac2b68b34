"""Step-by-step connectivity checks of a cluster, for ``kafkalog check``."""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import kafka
import kafka.errors
from kafka.admin import ConfigResource, ConfigResourceType

from kafkalog.client.reader import consumer_request_timeout_ms
from kafkalog.errors import KafkalogError
from kafkalog.transports.kafka_python import classify


class ProbeError(KafkalogError):
    """A step of :class:`ClusterProbe` failed; ``kind`` says which way (see PROBE_KINDS)."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


#: What a probe can find wrong, in the order the check runs.
PROBE_KINDS = (
    "dns",  # a bootstrap host name does not resolve
    "refused",  # nothing listens on the port
    "unreachable",  # no answer in time, or another socket error
    "tls",  # the TLS handshake failed
    "sasl",  # the SASL handshake or authentication failed
    "kafka",  # connected, but no Kafka answered as expected
    "topic_missing",  # the topic does not exist (for check: nor could it learn whether the
    #                  broker would create it)
    "auto_create_disabled",  # the topic does not exist and the broker will not create it
    "topic_unhealthy",  # a partition has no leader, or access to the topic is denied
    "round_trip",  # the test record was not written, or not read back
    "topic_auto_create",  # a warning: the topic does not exist yet; the first write creates it
)

#: The kinds that are warnings: logging will work, but maybe not as the user expects.
WARNING_KINDS = frozenset({"topic_auto_create"})

_AUTO_CREATE = "auto.create.topics.enable"
_PARTITIONS = "num.partitions"
_REPLICATION = "default.replication.factor"

_SASL_ERRORS: tuple[type[BaseException], ...] = (
    kafka.errors.SaslAuthenticationFailedError,
    kafka.errors.UnsupportedSaslMechanismError,
    kafka.errors.IllegalSaslStateError,
)


def _causes(exc: BaseException) -> list[BaseException]:
    """``exc`` and the exceptions it was raised from or during, bounded."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain and len(chain) < 16:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def connection_problem(exc: BaseException) -> str:
    """The PROBE_KINDS entry for an exception met while connecting, by type only."""
    chain = _causes(exc)
    checks: tuple[tuple[str, type[BaseException] | tuple[type[BaseException], ...]], ...] = (
        ("dns", socket.gaierror),
        ("tls", ssl.SSLError),
        ("sasl", _SASL_ERRORS),
        ("refused", ConnectionRefusedError),
        ("unreachable", (TimeoutError, OSError)),
    )
    for kind, types in checks:
        if any(isinstance(e, types) for e in chain):
            return kind
    return "kafka"


def split_server(server: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``, or ``host`` alone: port 9092) -> (host, port)."""
    host, sep, port = server.rpartition(":")
    if not sep or "]" in port:
        host, port = server, "9092"
    host = host.strip("[]")
    try:
        number = int(port)
    except ValueError:
        raise ProbeError("dns", f"bad port in bootstrap server {server!r}") from None
    return host, number


class _CaughtErrors(logging.Handler):
    """Keeps the exceptions kafka-python only logs while bootstrapping (it then raises a bare
    timeout), so that the probe can tell a TLS or SASL failure from a slow network."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.errors: list[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        args = record.args if isinstance(record.args, tuple) else ()
        self.errors.extend(a for a in args if isinstance(a, BaseException))
        if record.exc_info and record.exc_info[1] is not None:
            self.errors.append(record.exc_info[1])


@contextlib.contextmanager
def _kafka_log_errors() -> Iterator[_CaughtErrors]:
    """Catch what kafka-python logs meanwhile, even if its loggers were disabled (a
    ``dictConfig`` with ``disable_existing_loggers`` does that) or set to a high level."""
    catcher = _CaughtErrors()
    source = logging.getLogger("kafka")
    loggers = [source] + [
        found
        for name, found in list(logging.root.manager.loggerDict.items())
        if name.startswith("kafka.") and isinstance(found, logging.Logger)
    ]
    saved = [(each, each.disabled, each.level) for each in loggers]
    for each in loggers:
        each.disabled = False
        if each.level > logging.WARNING:
            each.setLevel(logging.WARNING)
    if source.getEffectiveLevel() > logging.WARNING:
        source.setLevel(logging.WARNING)
    source.addHandler(catcher)
    try:
        yield catcher
    finally:
        source.removeHandler(catcher)
        for each, disabled, level in saved:
            each.disabled = disabled
            each.setLevel(level)


@dataclass(frozen=True)
class TopicInfo:
    """What the cluster says about a topic."""

    partitions: int
    leaderless: tuple[int, ...]


class ClusterProbe:
    """Step-by-step connectivity checks for ``kafkalog check``; each step raises ProbeError."""

    def __init__(
        self,
        bootstrap_servers: Sequence[str],
        *,
        client_config: Mapping[str, Any] | None = None,
        timeout_s: float = 10.0,
    ) -> None:
        self.servers = list(bootstrap_servers)
        self._config = dict(client_config or {})
        self._timeout_s = timeout_s
        self._admin: Any = None

    def resolve(self) -> dict[str, list[str]]:
        """Resolve every bootstrap host; raise ``dns`` only if none resolves."""
        found: dict[str, list[str]] = {}
        failures: list[str] = []
        for server in self.servers:
            host, port = split_server(server)
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except socket.gaierror as exc:
                failures.append(f"{host}: {exc.strerror or exc}")
                continue
            found[server] = sorted({str(info[4][0]) for info in infos})
        if not found:
            raise ProbeError("dns", "cannot resolve " + "; ".join(failures))
        return found

    def reach(self) -> list[str]:
        """Open a TCP connection to each bootstrap server; raise if none accepts."""
        reached: list[str] = []
        problems: list[tuple[str, str]] = []
        for server in self.servers:
            host, port = split_server(server)
            try:
                with socket.create_connection((host, port), timeout=self._timeout_s):
                    reached.append(server)
            except OSError as exc:
                problems.append((connection_problem(exc), f"{server}: {exc}"))
        if not reached:
            kind = problems[0][0] if problems else "unreachable"
            raise ProbeError(kind, "; ".join(text for _, text in problems))
        return reached

    def connect(self) -> dict[str, Any]:
        """Bootstrap a Kafka admin client (TLS and SASL included); return the cluster info."""
        timeout_ms = int(self._timeout_s * 1000)
        with _kafka_log_errors() as catcher:
            return self._connect(catcher, timeout_ms)

    def _connect(self, catcher: _CaughtErrors, timeout_ms: int) -> dict[str, Any]:
        try:
            self._admin = kafka.KafkaAdminClient(
                bootstrap_servers=self.servers,
                request_timeout_ms=timeout_ms,
                bootstrap_timeout_ms=timeout_ms,
                **self._config,
            )
            info: dict[str, Any] = self._admin.describe_cluster()
        except Exception as exc:
            seen = [*catcher.errors, exc]
            kinds = [connection_problem(e) for e in seen]
            # The most telling cause wins: a TLS or SASL failure explains the timeout after it.
            kind = next((k for k in ("tls", "sasl", "refused", "dns") if k in kinds), "kafka")
            if kind == "kafka" and self._config.get("sasl_mechanism") and any(
                isinstance(e, kafka.errors.KafkaConnectionError) for e in seen
            ):
                # A broker refusing a SASL login closes the connection, and kafka-python
                # often sees the close before the refusal: with a login configured, a
                # dropped connection during bootstrap is reported as the login failing.
                kind = "sasl"
            detail = next((e for e, k in zip(seen, kinds, strict=True) if k == kind), exc)
            raise ProbeError(kind, f"{type(detail).__name__}: {detail}") from exc
        return info

    def topic(self, name: str) -> TopicInfo:
        """Partitions of ``name``; raise ``topic_auto_create`` (a warning),
        ``auto_create_disabled`` or ``topic_missing`` if it does not exist, ``topic_unhealthy``
        if the cluster will not describe it."""
        assert self._admin is not None, "connect() first"
        described = self._admin.describe_topics([name])
        entry: dict[str, Any] = described[0] if described else {"error_code": 3}
        error = kafka.errors.for_code(int(entry.get("error_code", 0)))
        if issubclass(error, kafka.errors.UnknownTopicOrPartitionError):
            raise self._missing(name)
        if error is not kafka.errors.NoError:
            raise ProbeError("topic_unhealthy", f"topic {name!r}: {error.__name__}")
        partitions = entry.get("partitions") or []
        leaderless = tuple(
            sorted(int(p["partition_index"]) for p in partitions if int(p["leader_id"]) < 0)
        )
        return TopicInfo(len(partitions), leaderless)

    def _missing(self, name: str) -> ProbeError:
        """What a missing topic means, by whether (and how) the brokers create topics."""
        settings = self.broker_settings((_AUTO_CREATE, _PARTITIONS, _REPLICATION))
        auto_create = settings.get(_AUTO_CREATE)
        if auto_create is None:
            return ProbeError(
                "topic_missing",
                f"topic {name!r} does not exist (and the broker did not say whether it "
                f"creates topics on first use: {_AUTO_CREATE} unreadable)",
            )
        if auto_create.lower() != "true":
            return ProbeError(
                "auto_create_disabled",
                f"topic {name!r} does not exist and the broker does not create topics "
                f"({_AUTO_CREATE}=false): create it first",
            )
        shape = " with its default partitions and replication"
        if _PARTITIONS in settings and _REPLICATION in settings:
            shape = (f", with its defaults: {settings[_PARTITIONS]} partition(s), replication "
                     f"factor {settings[_REPLICATION]}")
        return ProbeError(
            "topic_auto_create",
            f"topic {name!r} does not exist yet; the broker will create it on the first "
            f"write{shape}",
        )

    def broker_settings(self, keys: Sequence[str]) -> dict[str, str]:
        """The values of ``keys`` in the first broker's configuration; those it did not give
        (or all of them, if it could not be asked) are left out."""
        assert self._admin is not None
        try:
            cluster = self._admin.describe_cluster()
            node = str(cluster["brokers"][0]["broker_id"])
            configs = self._admin.describe_configs(
                [ConfigResource(ConfigResourceType.BROKER, node,
                                configs=dict.fromkeys(keys))],
                config_filter="all",
            )
            found = configs["broker"][node]
            return {key: str(found[key]["value"]) for key in keys
                    if key in found and found[key].get("value") is not None}
        except (kafka.errors.KafkaError, KeyError, IndexError, TypeError, AttributeError):
            return {}

    def round_trip(self, topic: str, value: bytes) -> tuple[int, int, float]:
        """Write ``value`` (acks=all) and read it back; (partition, offset, seconds)."""
        started = time.monotonic()
        timeout_ms = int(self._timeout_s * 1000)
        try:
            producer = kafka.KafkaProducer(
                bootstrap_servers=self.servers,
                acks="all",
                request_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
                **self._config,
            )
            try:
                meta = producer.send(topic, value=value).get(timeout=self._timeout_s)
            finally:
                producer.close(timeout=1)
        except Exception as exc:
            raise ProbeError("round_trip", f"writing a test record failed: {classify(exc)}") \
                from exc
        try:
            consumer = kafka.KafkaConsumer(
                bootstrap_servers=self.servers,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=consumer_request_timeout_ms(timeout_ms),
                **self._config,
            )
            try:
                tp = kafka.TopicPartition(topic, meta.partition)
                consumer.assign([tp])
                consumer.seek(tp, meta.offset)
                deadline = time.monotonic() + self._timeout_s
                while time.monotonic() < deadline:
                    for records in consumer.poll(timeout_ms=200).values():
                        if any(r.offset == meta.offset and r.value == value for r in records):
                            return meta.partition, meta.offset, time.monotonic() - started
            finally:
                consumer.close()
        except Exception as exc:
            raise ProbeError("round_trip", f"reading the test record back failed: "
                                           f"{classify(exc)}") from exc
        raise ProbeError(
            "round_trip",
            f"wrote a test record to partition {meta.partition} at offset {meta.offset} but "
            f"did not read it back within {self._timeout_s:g}s",
        )

    def close(self) -> None:
        """Close the admin client."""
        admin, self._admin = self._admin, None
        if admin is not None:
            with contextlib.suppress(Exception):
                admin.close()
