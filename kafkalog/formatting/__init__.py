"""Formatting: a ``LogRecord`` to the JSON bytes of one Kafka message.

Schemas (``default``, ``ecs``), sanitising of odd values, redaction of secrets, truncation to
what Kafka accepts, and the fast path for plain records. Nothing here knows about Kafka or the
delivery pipeline.
"""

from kafkalog.formatting.formatter import ECS_VERSION, JsonFormatter, new_record_id

__all__ = ["ECS_VERSION", "JsonFormatter", "new_record_id"]
