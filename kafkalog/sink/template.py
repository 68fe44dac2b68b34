"""The index template the sink installs: mappings for kafkalog's two record schemas.

``@timestamp`` is a date, levels, loggers, hosts and ids are keywords, messages and stack
traces are text, line numbers and process ids are numbers. Fields the schema does not know
(``extra=`` fields) are mapped by the store's dynamic mapping. The template covers the indices
the ``--index`` pattern makes and the fallback index.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["index_template"]

_KEYWORD: dict[str, Any] = {"type": "keyword", "ignore_above": 1024}
_TEXT: dict[str, Any] = {"type": "text"}
_LONG: dict[str, Any] = {"type": "long"}

# The sink's own field on a record that was not a JSON object (both schemas).
_ERROR = {"properties": {"type": _KEYWORD, "message": _TEXT, "stack_trace": _TEXT}}

_DEFAULT: dict[str, Any] = {
    "@timestamp": {"type": "date"},
    "level": _KEYWORD,
    "logger": _KEYWORD,
    "message": _TEXT,
    "module": _KEYWORD,
    "function": _KEYWORD,
    "line": _LONG,
    "process": _LONG,
    "thread_name": _KEYWORD,
    "host": _KEYWORD,
    "id": _KEYWORD,
    "exception": {"properties": {"type": _KEYWORD, "message": _TEXT, "stacktrace": _TEXT}},
    "stack": _TEXT,
    "truncated": {"type": "boolean"},
    "trace_id": _KEYWORD,
    "span_id": _KEYWORD,
    "error": _ERROR,
}

_ECS: dict[str, Any] = {
    "@timestamp": {"type": "date"},
    "message": _TEXT,
    "log": {"properties": {
        "level": _KEYWORD, "logger": _KEYWORD,
        "origin": {"properties": {"file": {"properties": {"name": _KEYWORD, "line": _LONG}},
                                  "function": _KEYWORD}},
    }},
    "process": {"properties": {"pid": _LONG, "thread": {"properties": {"name": _KEYWORD}}}},
    "host": {"properties": {"hostname": _KEYWORD}},
    "event": {"properties": {"id": _KEYWORD}},
    "ecs": {"properties": {"version": _KEYWORD}},
    "error": _ERROR,
    "truncated": {"type": "boolean"},
    "trace": {"properties": {"id": _KEYWORD}},
    "span": {"properties": {"id": _KEYWORD}},
}  # fmt: skip

_MAPPINGS = {"default": _DEFAULT, "ecs": _ECS}


def index_template(patterns: Sequence[str], schema: str,
                   settings: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The body of a composable index template for ``patterns`` and record ``schema``, with
    index ``settings`` (``number_of_replicas``, ``refresh_interval``...) if given."""
    template: dict[str, Any] = {"mappings": {"properties": _MAPPINGS[schema]}}
    if settings:
        template["settings"] = dict(settings)
    return {
        "index_patterns": list(patterns),
        # Above the store's built-in templates, below a user's own (100 and up is theirs).
        "priority": 50,
        "template": template,
        "_meta": {"managed_by": "kafkalog sink", "schema": schema},
    }
