"""Syslog lines, RFC 5424 and RFC 3164 (BSD), as rsyslog and syslog-ng write them to files:
one line -> the message and its header as named fields.

RFC 3164 lines may start with a PRI (``<38>``) or not (rsyslog's traditional file format has
none), and carry either the BSD timestamp (``Dec  4 17:38:54``, local time, no year) or an RFC
3339 one (rsyslog's ``RSYSLOG_FileFormat``). The year of a BSD timestamp is inferred: the latest
year that does not put the line more than a day in the future (a December line read in January
is last year's).
"""

from __future__ import annotations

import datetime
import re
import time
from collections.abc import Callable
from typing import Any, Final

from kafkalog.ship.formats_common import MONTHS, Parsed, Parser, iso_epoch

__all__ = ["LEVELS", "SYSLOG_ECS_FIELDS", "syslog_parser"]

#: Syslog severities 0..7 by name, as ``level``.
LEVELS: Final = ("emergency", "alert", "critical", "error", "warning", "notice", "info", "debug")
_MAX_PRI: Final = 191  # facility 23, severity 7

#: Each field the syslog parser emits -> its ECS name.
SYSLOG_ECS_FIELDS: Final = {
    "facility": "log.syslog.facility.code",
    "severity": "log.syslog.severity.code",
    "level": "log.level",
    "hostname": "host.hostname",
    "app_name": "process.name",
    "proc_id": "process.pid",
    "msg_id": "event.code",
    "structured_data": "log.syslog.structured_data",
}

_DAY_S: Final = 86400
# The minute cache of BSD timestamps is dropped this often: an inferred year holds for a while,
# not for ever (the agent may run for more than a year).
_LOCAL_CACHE_S: Final = 3600.0
_LOCAL_CACHE_MAX: Final = 4096

# A PARAM-VALUE keeps '"', '\' and ']' escaped with a backslash; an unescaped ']' (which some
# senders write) is accepted inside the quotes.
_SD_VALUE: Final = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_SD_NAME: Final = r'[^\s\]"=]+'
_SD_ELEMENT: Final = r"\[" + _SD_NAME + r"(?: " + _SD_NAME + "=" + _SD_VALUE + r")*\]"
_RFC5424: Final = re.compile(
    r"<(\d{1,3})>\d{1,2} (\S+) (\S+) (\S+) (\S+) (\S+) (-|(?:" + _SD_ELEMENT + r")+)"
    r"(?: (.*))?\Z",
    re.DOTALL,
)
_SD_ELEMENTS: Final = re.compile(r"\[(" + _SD_NAME + r")((?: " + _SD_NAME + "=" + _SD_VALUE
                                 + r")*)\]")
_SD_PARAMS: Final = re.compile(r"(" + _SD_NAME + r')="([^"\\]*(?:\\.[^"\\]*)*)"')
_SD_ESCAPE: Final = re.compile(r'\\(["\\\]])')

_RFC3164: Final = re.compile(
    r"(?:<(\d{1,3})>)?"
    # a BSD timestamp, its minute and its seconds apart (the minute is the cache key) ...
    r"(?:([A-Z][a-z]{2} [ \d]?\d \d\d:\d\d):(\d\d)(?:\.\d{1,9})?"
    # ... or an RFC 3339 one
    r"|(\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d{1,9})?(?:Z|z|[+-]\d\d:?\d\d)?))"
    # HOSTNAME (absent when the next word is the tag: it cannot end with ':')
    r" +(?:([^\s\[\]]*[^\s\[\]:]) )?"
    # TAG[PID]: (absent from some messages)
    r"(?:([^\s\[\]:]+)(?:\[([^\]]*)\])?:(?: |\Z))?"
    r"(.*)",
    re.DOTALL,
)


def _pid(text: str) -> int | str:
    """A PROCID: an int when it is one (as process.pid is), else the text."""
    return int(text) if text.isascii() and text.isdigit() and len(text) < 19 else text


def _structured_data(text: str) -> dict[str, dict[str, str]]:
    """``[id@1 a="1" b="x\\"y"][id2]`` -> ``{"id@1": {"a": "1", "b": 'x"y'}, "id2": {}}``."""
    data: dict[str, dict[str, str]] = {}
    for element in _SD_ELEMENTS.finditer(text):
        params = data.setdefault(element.group(1), {})
        for name, value in _SD_PARAMS.findall(element.group(2)):
            params[name] = _SD_ESCAPE.sub(r"\1", value) if "\\" in value else value
    return data


# PRI text -> (facility, severity, level): one lookup a line instead of the arithmetic.
_PRIS: Final = {str(pri): (pri >> 3, pri & 7, LEVELS[pri & 7]) for pri in range(_MAX_PRI + 1)}


def _add_pri(fields: dict[str, Any], pri: str) -> str | None:
    """Facility, severity and level from a PRI; the error if it is out of range."""
    parts = _PRIS.get(pri) or _PRIS.get(str(int(pri)))  # the second for a zero-padded PRI
    if parts is None:
        return f"invalid PRI <{pri}>"
    fields["facility"], fields["severity"], fields["level"] = parts
    return None


def _parse_5424(m: re.Match[str]) -> Parsed:
    pri, stamp, host, app, proc, msg_id, sd, msg = m.groups()
    fields: dict[str, Any] = {}
    error = _add_pri(fields, pri)
    if host != "-":
        fields["hostname"] = host
    if app != "-":
        fields["app_name"] = app
    if proc != "-":
        fields["proc_id"] = _pid(proc)
    if msg_id != "-":
        fields["msg_id"] = msg_id
    if sd != "-":
        fields["structured_data"] = _structured_data(sd)
    if msg is None:
        msg = ""
    else:
        if msg.startswith("\ufeff"):  # the BOM that marks a UTF-8 MSG
            msg = msg[1:]
        if msg.startswith(" "):
            # rsyslog's RFC 5424 output of a message from the local socket ("tag: text")
            # keeps the space after the tag in MSG, as its %msg% property does: one space,
            # so that indentation beyond it is kept.
            msg = msg[1:]
    timestamp = None
    if stamp != "-":
        timestamp = iso_epoch(stamp)
        if timestamp is None:
            error = f"invalid timestamp: {stamp}"
    return Parsed(msg, timestamp, fields, error)


def _minute_epoch(
    key: str, now: float, tz: datetime.tzinfo | None
) -> float | None:
    """``Dec  4 17:38`` -> epoch seconds of that minute in the latest year that is not more
    than a day after ``now``; None if no year has that date."""
    mon, day, hhmm = key.split()
    month = MONTHS.get(mon)
    hour, minute = int(hhmm[:2]), int(hhmm[3:])
    if month is None or hour > 23 or minute > 59:
        return None
    this_year = (time.localtime(now).tm_year if tz is None
                 else datetime.datetime.fromtimestamp(now, tz).year)
    latest = now + _DAY_S
    # Feb 29 looks back to the last leap year; one of any eight years is one.
    for year in range(this_year + 1, this_year - 8, -1):
        try:
            if tz is None:
                datetime.date(year, month, int(day))  # mktime would roll Feb 30 into March
                epoch = time.mktime((year, month, int(day), hour, minute, 0, 0, 0, -1))
            else:
                epoch = datetime.datetime(year, month, int(day), hour, minute,
                                          tzinfo=tz).timestamp()
        except (ValueError, OverflowError):
            continue
        if epoch <= latest:
            return epoch
    return None


def syslog_parser(
    *, clock: Callable[[], float] = time.time, tz: datetime.tzinfo | None = None
) -> Parser:
    """The parser of syslog lines (RFC 5424, or RFC 3164 when a line is not 5424).

    The message is the MSG part. Fields: ``facility``, ``severity`` and ``level`` (from the
    PRI, when there is one), ``hostname``, ``app_name`` (the tag), ``proc_id`` (an int when it
    is one), and for RFC 5424 ``msg_id`` and ``structured_data`` (a dict of dicts); a ``-``
    (nil) value is omitted. ``clock`` is the time the year of a BSD timestamp is inferred
    from; ``tz`` the zone a BSD timestamp is in (None: this machine's local time).
    """
    match_5424 = _RFC5424.match
    match_3164 = _RFC3164.match
    minutes: dict[str, float | None] = {}
    expires = 0.0

    def parse(line: str) -> Parsed:
        nonlocal expires
        if line.startswith("<"):
            m5 = match_5424(line)
            if m5 is not None:
                return _parse_5424(m5)
        m = match_3164(line)
        if m is None:
            return Parsed(line, None, {}, "not a syslog line")
        pri, minute, second, stamp, host, tag, pid, msg = m.groups()
        fields: dict[str, Any] = {}
        error = None if pri is None else _add_pri(fields, pri)
        if host is not None:
            fields["hostname"] = host
        if tag is not None:
            fields["app_name"] = tag
            if pid:
                fields["proc_id"] = _pid(pid)
        if minute is not None:
            now = clock()
            if now >= expires or len(minutes) >= _LOCAL_CACHE_MAX:
                minutes.clear()
                expires = now + _LOCAL_CACHE_S
            try:
                base = minutes[minute]
            except KeyError:
                base = minutes[minute] = _minute_epoch(minute, now, tz)
            timestamp = None if base is None else base + int(second)
        else:
            timestamp = iso_epoch(stamp)
        if timestamp is None:
            error = f"invalid timestamp: {minute}:{second}" if minute else (
                f"invalid timestamp: {stamp}")
        return Parsed(msg, timestamp, fields, error)

    return parse
