"""One shipped event as the JSON of one Kafka record, in the handler's schema (default or ECS).

A record carries the event's message, ``@timestamp`` (parsed from the line, else the time it
was read), the host, the file's path, inode and byte offset, the fields its format parsed,
and an ``id`` derived from where the event is (host, file identity, offset). The id is the
same every time the same event is read again (after a crash, a replay), so a consumer or the
sink can keep each event once.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Mapping
from typing import Any, Final

import orjson

from kafkalog.formatting.ids import current_host
from kafkalog.formatting.schema import DIGITS3, ECS_VERSION
from kafkalog.ship.parsers import Parsed, to_ecs

_dumps = orjson.dumps
# orjson 3.12+ returns its output in a buffer of 4 KiB or more that it never trims: a queued
# record would pin ~10x its length (0.5-0.9 GiB of RSS in the catch-up benchmark, with the
# queue full). With a newline appended, slicing it off makes the right-sized copy.
_OPT: Final = orjson.OPT_NON_STR_KEYS | orjson.OPT_APPEND_NEWLINE
_floor = math.floor


def source_id(host: str, dev: int, ino: int, head_hash: str) -> str:
    """The stable part of a file's record ids: 16 hex digits naming host and file."""
    digest = hashlib.blake2b(f"{host}\0{dev}\0{ino}\0{head_hash}".encode(), digest_size=8)
    return digest.hexdigest()


class RecordBuilder:
    """Builds the record bytes for the events of one input (one schema, one set of static
    fields). Not thread-safe: the agent's loop is its only user."""

    def __init__(self, *, schema: str, static_fields: Mapping[str, Any], max_bytes: int,
                 json_fields: bool = False) -> None:
        #: Whether its records are in the ECS schema.
        self.ecs = self._ecs = schema == "ecs"
        # A JSON line's keys are its own names: they are not renamed to ECS ones.
        self._json = json_fields
        #: The fields added to every record (unless the record has a field of that name).
        self.static_fields = self._static = dict(static_fields)
        #: The largest record it builds; longer events are cut to fit.
        self.max_bytes = max_bytes
        #: The host name written into its records.
        self.host = current_host()
        self._second = -1.0
        self._prefix = ""

    def timestamp(self, when: float) -> str:
        """``when`` (epoch seconds) as RFC 3339 UTC with microseconds."""
        sec = _floor(when)
        us = round((when - sec) * 1_000_000)
        if us >= 1_000_000:
            sec += 1
            us -= 1_000_000
        if sec != self._second:  # strftime once per second
            self._second = float(sec)
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec))
        return f"{self._prefix}{DIGITS3[us // 1000]}{DIGITS3[us % 1000]}Z"

    def build(self, parsed: Parsed, *, path: str, ino: int, offset: int, source: str,
              read_time: float, truncated: bool = False) -> bytes:
        """The JSON bytes of one record (cut to ``max_bytes`` if it is larger)."""
        when = parsed.timestamp if parsed.timestamp is not None else read_time
        stamp = self.timestamp(when)
        rid = f"{source}-{offset:x}"
        if self._ecs:
            doc: dict[str, Any] = {
                "@timestamp": stamp,
                "message": parsed.message,
                "host": {"name": self.host},
                "log": {"file": {"path": path, "inode": ino}, "offset": offset},
                "event": {"id": rid},
                "ecs": {"version": ECS_VERSION},
            }
            fields = parsed.fields if self._json else to_ecs(parsed.fields)
            for name, value in fields.items():
                _put_dotted(doc, name, value)
            if parsed.error is not None:
                _put_dotted(doc, "error.message", parsed.error)
        else:
            doc = {
                "@timestamp": stamp,
                "message": parsed.message,
                "host": self.host,
                "file": path,
                "inode": ino,
                "offset": offset,
                "id": rid,
            }
            for name, value in parsed.fields.items():
                doc.setdefault(name, value)  # the standard fields always win
            if parsed.error is not None:
                doc["parse_error"] = parsed.error
        for name, value in self._static.items():
            doc.setdefault(name, value)
        if truncated:
            doc["truncated"] = True
        out = _dumps(doc, option=_OPT, default=str)[:-1]
        if len(out) <= self.max_bytes:
            return out
        return self._shrunk(doc, len(out))

    def _shrunk(self, doc: dict[str, Any], size: int) -> bytes:
        """The record with its message cut so that it fits, flagged ``truncated``; if even
        that is too large (huge parsed fields), the standard fields alone."""
        message = doc["message"]
        doc["truncated"] = True
        keep = max(0, len(message) - (size - self.max_bytes) - 64)  # 64: the flag, escapes
        for _ in range(4):  # escaping makes the size of a cut message hard to predict
            doc["message"] = message[:keep]
            out = _dumps(doc, option=_OPT, default=str)[:-1]
            if len(out) <= self.max_bytes:
                return out
            keep = max(0, keep - (len(out) - self.max_bytes) - 64)
        standard = ("@timestamp", "host", "file", "inode", "offset", "id", "log", "event",
                    "ecs")
        minimal = {k: doc[k] for k in standard if k in doc}
        minimal["message"] = message[: max(0, self.max_bytes // 8)]
        minimal["truncated"] = True
        return _dumps(minimal, option=_OPT, default=str)[:-1]


def field_key(fields: Mapping[str, Any], name: str) -> bytes | None:
    """The message key from the parsed field ``name`` (None if the event has no such field)."""
    value = fields.get(name)
    if value is None:
        return None
    return value if isinstance(value, bytes) else str(value).encode("utf-8", "replace")


def _put_dotted(doc: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` as nested objects, never overwriting a field already there."""
    parts = dotted.split(".")
    node = doc
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            if child is not None:
                return  # a scalar already there: keep it
            child = node[part] = {}
        node = child
    node.setdefault(parts[-1], value)
