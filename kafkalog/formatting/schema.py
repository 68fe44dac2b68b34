"""The two record schemas, ``default`` and ``ecs``, as data: their names, the fields each one
writes, where static fields go, which fields truncation shrinks first, and the tables that tell
a plain ``LogRecord``'s own attributes from ``extra=`` fields.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Final

from kafkalog.formatting.sanitize import clean_str, safe_str, sanitize

__all__ = [
    "DEFAULT_CORE",
    "DEFAULT_TRUNCATE",
    "DIGITS3",
    "ECS_CORE",
    "ECS_TRUNCATE",
    "ECS_VERSION",
    "INIT_KEYS",
    "INIT_LAST_KEY",
    "INIT_LEN",
    "OTEL_TRACE",
    "SCHEMAS",
    "STD_ATTRS",
    "split_static_fields",
]

#: The names ``JsonFormatter(schema=...)`` accepts.
SCHEMAS: Final = ("default", "ecs")

#: ECS version advertised in ``ecs.version`` by the ``"ecs"`` schema.
ECS_VERSION: Final = "8.11.0"

# The top-level fields each schema may write itself: static fields may not use these names,
# and an extra with one of them is renamed.
DEFAULT_CORE: Final = frozenset(
    {
        "@timestamp",
        "level",
        "logger",
        "message",
        "module",
        "function",
        "line",
        "process",
        "thread_name",
        "host",
        "id",
        "exception",
        "stack",
        "truncated",
        "trace_id",
        "span_id",
    }
)
ECS_CORE: Final = frozenset(
    {"@timestamp", "message", "log", "process", "host", "event", "ecs", "error", "truncated",
     "trace", "span"}
)

# Fields shrunk (in this order) when a record exceeds max_bytes, before any
# extra is touched.  Paths into the record dict.
DEFAULT_TRUNCATE: Final = (
    ("message",),
    ("exception", "stacktrace"),
    ("stack",),
    ("exception", "message"),
)
ECS_TRUNCATE: Final = (
    ("message",),
    ("error", "stack_trace"),
    ("log", "origin", "stack_trace"),
    ("error", "message"),
)

# kafkalog never imports OpenTelemetry; a span (and so trace and span ids) can only be active
# if the application imported this module.
OTEL_TRACE: Final = "opentelemetry.trace"

# "000" .. "999": the microseconds of a timestamp are written as two of these, which is
# cheaper than a format spec ("{us:06d}") on every record.
DIGITS3: Final = tuple(f"{i:03d}" for i in range(1000))

# Attributes every LogRecord has, plus those the stdlib adds later ("message"
# and "asctime" are set by Formatter.format, "taskName" exists on 3.12+), plus
# our own pre-assigned id.  Anything else in record.__dict__ came from extra=.
# Computed once: extras detection is then a single C-level issuperset() call.
STD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "kafkalog_id",
}
# A record straight from LogRecord.__init__ has exactly these many keys, the last one being
# INIT_LAST_KEY; extras (added by makeRecord) and ``message``/``asctime`` (added by a
# Formatter) come after it. So "same length and same last key" means no extras, unless a
# standard attribute was deleted and then set again: a cheaper test than issuperset(), tried
# first, with issuperset() deciding whenever it does not hold.
INIT_KEYS: Final = tuple(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
INIT_LEN: Final = len(INIT_KEYS)
INIT_LAST_KEY: Final = INIT_KEYS[-1]


def split_static_fields(
    static_fields: Mapping[str, Any] | None, ecs: bool
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """``static_fields`` made JSON-safe and placed for the schema: (top-level fields, the ECS
    ``service`` object or None).

    With ``ecs``, ``"service"`` becomes ``service.name`` (or, if it is a mapping, the whole
    ``service`` object) and ``"env"``/``"environment"`` become ``service.environment``. A key
    that names a core field, or both ``env`` and ``environment``, raise :class:`ValueError`;
    a non-mapping or a non-string key raises :class:`TypeError`.
    """
    if static_fields is None:
        return {}, None
    if not isinstance(static_fields, Mapping):
        raise TypeError("static_fields must be a mapping of str to JSON-able values")
    core = ECS_CORE if ecs else DEFAULT_CORE
    static: dict[str, Any] = {}
    service: dict[str, Any] | None = None
    env_seen = False
    for key, value in static_fields.items():
        if not isinstance(key, str):
            raise TypeError(f"static_fields keys must be str, got {key!r}")
        clean = sanitize(value, 1, set())
        if ecs and key == "service":
            service = service or {}
            if isinstance(clean, dict):
                service.update(clean)
            else:
                service["name"] = clean if isinstance(clean, str) else safe_str(clean)
            continue
        if ecs and key in ("env", "environment"):
            if env_seen:
                raise ValueError("static_fields has both 'env' and 'environment'")
            env_seen = True
            service = service or {}
            service["environment"] = clean
            continue
        if key in core:
            raise ValueError(f"static_fields key {key!r} collides with a core field")
        static[clean_str(key)] = clean
    return static, service
