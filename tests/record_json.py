"""Log records for the formatting tests, made as ``Logger._log`` makes them, and their JSON."""

from __future__ import annotations

import logging
import re
from types import TracebackType
from typing import Any

import orjson

from kafkalog.formatting import JsonFormatter

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ID_RE = re.compile(r"^[0-9a-f]{16}-[0-9a-f]+$")
MARKER_RE = re.compile(r"\u2026\[truncated (\d+) bytes\]$")

_LOGGER = logging.getLogger("kafkalog.tests.formatter")


def make_record(
    msg: object = "hello",
    args: Any = None,
    *,
    level: int = logging.INFO,
    name: str = "app.component",
    extra: dict[Any, Any] | None = None,
    exc_info: Any = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    """Build a record the way Logger._log does (so extra= rules apply)."""
    return _LOGGER.makeRecord(
        name, level, "/src/app/component.py", 42, msg, args, exc_info, "handle", extra, sinfo
    )


def encode(record: logging.LogRecord, formatter: JsonFormatter | None = None) -> dict[str, Any]:
    """``record`` encoded (by a default JsonFormatter unless given one), checked and parsed."""
    out = (formatter or JsonFormatter()).encode(record)
    assert isinstance(out, bytes)
    out.decode("utf-8")  # strict: must be valid UTF-8
    doc = orjson.loads(out)
    assert isinstance(doc, dict)
    return doc


def encode_extra(value: Any, formatter: JsonFormatter | None = None) -> Any:
    """``value`` as it comes back from an extra's round trip through the formatter."""
    return encode(make_record(extra={"v": value}), formatter)["v"]


def exc_info_of(exc: BaseException) -> ExcInfo:
    """``exc`` raised and caught: an exc_info triple with a real traceback."""
    try:
        raise exc
    except BaseException as caught:
        return (type(caught), caught, caught.__traceback__)


class ReprAndStrFail:
    """A value with no text at all: repr, str and format all raise."""

    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("format")
