"""kafkalog: ship Python log records to Apache Kafka as JSON, without slowing the application.

Add :class:`KafkaHandler` to your logging configuration::

    "handlers": {"kafka": {"class": "kafkalog.KafkaHandler", "topic": "app-logs",
                           "bootstrap_servers": "k1:9092,k2:9092", "key": "uid"}}
"""

from kafkalog import context
from kafkalog.config import HandlerConfig, PipelineConfig
from kafkalog.errors import ConfigError, KafkalogError, SpillError, TransportError
from kafkalog.formatting.formatter import JsonFormatter
from kafkalog.handler import KafkaHandler

__version__ = "0.1.0"

__all__ = [
    "ConfigError",
    "HandlerConfig",
    "JsonFormatter",
    "KafkaHandler",
    "KafkalogError",
    "PipelineConfig",
    "SpillError",
    "TransportError",
    "__version__",
    "context",
]
