"""What every line parser returns (:class:`Parsed`), and the timestamps log formats write,
turned into epoch seconds.

A parser runs once per line, so a timestamp costs a regex match and a dict lookup: the epoch
of each minute is computed once and cached, and only the seconds are added per line.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
import re
import sys
from collections.abc import Callable
from typing import Any, Final

__all__ = [
    "MONTHS", "Parsed", "Parser", "clf_epoch", "iso_epoch", "iso_epoch_by_regex", "json_epoch"
]


@dataclasses.dataclass(slots=True)
class Parsed:
    """One event as a parser read it.

    ``message`` is the text of the event; ``timestamp`` the epoch seconds written in it (None:
    the agent uses the time it read the line); ``fields`` the extra fields, under the default
    schema's names; ``error`` says why the line did not parse (the agent writes it as the
    field ``parse_error``; the line is then kept whole as the message).
    """

    message: str
    timestamp: float | None
    fields: dict[str, Any]
    error: str | None = None


#: A parser: the decoded text of one event (no trailing newline) -> :class:`Parsed`.
Parser = Callable[[str], Parsed]

MONTHS: Final = {
    name: number
    for number, name in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"),
        start=1,
    )
}

_EPOCH_ORDINAL: Final = datetime.date(1970, 1, 1).toordinal()
# Enough minutes for a day and more of a busy log; cleared whole when full (a cache miss costs
# a few microseconds, so no LRU bookkeeping per line).
_CACHE_MAX: Final = 4096


def _utc_minute(year: int, month: int, day: int, hour: int, minute: int, *, offset_s: int) -> int:
    """Epoch seconds of a minute written with a UTC offset; ValueError if it is no date."""
    if hour > 23 or minute > 59:
        raise ValueError("no such time")
    days = datetime.date(year, month, day).toordinal() - _EPOCH_ORDINAL
    return days * 86400 + hour * 3600 + minute * 60 - offset_s


def _offset_s(tz: str) -> int:
    """``+0200``, ``-05:30``, ``+02``, ``Z`` or ``""`` -> seconds east of UTC."""
    if not tz or tz in ("Z", "z"):
        return 0
    digits = tz[1:].replace(":", "")
    hours, minutes = int(digits[:2]), int(digits[2:] or 0)
    if hours > 23 or minutes > 59:
        raise ValueError("no such offset")
    seconds = hours * 3600 + minutes * 60
    return -seconds if tz[0] == "-" else seconds


# ISO 8601 / RFC 3339: a date, optionally a time (seconds and fraction optional), optionally an
# offset. Without an offset the time is taken as UTC, as Elasticsearch takes @timestamp.
_ISO = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)(?:[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?)?"
    r" ?(Z|z|[+-]\d\d(?::?\d\d)?)?\Z"
)
_iso_minutes: dict[str, int] = {}


def iso_epoch_by_regex(text: str) -> float | None:
    """:func:`iso_epoch` for Python 3.10, whose ``datetime.fromisoformat`` reads only what
    ``isoformat`` writes (no ``Z``, no fraction but 3 or 6 digits)."""
    m = _ISO.match(text)
    if m is None:
        return None
    year, month, day, hour, minute, second, fraction, tz = m.groups()
    key = f"{year}{month}{day}{hour}{minute}{tz}"
    base = _iso_minutes.get(key)
    if base is None:
        try:
            base = _utc_minute(int(year), int(month), int(day), int(hour or 0),
                               int(minute or 0), offset_s=_offset_s(tz or ""))
        except ValueError:
            return None
        if len(_iso_minutes) >= _CACHE_MAX:
            _iso_minutes.clear()
        _iso_minutes[key] = base
    if second is None:
        return float(base)
    sec = int(second)
    if sec > 60:
        return None
    if fraction is None:
        return float(base + sec)
    return base + sec + float("0." + fraction)


_fromisoformat = datetime.datetime.fromisoformat
_UTC = datetime.timezone.utc


def _iso_epoch_311(text: str) -> float | None:
    try:
        stamp = _fromisoformat(text)
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=_UTC)
    try:
        return stamp.timestamp()
    except (OverflowError, ValueError):  # past the ends of the calendar once the offset applies
        return None


#: ``2024-05-01T12:00:00.123+02:00`` (ISO 8601 / RFC 3339) -> epoch seconds, or None. Without
#: an offset, the time is UTC. (Python 3.11's ``fromisoformat`` is in C and reads every form;
#: 3.10 uses a regex and a minute cache.)
iso_epoch: Callable[[str], float | None] = (
    _iso_epoch_311 if sys.version_info >= (3, 11) else iso_epoch_by_regex
)


_CLF = re.compile(r"(\d\d)/([A-Z][a-z]{2})/(\d{4}):(\d\d):(\d\d):\d\d ([+-]\d{4})\Z")
_clf_minutes: dict[str, int] = {}


_clf_seconds: dict[str, float | None] = {}


def clf_epoch(text: str) -> float | None:
    """``10/Oct/2023:13:55:36 +0000`` (Common Log Format, nginx's ``$time_local``) -> epoch
    seconds, or None."""
    # A busy access log writes many lines a second: the whole stamp is looked up first.
    try:
        return _clf_seconds[text]
    except KeyError:
        pass
    epoch = _clf_epoch(text)
    if len(_clf_seconds) >= _CACHE_MAX:
        _clf_seconds.clear()
    _clf_seconds[text] = epoch
    return epoch


def _clf_epoch(text: str) -> float | None:
    key = text[:18] + text[20:]  # the seconds cut out
    base = _clf_minutes.get(key)
    if base is None:
        m = _CLF.match(text)
        if m is None:
            return None
        day, mon, year, hour, minute, tz = m.groups()
        month = MONTHS.get(mon)
        if month is None:
            return None
        try:
            base = _utc_minute(int(year), month, int(day), int(hour), int(minute),
                           offset_s=_offset_s(tz))
        except ValueError:
            return None
        if len(_clf_minutes) >= _CACHE_MAX:
            _clf_minutes.clear()
        _clf_minutes[key] = base
    second = text[18:20]
    if not second.isdigit() or second > "60":
        return None
    return float(base + int(second))


def json_epoch(value: object) -> float | None:
    """A JSON ``@timestamp`` -> epoch seconds, or None.

    A string is read as ISO 8601; a number as epoch seconds, or as milli-, micro- or
    nanoseconds when it is too large to be seconds (past the year 5000), as Elasticsearch reads
    a number as ``epoch_millis``.
    """
    if isinstance(value, str):
        return iso_epoch(value)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            number = float(value)
        except OverflowError:  # an integer past the float range
            return None
        if math.isnan(number):  # an infinity fails the range test below
            return None
        for _ in range(3):
            if abs(number) < 1e11:
                return number
            number /= 1000.0
        return number if abs(number) < 1e11 else None
    return None
