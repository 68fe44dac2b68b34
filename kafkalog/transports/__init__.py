"""The transports: the only producers of network traffic to Kafka.

:func:`build_transport` gives the one the ``transport`` option names: kafka-python (the
default, :mod:`kafkalog.transports.kafka_python`) or librdkafka
(:mod:`kafkalog.transports.confluent`, imported only when chosen: confluent-kafka is an
optional extra). Each is imported only when it is chosen or checked, so a process that
uses one never loads the other's client library.
"""

from __future__ import annotations

from collections.abc import Callable

from kafkalog.config import PipelineConfig
from kafkalog.errors import ConfigError
from kafkalog.transports.base import OutRecord, Transport

__all__ = ["OutRecord", "Transport", "build_transport", "check_transport_config"]


def check_transport_config(config: PipelineConfig) -> None:
    """Check, at construction, what the transport ``config.transport`` names needs.

    Raises :class:`~kafkalog.errors.ConfigError` naming the option at fault.
    """
    if config.transport == "confluent":
        # Imported only when chosen: confluent-kafka is an optional extra.
        from kafkalog.transports.confluent_config import (  # noqa: PLC0415
            check_producer_config as check_confluent,
        )

        check_confluent(config)  # librdkafka has every codec built in
        return
    from kafkalog.transports.kafka_python import (  # noqa: PLC0415
        check_compression_available,
        check_producer_config,
    )

    missing = check_compression_available(config.compression_type)
    if missing:
        raise ConfigError(
            "compression_type",
            f"{config.compression_type!r} needs the {missing!r} package "
            f"(pip install 'kafkalog[{config.compression_type}]')",
        )
    check_producer_config(config)


def build_transport(
    config: PipelineConfig, on_new_client: Callable[[], None] | None = None
) -> Transport:
    """The :class:`Transport` that ``config.transport`` names (kafka-python by default)."""
    if config.transport == "confluent":
        from kafkalog.transports.confluent import ConfluentTransport  # noqa: PLC0415

        return ConfluentTransport(config, on_new_client=on_new_client)
    from kafkalog.transports.kafka_python import KafkaPythonTransport  # noqa: PLC0415

    return KafkaPythonTransport(config, on_new_client=on_new_client)
