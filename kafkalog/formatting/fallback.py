"""What gets written when a record cannot be written as it is: the message with a note saying
what failed, and the minimal record (timestamp, level, logger, id, message) cut to ``max_bytes``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final

import orjson

from kafkalog.formatting.ids import new_record_id
from kafkalog.formatting.sanitize import plain_str, safe_repr, safe_str, type_name
from kafkalog.formatting.schema import ECS_VERSION
from kafkalog.formatting.truncate import shrink_text

__all__ = ["failure_note", "message_fallback", "minimal_dict", "minimal_record"]

# Last resort if even the minimal record cannot be built: a constant, so it
# cannot fail.
_LAST_RESORT: Final = b'{"message":"[kafkalog: log record could not be serialised]"}'

_dumps = orjson.dumps


def message_fallback(record: logging.LogRecord, exc: Exception) -> str:
    """The message of a record whose ``getMessage()`` raised ``exc``."""
    # Typical cause: logger.info("%d", "x").  Keep the template and the
    # args so the bug is visible and the record still ships.
    return (
        f"{safe_str(record.msg)} [kafkalog: message formatting failed "
        f"({type_name(exc)}: {safe_str(exc)}); args={safe_repr(record.args)[:1000]}]"
    )


def failure_note(record: object, exc: BaseException) -> str:
    """The message of the minimal record written because serialising ``record`` raised
    ``exc``: the reason, then the record's message."""
    try:
        msg = plain_str(record.getMessage())  # type: ignore[attr-defined]
    except Exception:
        msg = plain_str(getattr(record, "msg", ""))
    return (
        f"[kafkalog: log record could not be serialised: "
        f"{type_name(exc)}: {safe_str(exc)[:500]}] {msg}"
    )


def minimal_dict(
    record: object,
    rid: str | None,
    message: Any,
    stamp: Callable[[object], str],
    ecs: bool,
) -> dict[str, Any]:
    """The fewest fields that still say when, where and what: ``stamp(record)`` gives the
    timestamp; the id is ``rid``, else the record's pre-assigned one, else a new one."""
    if rid is None:
        candidate = getattr(record, "kafkalog_id", None)
        rid = candidate if isinstance(candidate, str) else new_record_id()
    level = plain_str(getattr(record, "levelname", None))
    logger = plain_str(getattr(record, "name", None))
    ts = stamp(record)
    if ecs:
        return {
            "@timestamp": ts,
            "message": message,
            "log": {"level": level.lower(), "logger": logger},
            "event": {"id": rid},
            "ecs": {"version": ECS_VERSION},
        }
    return {"@timestamp": ts, "level": level, "logger": logger, "id": rid, "message": message}


def minimal_record(
    record: object,
    rid: str | None,
    message: object,
    *,
    stamp: Callable[[object], str],
    ecs: bool,
    limit: int | None,
    truncated: bool = False,
) -> bytes:
    """:func:`minimal_dict` encoded; within ``limit`` bytes by cutting the message. Never
    raises."""
    try:
        text = plain_str(message)
        m = minimal_dict(record, rid, text, stamp, ecs)
        if truncated:
            m["truncated"] = True
        out = _dumps(m)
        if limit is not None and len(out) > limit:
            if not truncated:
                m["truncated"] = True
                out = _dumps(m)
            over = len(out) - limit
            old_len = len(_dumps(text))
            new, new_len = shrink_text(text, old_len, over)
            if new_len < old_len:
                m["message"] = new
                out = _dumps(m)
        return out
    except Exception:
        return _LAST_RESORT
