"""The records of a whole chunk of lines at once, for the formats and schemas where that is
possible: ``raw`` in either schema, ``nginx`` and ``apache`` in the default schema.

The per-line work is a few C-level calls (``bytes %`` formatting, ``orjson.dumps`` of the
message, ``bytes.split``), never a dict and a timestamp per line in Python: a record is a
template made once per file (its host, path, inode and static fields already in JSON) with the
line's message, offset and id put in. The template is taken *from the general builder's own
output* for a sample record, so the bytes are those of :class:`~kafkalog.ship.record.RecordBuilder`
by construction (and a property test checks it). Whatever this module does not handle (a long
or cut line; in a web log chunk, a line outside the common shape, an escape, a control
character or invalid UTF-8) it leaves to the general builder: it returns None for the chunk,
or None for the lines it could not build (a web log time stamp that is no date).

A raw record's ``@timestamp`` is the read time of its chunk: one time per chunk, not per line.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from itertools import repeat
from typing import Final

import orjson

from kafkalog.ship.formats_common import Parsed, clf_epoch
from kafkalog.ship.formats_web import WEB_ECS_FIELDS
from kafkalog.ship.record import RecordBuilder

__all__ = ["ChunkBuilder"]

_dumps = orjson.dumps
_decode = bytes.decode
# The sample record's parts: values that no host, path or static field plausibly holds (if one
# does, the template is refused and the general builder is used).
_MESSAGE_MARK: Final = "kafkalog-chunk-message-9c1e7a"
_OFFSET_MARK: Final = 987_654_321_012_345
_READ_TIME_MARK: Final = 1_000_000_000.123456
# Per file templates kept at most (a file's template changes only when it is renamed).
_TEMPLATES_MAX: Final = 4096

# The combined log format line the general parser reads (see formats_web), restricted to the
# common shape whose fields are their own JSON: ident and user ``-``, a plain request line, a
# three-digit status and a size without leading zeros, and (optionally) a referrer and a user
# agent; no quote in a field (the chunk has no backslash or control character, and is valid
# UTF-8, so the general parser's classes match what these match). Run on a whole chunk: ``^``
# at each line, no class crosses a newline, and a match takes its line to the end, so that the
# next one starts where it ended. The referrer and user agent groups keep their opening quote,
# so that a field that is absent (b"") is told from one that is empty (b'"').
_WEB_LINE: Final = re.compile(
    rb'^([^\x00-\x20"]+) - - \[(\d\d/[A-Z][a-z]{2}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4})\] '
    rb'"([A-Z]+) ([^\x00-\x20"]+) (HTTP/[0-9.]+)" ([1-9]\d\d) (0|[1-9]\d{0,17})(?![^ \n])'
    rb'(?: ("[^\x00-\x1f"]*)" ("[^\x00-\x1f"]*)")?[^\n]*',
    re.MULTILINE,
)
# Referrer / user agent group values for which the field is left out.
_ABSENT: Final = frozenset((b"", b'"-'))


class _Template:
    """One file's record, cut where the per-line parts go."""

    __slots__ = ("before_offset", "head", "id_close", "middle", "tail")

    def __init__(self, head: bytes, middle: bytes, before_offset: bytes, id_close: bytes,
                 tail: bytes) -> None:
        self.head = head  # up to the timestamp
        self.middle = middle  # between the timestamp and the message
        self.before_offset = before_offset  # between the message and the offset
        self.id_close = id_close  # between the offset and the id's hex digits
        self.tail = tail  # after the id's hex digits


def _cut(record: bytes, stamp: bytes, message: bytes, offset: bytes, rid: bytes) -> \
        _Template | None:
    """``record`` cut at each mark, which must each occur once, in this order; %-escaped."""
    parts = []
    rest = record
    for mark in (stamp, message, offset, rid):
        if record.count(mark) != 1:
            return None
        before, found, rest = rest.partition(mark)
        if not found:
            return None  # out of order
        parts.append(before.replace(b"%", b"%%"))
    parts.append(rest.replace(b"%", b"%%"))
    return _Template(*parts)


class ChunkBuilder:
    """Builds the records of one input's chunks of lines, when its format and schema allow.

    ``format`` is the input's ``--format``; ``builder`` its general record builder.
    :attr:`enabled` is False when the chunk path can never apply (a JSON or syslog input, ECS
    with parsed fields, a key taken from a parsed field, static fields named like parsed ones).
    """

    def __init__(self, builder: RecordBuilder, *, format: str, key: str | None) -> None:
        self._builder = builder
        self._web = format in ("nginx", "apache")
        static = set(builder.static_fields)
        self.enabled = key in (None, "path") and (
            format == "raw"
            or (self._web and not builder.ecs and not static & set(WEB_ECS_FIELDS))
        )
        self._templates: dict[tuple[str, int, str], _Template | None] = {}
        # Web log time stamp -> the record's @timestamp bytes (b"" when it does not parse).
        self._stamps: dict[bytes, bytes] = {}

    def _template(self, path: str, ino: int, source: str) -> _Template | None:
        key = (path, ino, source)
        try:
            return self._templates[key]
        except KeyError:
            pass
        builder = self._builder
        sample = builder.build(Parsed(_MESSAGE_MARK, None, {}), path=path, ino=ino,
                               offset=_OFFSET_MARK, source=source, read_time=_READ_TIME_MARK)
        stamp = builder.timestamp(_READ_TIME_MARK).encode()
        template = _cut(sample, stamp, _dumps(_MESSAGE_MARK), str(_OFFSET_MARK).encode(),
                        f"{_OFFSET_MARK:x}".encode())
        if template is not None and self._web and not template.tail.startswith(b'"'):
            template = None  # parsed fields go right after the id
        if len(self._templates) >= _TEMPLATES_MAX:
            self._templates.clear()
        self._templates[key] = template
        return template

    def build(self, lines: Sequence[bytes], offsets: Sequence[int], *, path: str, ino: int,
              source: str, read_time: float) -> list[bytes | None] | None:
        """The record of each line (``offsets[i]`` is where line ``i`` starts), or None for
        the whole chunk if it must take the general path. A line whose record this path can
        not build (a time stamp that is no date, a record too long once escaped) is None in
        the list: the caller builds that one in the general way."""
        if not self.enabled or not lines:
            return None
        builder = self._builder
        max_bytes = builder.max_bytes
        if max(map(len, lines)) > max_bytes:
            return None  # cut or to be cut: truncation is the general path's
        t = self._template(path, ino, source)
        if t is None:
            return None
        joined = b""
        if self._web:
            joined = b"\n".join(lines)
            if b"\\" in joined or not (joined.isascii() or _valid_utf8(joined)):
                return None  # escapes to undo, or bytes to replace: the general path's work
        # One orjson call per message, mapped in C; invalid UTF-8 becomes U+FFFD, as the
        # general path decodes it.
        messages = list(map(_dumps, map(_decode, lines, repeat("utf-8"), repeat("replace"))))
        if self._web:
            # orjson lengthens a line by its two quotes, one backslash per quote and the
            # escapes of control characters: if the messages are no longer than the first two
            # make them, no field holds a control character, and the fields are their own JSON.
            plain = len(joined) + len(lines) + 1 + joined.count(b'"')
            if sum(map(len, messages)) != plain:
                return None
            records = self._web_records(t, joined, messages, offsets)
            if records is None:
                return None
        else:
            stamp = builder.timestamp(read_time).encode()
            form = (t.head + stamp + t.middle + b"%b" + t.before_offset + b"%d" + t.id_close
                    + b"%x" + t.tail)
            records = list(map(form.__mod__, zip(messages, offsets, offsets, strict=False)))
        if max(map(len, filter(None, records)), default=0) > max_bytes:
            # Escaping made some too large: those are cut by the general path.
            records = [r if r is None or len(r) <= max_bytes else None for r in records]
        return records

    def _web_records(self, t: _Template, joined: bytes, messages: list[bytes],
                     offsets: Sequence[int]) -> list[bytes | None] | None:
        found = _WEB_LINE.findall(joined)
        if len(found) != len(messages):
            return None  # some line is not of the common shape (a line-by-line pass is rare)
        stamps = self._stamps
        missing = {f[1] for f in found} - stamps.keys()
        if missing:
            self._add_stamps(missing)
        head = (t.head + b"%b" + t.middle + b"%b" + t.before_offset + b"%d" + t.id_close
                + b'%x"')
        fields = (b',"client_ip":"%b","method":"%b","path":"%b","protocol":"%b","status":%b,'
                  b'"bytes":%b')
        rest = t.tail[1:]
        # forms[i]: i & 1 = with a referrer, i & 2 = with a user agent. A field left out is
        # formatted with a precision of 0, so that every form takes the same arguments.
        forms = [head + fields + referrer + agent + rest
                 for agent in (b"%.0b", b',"user_agent":%b"')
                 for referrer in (b"%.0b", b',"referrer":%b"')]
        absent = _ABSENT
        records: list[bytes | None] = [
            None if not (formatted := stamps[stamp]) else
            forms[(referrer not in absent) + 2 * (agent not in absent)] % (
                formatted, message, offset, offset, client, method, target, protocol,
                status, size, referrer, agent)
            for (client, stamp, method, target, protocol, status, size, referrer, agent),
            message, offset in zip(found, messages, offsets, strict=False)
        ]
        return records

    def _add_stamps(self, missing: set[bytes]) -> None:
        stamps = self._stamps
        if len(stamps) + len(missing) > _TEMPLATES_MAX:
            stamps.clear()
        timestamp = self._builder.timestamp
        for text in missing:
            epoch = clf_epoch(text.decode())
            stamps[text] = b"" if epoch is None else timestamp(epoch).encode()


def _valid_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
