"""How ``kafkalog tail`` sees and shows a consumed record: fields of either record schema,
the ``--level``/``--logger``/``--grep`` filter, the ``--dedupe`` window, and the printer
(JSON lines unchanged, or one coloured line per record on a terminal).
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
import re
from collections.abc import Iterator, Mapping
from typing import IO, TYPE_CHECKING, Any

import orjson
from rich.console import Console
from rich.syntax import Syntax
from rich.text import Text

if TYPE_CHECKING:
    from kafkalog.client.reader import ConsumedRecord


def level_number(name: str) -> int | None:
    """The numeric level of a level name (any case; ``WARN`` and ``FATAL`` too), or None."""
    number = logging.getLevelName(name.strip().upper())
    return number if isinstance(number, int) else None


# Fields of the default schema that the pretty printer shows in their own place.
_SHOWN_FIELDS = frozenset({
    "@timestamp", "level", "logger", "message", "module", "function", "line", "process",
    "thread_name", "host", "id", "exception", "stack", "truncated",
})
# ECS objects, left out when they are objects (a default-schema static field may share a name).
_ECS_OBJECTS = frozenset({"log", "event", "ecs", "error", "process", "host", "service"})


class LogLine:
    """A consumed record seen as a log record: JSON fields of either schema, or plain text."""

    def __init__(self, record: ConsumedRecord) -> None:
        self.record = record
        self.text = record.value.decode("utf-8", "replace")
        try:
            decoded = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            decoded = None
        self.fields: dict[str, Any] | None = decoded if isinstance(decoded, dict) else None

    def _get(self, *paths: str) -> Any:
        """The first of the dotted ``paths`` present (nested objects or flat dotted keys)."""
        fields = self.fields
        if fields is None:
            return None
        for path in paths:
            if path in fields:
                return fields[path]
            node: Any = fields
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                return node
        return None

    @property
    def level(self) -> str | None:
        """Level name, upper case."""
        value = self._get("level", "log.level")
        return str(value).upper() if value is not None else None

    @property
    def logger(self) -> str | None:
        """Logger name."""
        value = self._get("logger", "log.logger")
        return str(value) if value is not None else None

    @property
    def message(self) -> str:
        """The message, or the whole text of a record that is not a JSON object."""
        if self.fields is None:
            return self.text
        value = self._get("message")
        return "" if value is None else str(value)

    @property
    def timestamp(self) -> str:
        """The record's ``@timestamp``, else Kafka's timestamp, as ``YYYY-MM-DD HH:MM:SS.mmm``."""
        value = self._get("@timestamp")
        if isinstance(value, str) and len(value) >= 19:
            return value[:23].replace("T", " ")
        stamp = dt.datetime.fromtimestamp(self.record.timestamp_ms / 1000, dt.timezone.utc)
        return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]

    @property
    def record_id(self) -> str | None:
        """The record's ``id`` (``event.id`` under ECS)."""
        value = self._get("id", "event.id")
        return str(value) if value is not None else None

    @property
    def traceback(self) -> str | None:
        """The exception's formatted traceback, if the record carries one."""
        value = self._get("exception.stacktrace", "error.stack_trace")
        return str(value) if value else None

    def extras(self) -> dict[str, Any]:
        """Top-level fields the pretty printer does not show in a place of their own."""
        if self.fields is None:
            return {}
        return {
            k: v
            for k, v in self.fields.items()
            if k not in _SHOWN_FIELDS and not (k in _ECS_OBJECTS and isinstance(v, dict))
        }


class RecordFilter:
    """``--level``, ``--logger`` and ``--grep``: which records ``tail`` prints."""

    def __init__(
        self,
        *,
        min_level: int | None = None,
        logger: str | None = None,
        pattern: re.Pattern[str] | None = None,
    ) -> None:
        self.min_level = min_level
        self.logger = logger
        self.pattern = pattern

    def matches(self, line: LogLine) -> bool:
        """True if ``line`` passes every filter given.

        A level filter lets through only records with a level at least that high (records
        with no known level are left out); a logger filter, records of that logger and its
        children (``app`` matches ``app`` and ``app.db``, not ``application``); a pattern,
        records whose message or traceback it finds (the whole text if not JSON).
        """
        if self.min_level is not None:
            number = level_number(line.level) if line.level else None
            if number is None or number < self.min_level:
                return False
        if self.logger is not None:
            name = line.logger
            if name is None or not (name == self.logger or name.startswith(self.logger + ".")):
                return False
        if self.pattern is not None:
            haystack = line.message + "\n" + (line.traceback or "")
            if not self.pattern.search(haystack):
                return False
        return True


class DedupeWindow:
    """Remembers the last ``size`` record ids seen; older ones are forgotten (bounded memory)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the dedupe window must hold at least one id")
        self.size = size
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.dropped = 0

    def first_time(self, record_id: str | None) -> bool:
        """True if ``record_id`` was not seen within the window (None: always True)."""
        if record_id is None:
            return True
        if record_id in self._seen:
            self._seen.move_to_end(record_id)
            self.dropped += 1
            return False
        self._seen[record_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


LEVEL_STYLES: Mapping[str, str] = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "yellow",
    "WARN": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
    "FATAL": "bold white on red",
}


def render(line: LogLine) -> Iterator[Text | Syntax]:
    """The rich renderables of one record: a line, then its traceback if it has one."""
    if line.fields is None:
        yield Text(line.text)
        return
    level = line.level or "-"
    out = Text()
    out.append(line.timestamp, style="dim")
    out.append(" ")
    out.append(f"{level:<8}", style=LEVEL_STYLES.get(level, "bold"))
    out.append(" ")
    out.append(line.logger or "-", style="cyan")
    out.append(" ")
    out.append(line.message)
    for key, value in line.extras().items():
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        out.append(f" {key}=", style="dim")
        out.append(shown, style="dim")
    yield out
    traceback = line.traceback
    if traceback:
        yield Syntax(traceback.rstrip("\n"), "pytb", theme="ansi_dark", background_color="default")


class TailPrinter:
    """Writes records as ``tail`` shows them: raw JSON lines, or pretty with colour."""

    def __init__(self, *, pretty: bool, console: Console, raw: IO[bytes]) -> None:
        self.pretty = pretty
        self._console = console
        self._raw = raw

    def write(self, line: LogLine) -> None:
        """Write one record."""
        if self.pretty:
            for renderable in render(line):
                self._console.print(renderable, soft_wrap=True, highlight=False)
        else:
            value = line.record.value
            self._raw.write(value if value.endswith(b"\n") else value + b"\n")

    def flush(self) -> None:
        """Push what was written out (before offsets are committed)."""
        if not self.pretty:
            self._raw.flush()
        self._console.file.flush()
