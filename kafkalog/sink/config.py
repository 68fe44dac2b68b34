"""The sink's configuration: what it reads, where it writes, its bounds, validated.

From the command line or a TOML file (``kafkalog sink --config sink.toml``), one flat table
with the option names below, plus a ``[consumer]`` table of kafka-python's own consumer
settings. The Kafka security options take the handler's names (``security_protocol``,
``sasl_*``, ``ssl_*``) and are validated by :class:`~kafkalog.config.PipelineConfig`, so one
secured cluster is configured the same way on both sides. The store's secrets are never
options: they come from an environment variable or a file (:mod:`kafkalog.sink.secrets`).
A bad value raises :class:`~kafkalog.errors.ConfigError` naming the option, at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kafkalog.config import (
    DEFAULT_BOOTSTRAP,
    SCHEMAS,
    SECURITY_SETTING_OPTIONS,
    PipelineConfig,
)
from kafkalog.config.files import read_toml
from kafkalog.config.values import (
    at_least,
    boolean,
    mapping,
    one_of,
    optional,
    string,
    topic,
    unknown_option,
)
from kafkalog.errors import ConfigError
from kafkalog.sink.routing import IndexPattern

__all__ = ["FILE_PREFIX", "SinkConfig", "load_toml", "sink_config"]

#: ``to = "file:DIR"`` writes newline-delimited JSON files into DIR.
FILE_PREFIX = "file:"
STARTS = ("earliest", "latest")
ON_INVALID = ("index", "dead-letter")
COMPRESSIONS = ("gzip", "none")
# The kafka-python settings the sink sets itself: a user's value would break its guarantee.
_MANAGED_CONSUMER = frozenset({"group_id", "enable_auto_commit", "auto_offset_reset",
                               "bootstrap_servers", "key_deserializer", "value_deserializer"})


@dataclasses.dataclass(frozen=True)
class SinkConfig:
    """Everything ``kafkalog sink`` runs with, validated. Units are in the names."""

    topics: tuple[str, ...]
    group: str
    output: str  # "opensearch" or "file"
    bootstrap_servers: tuple[str, ...] = (DEFAULT_BOOTSTRAP,)
    start: str = "earliest"
    # The file output.
    file_dir: Path | None = None
    file_max_bytes: int = 128 * 1024 * 1024
    file_max_age_ms: int = 3_600_000
    file_compression: str = "gzip"
    # The OpenSearch output.
    hosts: tuple[str, ...] = ("http://127.0.0.1:9200",)
    index: str = "logs-kafkalog-%Y.%m.%d"
    fallback_index: str = "logs-kafkalog-unrouted"
    template: bool = True
    template_name: str = "kafkalog"
    schema: str = "default"  # the records' schema, for the template's mappings
    template_settings: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    ca_certs: str | None = None
    username: str | None = None
    password_file: str | None = None
    api_key_file: str | None = None
    request_timeout_ms: int = 30_000
    # Records that are not JSON objects, and documents the store refuses for good.
    on_invalid: str = "index"
    dead_letter_topic: str | None = None
    # Bounds of the work in flight.
    bulk_max_records: int = 2000
    bulk_max_bytes: int = 5 * 1024 * 1024
    bulk_workers: int = 2
    max_in_flight_records: int = 20_000
    commit_interval_ms: int = 1000
    retry_backoff_ms: int = 200
    retry_backoff_max_ms: int = 30_000
    shutdown_timeout_ms: int = 10_000
    consumer: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    security: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    source: str = "command line"

    @property
    def dead_letters(self) -> str:
        """The dead-letter topic: ``dead_letter_topic``, else ``<group>.dead-letters``."""
        return self.dead_letter_topic or f"{self.group}.dead-letters"

    def kafka_config(self) -> PipelineConfig:
        """The Kafka side's options (servers, security) as the handler takes them; also the
        config of the pipeline that writes dead letters."""
        return PipelineConfig.from_options({
            "topic": self.dead_letters, "bootstrap_servers": list(self.bootstrap_servers),
            # A full queue makes a bulk worker wait for room: nothing is dropped.
            "overflow_policy": "block", "block_timeout_ms": 5000,
            **self.security,
        })  # fmt: skip

    def index_pattern(self) -> IndexPattern:
        """The parsed ``index`` pattern with its fallback."""
        return IndexPattern(self.index, self.fallback_index)


def _output(name: str, value: Any) -> tuple[str, Path | None]:
    text = string(name, value)
    if text == "opensearch":
        return "opensearch", None
    if text.startswith(FILE_PREFIX) and len(text) > len(FILE_PREFIX):
        return "file", Path(text[len(FILE_PREFIX):]).expanduser()
    raise ConfigError(name, f"must be 'opensearch' or 'file:DIR', got {value!r}")


def _strings(check: Any) -> Any:
    def check_list(name: str, value: Any) -> tuple[str, ...]:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, Sequence) or not items:
            raise ConfigError(name, f"must be a non-empty list, got {value!r}")
        out: list[str] = []
        for item in items:
            parts = string(name, item).split(",")
            out.extend(check(name, part.strip()) for part in parts if part.strip())
        return tuple(out)

    return check_list


def _host(name: str, value: Any) -> str:
    text = string(name, value)
    if not text.startswith(("http://", "https://")):
        raise ConfigError(name, f"must be an http:// or https:// URL, got {text!r}")
    return text


def _consumer(name: str, value: Any) -> Mapping[str, Any]:
    settings = mapping(name, value)
    managed = sorted(_MANAGED_CONSUMER.intersection(settings))
    if managed:
        raise ConfigError(f"{name}.{managed[0]}", "is set by the sink itself")
    return settings


_CHECKS: dict[str, Any] = {
    "topics": _strings(topic),
    "group": string,
    "bootstrap_servers": _strings(string),
    "start": one_of(STARTS),
    "file_max_bytes": at_least(1024),
    "file_max_age_ms": at_least(1000),
    "file_compression": one_of(COMPRESSIONS),
    "hosts": _strings(_host),
    "index": string,
    "fallback_index": string,
    "template": boolean,
    "template_name": string,
    "schema": one_of(SCHEMAS),
    "template_settings": mapping,
    "ca_certs": optional(string),
    "username": optional(string),
    "password_file": optional(string),
    "api_key_file": optional(string),
    "request_timeout_ms": at_least(100),
    "on_invalid": one_of(ON_INVALID),
    "dead_letter_topic": optional(topic),
    "bulk_max_records": at_least(1),
    "bulk_max_bytes": at_least(1024),
    "bulk_workers": at_least(1),
    "max_in_flight_records": at_least(1),
    "commit_interval_ms": at_least(10),
    "retry_backoff_ms": at_least(1),
    "retry_backoff_max_ms": at_least(1),
    "shutdown_timeout_ms": at_least(0),
    "consumer": _consumer,
}
# The handler's security options, under its names; its SASL password only from the environment
# ($KAFKALOG_SASL_PASSWORD), never from a file of options or the command line.
_SECURITY = frozenset(SECURITY_SETTING_OPTIONS.values()) - {"sasl_password"}
_NAMES = frozenset(_CHECKS) | {"to"} | _SECURITY


def sink_config(options: Mapping[str, Any], *, source: str = "command line") -> SinkConfig:
    """Validate ``options`` (the TOML table's or the command line's) into a SinkConfig."""
    values: dict[str, Any] = {"source": source}
    security: dict[str, Any] = {}
    for name, value in options.items():
        if name == "to":
            values["output"], values["file_dir"] = _output(name, value)
        elif name in _SECURITY:
            security[name] = value
        elif name in _CHECKS:
            values[name] = _CHECKS[name](name, value)
        else:
            raise unknown_option(name, _NAMES)
    for required in ("topics", "group", "output"):
        if required not in values:
            raise ConfigError("to" if required == "output" else required, "is required")
    values["security"] = security
    config = SinkConfig(**values)
    if config.retry_backoff_max_ms < config.retry_backoff_ms:
        raise ConfigError("retry_backoff_max_ms", "must be at least retry_backoff_ms")
    if config.max_in_flight_records < config.bulk_max_records:
        raise ConfigError("max_in_flight_records", "must be at least bulk_max_records")
    if config.output == "opensearch":
        config.index_pattern()  # a bad pattern fails now, not at the first record
    config.kafka_config()  # the security options, checked now rather than at first use
    return config


def load_toml(path: Path, overrides: Mapping[str, Any] | None = None) -> SinkConfig:
    """A :class:`SinkConfig` from a TOML file; ``overrides`` (from flags) win over the file."""
    data = read_toml(path)
    return sink_config({**data, **(overrides or {})}, source=str(path))
