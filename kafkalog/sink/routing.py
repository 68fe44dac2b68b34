"""Which index a document goes to: the ``--index`` pattern, and the fallback index.

A pattern is text with fields of the record in braces and the date of its ``@timestamp`` in
strftime form: ``logs-{app}-%Y.%m.%d``. ``{log.level}`` names a nested field. A record that
lacks a field the pattern names (or whose value is an object or a list), or whose
``@timestamp`` is missing or not a date when the pattern has a date, goes to the fallback
index: never an error. Field values are lower-cased and characters an index name may not hold
become ``_``.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any

from kafkalog.errors import ConfigError

__all__ = ["IndexPattern", "index_name_problem"]

_FIELD_RE = re.compile(r"\{([^{}]*)\}")
_UNSAFE_RE = re.compile(r"[^a-z0-9._+-]")
# Codes finer than the hour: their rendering cannot be cached by the hour.
_FINE_CODES = ("%M", "%S", "%f", "%s", "%X", "%c", "%T", "%R", "%z", "%Z")
_MAX_INDEX_BYTES = 255
_CACHE_LIMIT = 4096


def index_name_problem(name: str) -> str | None:
    """Why ``name`` cannot be an OpenSearch index name, or None if it can."""
    if not name or name in (".", ".."):
        return "is empty"
    if name != name.lower():
        return "has capital letters"
    if name[0] in "-_+":
        return "starts with '-', '_' or '+'"
    if _UNSAFE_RE.search(name):
        return "has a character other than a-z, 0-9, '.', '_', '+', '-'"
    if len(name.encode()) > _MAX_INDEX_BYTES:
        return f"is longer than {_MAX_INDEX_BYTES} bytes"
    return None


class IndexPattern:
    """A parsed ``--index`` pattern: :meth:`render` gives a document's index name."""

    def __init__(self, pattern: str, fallback: str) -> None:
        self.pattern = pattern
        self.fallback = fallback
        problem = index_name_problem(fallback)
        if problem:
            raise ConfigError("fallback_index", f"{fallback!r} {problem}")
        pieces = _FIELD_RE.split(pattern)
        self._literals: tuple[str, ...] = tuple(pieces[0::2])
        fields = pieces[1::2]
        if any(not f.strip() for f in fields) or any(c in lit for lit in self._literals
                                                     for c in "{}"):
            raise ConfigError("index", f"{pattern!r}: braces must enclose a field name")
        self._paths: tuple[tuple[str, ...], ...] = tuple(tuple(f.strip().split("."))
                                                         for f in fields)
        self.dated = "%" in "".join(self._literals)
        self._by_hour = not any(code in pattern for code in _FINE_CODES)
        self._dates: dict[str, tuple[str, ...]] = {}
        when = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone.utc)
        sample = self._join(self._dated_literals(when), ["x"] * len(self._paths))
        problem = index_name_problem(sample)
        if problem:
            raise ConfigError("index", f"{pattern!r} gives names such as {sample!r}, which "
                                       f"{problem}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The field names the pattern takes from each record."""
        return tuple(".".join(p) for p in self._paths)

    def wildcard(self) -> str:
        """The pattern with every field and date code as ``*``: for the index template."""
        text = "*".join(self._literals)
        text = re.sub(r"%.", "*", text)
        return re.sub(r"\*+", "*", text)

    def render(self, doc: dict[str, Any]) -> str:
        """The index for ``doc`` (a parsed record), or the fallback index."""
        literals = self._literals
        if self.dated:
            dated = self._literals_for(doc.get("@timestamp"))
            if dated is None:
                return self.fallback
            literals = dated
        if not self._paths:
            return literals[0]
        values: list[str] = []
        for path in self._paths:
            value: Any = doc
            for part in path:
                if not isinstance(value, dict):
                    return self.fallback
                value = value.get(part)
            if value is None or isinstance(value, (dict, list)):
                return self.fallback
            values.append(_UNSAFE_RE.sub("_", str(value).lower()))
        name = self._join(literals, values)
        return self.fallback if index_name_problem(name) else name

    @staticmethod
    def _join(literals: tuple[str, ...], values: list[str]) -> str:
        out = [literals[0]]
        for value, literal in zip(values, literals[1:], strict=True):
            out.append(value)
            out.append(literal)
        return "".join(out)

    def _literals_for(self, stamp: Any) -> tuple[str, ...] | None:
        """The literals with the date of ``stamp`` filled in; None if it is not a date."""
        # kafkalog writes "2026-12-04T19:17:31.472908Z": every record of an hour shares the
        # rendering, so it is cached by the hour rather than parsed per record.
        key = stamp[:13] if (isinstance(stamp, str) and self._by_hour and stamp.endswith("Z")
                             and len(stamp) >= 13) else None
        if key is not None:
            cached = self._dates.get(key)
            if cached is not None:
                return cached
        when = _parse_time(stamp)
        if when is None:
            return None
        if key is not None:
            when = when.replace(minute=0, second=0, microsecond=0)
        literals = self._dated_literals(when)
        if key is not None:
            if len(self._dates) >= _CACHE_LIMIT:
                self._dates.clear()
            self._dates[key] = literals
        return literals

    def _dated_literals(self, when: datetime) -> tuple[str, ...]:
        return tuple(when.strftime(lit) if "%" in lit else lit for lit in self._literals)


_FRACTION = re.compile(r"\.(\d+)")


def _six_digits(match: re.Match[str]) -> str:
    return "." + match.group(1)[:6].ljust(6, "0")


def _parse_time(stamp: Any) -> datetime | None:
    """``stamp`` as a UTC datetime: an ISO 8601 string, or a number of ms since the epoch."""
    try:
        if isinstance(stamp, str):
            text = stamp[:-1] + "+00:00" if stamp.endswith(("Z", "z")) else stamp
            try:
                when = datetime.fromisoformat(text)
            except ValueError:
                # Python 3.10 takes only 3 or 6 digits of a second's fraction ("...:59.9"
                # from another producer): pad or cut them to 6 and try again.
                when = datetime.fromisoformat(_FRACTION.sub(_six_digits, text, count=1))
            if when.tzinfo is None:
                return when.replace(tzinfo=timezone.utc)
            return when.astimezone(timezone.utc)
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool):
            return datetime.fromtimestamp(stamp / 1000, tz=timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
    return None
