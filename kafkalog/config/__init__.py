"""Options: one typed, validated, frozen place, built from dictConfig-style values.

:class:`PipelineConfig` holds the options of the delivery pipeline (transport, queue, worker,
spill store); :class:`HandlerConfig` adds the handler's own (key, record layout, confirmed
records). Every option can be given as a plain string or number (as it arrives from a config
file); names and units follow Kafka's producer settings (``linger_ms``, ``batch_size`` in
bytes). A bad name or value raises :class:`~kafkalog.errors.ConfigError` (a ``ValueError``)
naming the option, when the config is built rather than at the first log call.

Each slice module validates its own options and their relations: ``transport``, ``pipeline``,
``spill`` and ``formatting``; ``values`` holds the validators they share.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

from kafkalog.config import formatting, pipeline, spill, transport
from kafkalog.config.formatting import KeyFunc
from kafkalog.config.pipeline import OVERFLOW_POLICIES, OverflowPolicy
from kafkalog.config.spill import AUTO_SPILL_DIR, SPILL_FSYNC_POLICIES, SPILL_FULL_POLICIES
from kafkalog.config.transport import (
    BOOTSTRAP_ENV,
    COMPRESSION_TYPES,
    DEFAULT_BOOTSTRAP,
    PASSWORD_MECHANISMS,
    SASL_MECHANISMS,
    SASL_PASSWORD_ENV,
    SECURITY_PROTOCOLS,
    SECURITY_SETTING_OPTIONS,
    TRANSPORTS,
    Acks,
    Secret,
)
from kafkalog.config.values import topic, unknown_option, validate
from kafkalog.errors import ConfigError, InvariantError
from kafkalog.formatting.redaction import DEFAULT_REDACT_KEYS
from kafkalog.formatting.schema import SCHEMAS

__all__ = [
    "AUTO_SPILL_DIR",
    "BOOTSTRAP_ENV",
    "COMPRESSION_TYPES",
    "DEFAULT_BOOTSTRAP",
    "OVERFLOW_POLICIES",
    "PASSWORD_MECHANISMS",
    "SASL_MECHANISMS",
    "SASL_PASSWORD_ENV",
    "SCHEMAS",
    "SECURITY_PROTOCOLS",
    "SECURITY_SETTING_OPTIONS",
    "SPILL_FSYNC_POLICIES",
    "SPILL_FULL_POLICIES",
    "TRANSPORTS",
    "Acks",
    "HandlerConfig",
    "KeyFunc",
    "OverflowPolicy",
    "PipelineConfig",
    "Secret",
]

_Config = TypeVar("_Config", bound="PipelineConfig")

_HANDLER_ONLY = (
    "is a KafkaHandler (formatting) option, not a pipeline one: the pipeline takes records "
    "as ready-made bytes"
)


@dataclasses.dataclass(frozen=True)
class PipelineConfig:
    """All options of the delivery pipeline (transport, queue, worker, spill store), validated.

    Build it with :meth:`from_options` (which also takes the strings config files give) or
    directly; either way every value is checked and a bad one raises ``ConfigError`` naming
    the option. The pipeline takes records as ready-made bytes, so the handler's formatting
    options are refused here; :class:`HandlerConfig` adds them.
    """

    topic: str
    bootstrap_servers: tuple[str, ...] = (DEFAULT_BOOTSTRAP,)
    # Pins every record to one partition; None lets the partitioner choose.
    partition: int | None = None
    # Producer settings, Kafka names and units.
    acks: Acks = -1
    compression_type: str = "none"
    linger_ms: int = 5
    batch_size: int = 16384
    max_request_size: int = 1048576
    delivery_timeout_ms: int = 120000
    request_timeout_ms: int = 30000
    retry_backoff_ms: int = 100
    retry_backoff_max_ms: int = 1000
    client_id: str | None = None
    producer_config: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    transport: str = "kafka-python"
    # Connecting to a secured cluster (TLS, SASL); names as in Kafka's client settings.
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    ssl_cafile: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    # The in-memory queue between the producer's thread and the worker.
    queue_max_records: int = 100000
    queue_max_bytes: int = 64 * 1024 * 1024
    overflow_policy: OverflowPolicy = "spill"
    block_timeout_ms: int = 100
    # Shutdown.
    close_timeout_ms: int = 5000
    # The spill store: records Kafka can not take yet, on local disk. ``spill_dir=None``
    # disables it; the default is a per-application directory chosen with platformdirs.
    spill_dir: str | None = AUTO_SPILL_DIR
    app_name: str | None = None
    spill_fsync: str = "interval"
    spill_fsync_interval_ms: int = 500
    spill_max_bytes: int = 1024**3
    spill_segment_bytes: int = 16 * 1024**2
    spill_full_policy: str = "drop_oldest"
    spill_after_ms: int = 1000
    dead_letter_topic: str | None = None

    def __post_init__(self) -> None:
        # Built directly (PipelineConfig(topic=..., bootstrap_servers="a:9092")) or with
        # dataclasses.replace(), the values have not been through from_options: check and
        # normalise every field the same way, so that a string of servers or a negative
        # linger_ms fails here, naming the option, and not later on the worker's thread.
        # The validators are idempotent, so from_options' typed values pass unchanged.
        values = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        if values["topic"] in (None, ""):
            raise ConfigError("topic", "is required")
        for name, value in self._validate(values).items():
            if value is not values[name]:
                object.__setattr__(self, name, value)
        final = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        transport.check_relations(final, option_names=_OPTION_NAMES)
        pipeline.check_relations(final)

    def spill_path(self) -> Path | None:
        """The directory the spill store uses, or None if spilling is off."""
        return spill.spill_path(self.spill_dir, self.app_name, self.topic)

    @classmethod
    def given(
        cls: type[_Config], config: _Config | None, topic: str | None, options: dict[str, Any]
    ) -> _Config:
        """``config`` if given, else one built from ``topic`` and ``options`` (not both):
        what a constructor taking ``config=`` or individual options does with them."""
        if config is None:
            if topic is not None:
                options["topic"] = topic
            return cls.from_options(options)
        if topic is not None or options:
            raise ConfigError("config", "give either config= or individual options, not both")
        return config

    @classmethod
    def from_options(cls: type[_Config], options: Mapping[str, Any]) -> _Config:
        """Validate ``options`` (strings and numbers as found in config files) into a config."""
        known = {f.name for f in dataclasses.fields(cls)}
        for name in options:
            if name not in known:
                if name in formatting.OPTIONS:
                    raise ConfigError(name, _HANDLER_ONLY)
                raise unknown_option(name, known)
        if "topic" not in options or options["topic"] in (None, ""):
            raise ConfigError("topic", "is required")
        values = cls._validate(options)
        unvalidated = set(options) - set(values)
        if unvalidated:
            raise InvariantError(f"option(s) validated nowhere: {sorted(unvalidated)}")
        return cls(**values)  # __post_init__ checks the options against each other

    @classmethod
    def _validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        """The typed values of ``options``, each option checked on its own by its slice."""
        return {
            "topic": topic("topic", options["topic"]),
            **transport.validate_options(options),
            **validate(pipeline.OPTIONS, options),
            **validate(spill.OPTIONS, options),
        }


@dataclasses.dataclass(frozen=True)
class HandlerConfig(PipelineConfig):
    """All options of a :class:`~kafkalog.KafkaHandler`, validated.

    Build it with :meth:`from_options`; the handler does that for its keyword arguments.
    """

    # The record's key: a record attribute name or a callable.
    key: str | KeyFunc | None = None
    # Confirmed ("sync") records: those at this level or above wait for Kafka's acknowledgement.
    sync_level: int | None = None
    sync_timeout_ms: int = 5000
    # Record layout.
    schema: str = "default"
    static_fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    # Keys whose values are masked in extras, bound context and static fields; () turns it off.
    redact_keys: tuple[str, ...] = DEFAULT_REDACT_KEYS

    @classmethod
    def _validate(cls, options: Mapping[str, Any]) -> dict[str, Any]:
        return {**super()._validate(options), **validate(formatting.OPTIONS, options)}


# Every option name, the handler's included: producer_config may set none of them.
_OPTION_NAMES = frozenset(f.name for f in dataclasses.fields(HandlerConfig))
