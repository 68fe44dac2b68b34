"""An input's new lines or events -> the record values, keys and end offsets the agent submits.

Two ways, with the same bytes: a whole chunk of lines at once (:mod:`kafkalog.ship.chunk`)
where the format, schema and key allow and no multi-line rule joins lines; else event by
event, parsed and built in the general way (:class:`~kafkalog.ship.record.RecordBuilder`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from kafkalog.ship.chunk import ChunkBuilder
from kafkalog.ship.multiline import Event
from kafkalog.ship.parsers import Parser
from kafkalog.ship.record import RecordBuilder, field_key


@dataclasses.dataclass(slots=True)
class Built:
    """Records ready to submit, in file order: ``ends[i]`` is the file offset just past the
    event of ``values[i]``; ``keys`` is None when the records have no key."""

    values: list[bytes]
    keys: list[bytes | None] | None
    ends: list[int]

    def rest(self, count: int) -> Built:
        """The records after the first ``count``."""
        keys = None if self.keys is None else self.keys[count:]
        return Built(self.values[count:], keys, self.ends[count:])


class InputRecords:
    """Builds the records of one input (its parser, record builder and key)."""

    def __init__(self, *, parser: Parser, builder: RecordBuilder, format: str,
                 key: str | None, multiline: str | None) -> None:
        self.builder = builder
        self._parse = parser
        self._key = key
        chunk = ChunkBuilder(builder, format=format, key=key)
        self._chunk = chunk if chunk.enabled and multiline is None else None

    @property
    def cut_bytes(self) -> int:
        """Lines longer than this are cut when read (and then flagged by the builder)."""
        return self.builder.max_bytes + 1

    @property
    def chunked(self) -> bool:
        """Whether whole chunks of lines can be built at once (no multi-line rule, and a
        format, schema and key the chunk builder handles)."""
        return self._chunk is not None

    def of_lines(self, lines: Sequence[bytes], offsets: Sequence[int], *, path: str, ino: int,
                 source: str, read_time: float) -> Built | None:
        """The records of complete lines (line ``i`` from ``offsets[i]`` to
        ``offsets[i + 1]``), built a chunk at a time; None if this chunk must go event by
        event (a long line, say)."""
        chunk = self._chunk
        if chunk is None:
            return None
        records = chunk.build(lines, offsets, path=path, ino=ino, source=source,
                              read_time=read_time)
        if records is None:
            return None
        if None in records:  # the few lines the chunk path left to the general one
            build = self._build
            records = [
                build(line, path=path, ino=ino, offset=start, source=source,
                      read_time=read_time, truncated=False) if record is None else record
                for record, line, start in zip(records, lines, offsets, strict=False)
            ]
        values: list[bytes] = records  # type: ignore[assignment]  # no None left
        keys: list[bytes | None] | None = None
        if self._key is not None:  # "path": the chunk path takes no other key
            keys = [path.encode()] * len(values)
        return Built(values, keys, list(offsets[1:]))

    def of_events(self, events: Sequence[Event], *, path: str, ino: int, source: str,
                  read_time: float) -> Built:
        """The records of ``events``, one by one."""
        key_name = self._key
        parse = self._parse
        build = self.builder.build
        path_key = path.encode()
        values: list[bytes] = []
        keys: list[bytes | None] | None = None if key_name is None else []
        for event in events:
            parsed = parse(event.data.decode("utf-8", "replace"))
            values.append(build(parsed, path=path, ino=ino, offset=event.start, source=source,
                                read_time=read_time, truncated=event.truncated))
            if keys is not None:
                keys.append(path_key if key_name == "path" else field_key(parsed.fields,
                                                                          key_name or ""))
        return Built(values, keys, [event.end for event in events])

    def _build(self, line: bytes, *, path: str, ino: int, offset: int, source: str,
               read_time: float, truncated: bool) -> bytes:
        parsed = self._parse(line.decode("utf-8", "replace"))
        return self.builder.build(parsed, path=path, ino=ino, offset=offset, source=source,
                                  read_time=read_time, truncated=truncated)
