"""The line formats the file agent reads (``--format``): each one's parser, found by name, and
the ECS names of the fields they emit.

A parser takes the decoded text of one event and returns a :class:`Parsed`; it never raises
on bad input: a line that is not in its format is kept whole as the message, with ``error``
set. The formats themselves live in ``formats_web`` (nginx, Apache) and ``formats_syslog``;
``raw`` and ``json`` are here.
"""

from __future__ import annotations

import datetime
import time
import types
from collections.abc import Callable, Mapping
from typing import Any, Final

import orjson

from kafkalog.ship.formats_common import Parsed, Parser, json_epoch
from kafkalog.ship.formats_syslog import SYSLOG_ECS_FIELDS, syslog_parser
from kafkalog.ship.formats_web import WEB_ECS_FIELDS, web_parser

__all__ = ["ECS_FIELDS", "FORMATS", "MESSAGE_KEYS", "TIME_KEYS", "Parsed", "Parser",
           "parse_json", "parse_raw", "parser_for", "to_ecs"]

#: The names ``--format`` accepts.
FORMATS: Final[tuple[str, ...]] = ("raw", "json", "nginx", "apache", "syslog")

#: Every field a parser of a fixed format (nginx, apache, syslog) emits -> its dotted ECS
#: name. The ``json`` format's fields are the object's own keys and are never renamed.
ECS_FIELDS: Final[Mapping[str, str]] = types.MappingProxyType(
    {**WEB_ECS_FIELDS, **SYSLOG_ECS_FIELDS}
)

_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError


def parse_raw(line: str) -> Parsed:
    """``raw``: the line is the message."""
    return Parsed(line, None, {})


#: Where a JSON line's message is, in order: ``message`` (ECS, Logstash,
#: python-json-logger), ``msg`` (Go's log/slog, zap, logrus, pino, bunyan), ``event``
#: (structlog).
MESSAGE_KEYS: Final[tuple[str, ...]] = ("message", "msg", "event")


def _message_of(obj: dict[str, Any]) -> str:
    """The message of a JSON object without a ``message`` key, taken out of it: ``msg`` if it
    is a string, else ``event`` if it is a string, else ``""`` (a key that is not a string
    stays a field)."""
    for name in MESSAGE_KEYS[1:]:
        if type(obj.get(name)) is str:
            message: str = obj.pop(name)
            return message
    return ""


#: Where a JSON line's time is when it has no ``@timestamp``, in order: ``timestamp``
#: (structlog, python-json-logger), ``time`` (log/slog, logrus, pino, bunyan), ``ts`` (zap).
TIME_KEYS: Final[tuple[str, ...]] = ("timestamp", "time", "ts")

# 2000-01-01 in epoch seconds. Under the names above, a smaller number is something else (a
# duration such as nginx's request time), not a time.
_EARLIEST_TIME = 946_684_800.0


def _time_of(obj: dict[str, Any]) -> float | None:
    """The time of a JSON object without ``@timestamp``, taken out of it: the first of
    :data:`TIME_KEYS` that holds an ISO 8601 string or an epoch number (seconds to
    nanoseconds) since 2000; None if none does (those keys then stay fields)."""
    for name in TIME_KEYS:
        if name in obj:
            epoch = json_epoch(obj[name])
            if epoch is not None and epoch >= _EARLIEST_TIME:
                del obj[name]
                return epoch
    return None


def parse_json(line: str) -> Parsed:
    """``json``: the object's keys become fields. The message is taken out of them: its
    ``message`` (as JSON text if it is not a string), else ``msg``, else ``event``, the first
    of these two that is a string, else ``""``. ``@timestamp`` is the timestamp (ISO 8601, or
    epoch seconds or milliseconds); without it, the first of ``timestamp``, ``time`` and
    ``ts`` that holds a time is, and is taken out of the fields. A line that is not a JSON
    object is kept as the message, with the error."""
    try:
        obj = _loads(line)
    except _JSONDecodeError as exc:
        return Parsed(line, None, {}, f"invalid JSON: {exc}")
    if type(obj) is not dict:
        return Parsed(line, None, {}, f"invalid JSON: not an object but {type(obj).__name__}")
    if "message" in obj:
        # A "message" always wins, whatever its type: left in the fields, a non-string one
        # would be hidden by the record's own "message".
        message = obj.pop("message")
        if type(message) is not str:
            message = _dumps(message).decode()
    else:
        message = _message_of(obj)
    if "@timestamp" not in obj:
        return Parsed(message, _time_of(obj), obj)
    stamp = obj.pop("@timestamp")
    timestamp = json_epoch(stamp)
    if timestamp is None:
        return Parsed(message, None, obj, f"invalid @timestamp: {_dumps(stamp).decode()[:100]}")
    return Parsed(message, timestamp, obj)


def parser_for(
    name: str,
    *,
    clock: Callable[[], float] = time.time,
    tz: datetime.tzinfo | None = None,
) -> Parser:
    """The parser of format ``name`` (one of :data:`FORMATS`); ValueError naming it if it is
    unknown.

    ``clock`` and ``tz`` matter to ``syslog`` only: its BSD timestamps have no year (inferred
    from ``clock``) and no zone (``tz``; None means this machine's local time). Each call
    returns a new parser with its own caches.
    """
    if name == "raw":
        return parse_raw
    if name == "json":
        return parse_json
    if name in ("nginx", "apache"):
        return web_parser(name)
    if name == "syslog":
        return syslog_parser(clock=clock, tz=tz)
    raise ValueError(f"unknown format {name!r}: expected one of {', '.join(FORMATS)}")


def to_ecs(fields: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an nginx, apache or syslog parser under their dotted ECS names, with the
    values ECS wants: ``protocol`` ``HTTP/1.1`` -> ``http.version`` ``1.1``; a ``proc_id`` that
    is not a number goes to ``log.syslog.procid`` (``process.pid`` is a number). A name
    without an ECS name is kept as it is."""
    out: dict[str, Any] = {}
    for name, value in fields.items():
        if name == "protocol" and isinstance(value, str) and value.startswith("HTTP/"):
            out["http.version"] = value[5:]
        elif name == "proc_id" and not isinstance(value, int):
            out["log.syslog.procid"] = value
        else:
            out[ECS_FIELDS.get(name, name)] = value
    return out
