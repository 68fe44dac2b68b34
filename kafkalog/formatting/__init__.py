"""Formatting: a ``LogRecord`` to the JSON bytes of one Kafka message.

Schemas (``default``, ``ecs``), sanitising of odd values, redaction of secrets, truncation to
what Kafka accepts, and the fast path for plain records. Nothing here knows about Kafka or the
delivery pipeline.

Modules, in the order a record meets them: :mod:`~kafkalog.formatting.formatter` (the
:class:`JsonFormatter`), :mod:`~kafkalog.formatting.plain` (the fast path),
:mod:`~kafkalog.formatting.build` (the schema's dict), :mod:`~kafkalog.formatting.extras`,
:mod:`~kafkalog.formatting.redaction`, :mod:`~kafkalog.formatting.sanitize`,
:mod:`~kafkalog.formatting.truncate`, :mod:`~kafkalog.formatting.fallback`; with the data
they share in :mod:`~kafkalog.formatting.schema` and :mod:`~kafkalog.formatting.ids`.
"""

from kafkalog.formatting.formatter import JsonFormatter
from kafkalog.formatting.ids import new_record_id
from kafkalog.formatting.schema import ECS_VERSION, SCHEMAS

__all__ = ["ECS_VERSION", "SCHEMAS", "JsonFormatter", "new_record_id"]
