"""The consumer side: reading topics (``kafkalog tail``) and probing a cluster
(``kafkalog check``). With the transports, the only code that imports a Kafka client; the
handler and the pipeline never import it."""

from collections.abc import Mapping
from typing import Any

from kafkalog.config import PipelineConfig
from kafkalog.transports.kafka_python import security_settings

__all__ = ["client_settings"]


def client_settings(config: PipelineConfig) -> Mapping[str, Any]:
    """The kafka-python settings (consumer or admin client) for ``config``'s security options:
    the same TLS and SASL settings the producer transport uses."""
    return security_settings(config)
