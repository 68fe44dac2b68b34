"""A record read from Kafka as a document for the store: its ``_id``, its index, its bytes.

The record's bytes are the document as they are; they are parsed once (orjson) only to check
that they are a JSON object and to find the ``_id`` and the index name, never re-serialised
(unless they hold a raw newline, which newline-delimited JSON cannot carry).

The ``_id`` is the record's ``id`` (``event.id`` in the ECS schema), so a record read twice,
after a crash, a rebalance or a producer retry, overwrites itself. A record without one (from
another producer) gets ``topic-partition-offset``, which is just as stable for re-reads.

A record that is not a JSON object becomes, as the user chose, a document with the text in
``message`` and an ``error`` field, or a dead letter.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from kafkalog.client.group import GroupRecord
from kafkalog.sink.routing import IndexPattern

__all__ = ["Document", "Preparer", "source_id"]

# OpenSearch refuses a longer _id.
_MAX_ID_BYTES = 512


@dataclass(slots=True)
class Document:
    """One record, ready for an output.

    ``source`` is the document's JSON bytes (one line). ``invalid`` says why the record was not
    a JSON object (None if it was); ``dead_letter`` is True if it goes to the dead-letter
    topic instead of the store (the user's choice for such records).
    """

    record: GroupRecord
    doc_id: str
    index: str
    source: bytes
    invalid: str | None = None
    dead_letter: bool = False


def source_id(record: GroupRecord) -> str:
    """The ``_id`` of a record with no id of its own: where it sits in Kafka."""
    return f"{record.topic}-{record.partition}-{record.offset}"


def _own_id(doc: dict[str, Any]) -> str | None:
    value = doc.get("id")
    if value is None:
        event = doc.get("event")
        if isinstance(event, dict):
            value = event.get("id")
    if value is None or isinstance(value, (dict, list, bool)):
        return None
    text = value if isinstance(value, str) else str(value)
    if not text or len(text.encode()) > _MAX_ID_BYTES:
        return None
    return text


class Preparer:
    """Turns records into :class:`Document` s for one output.

    ``pattern`` is the index pattern (None for outputs without indices, such as files).
    ``on_invalid`` is ``"index"`` or ``"dead-letter"``.
    """

    def __init__(self, pattern: IndexPattern | None, on_invalid: str) -> None:
        self._pattern = pattern
        self._dead_letter_invalid = on_invalid == "dead-letter"

    def prepare(self, records: Iterable[GroupRecord]) -> list[Document]:
        """One document per record, in the same order."""
        loads = orjson.loads
        render = self._pattern.render if self._pattern is not None else None
        out: list[Document] = []
        append = out.append
        for record in records:
            value = record.value
            try:
                doc = loads(value) if value else None
            except orjson.JSONDecodeError:
                doc = None
            if not isinstance(doc, dict):
                append(self._invalid(record, doc))
                continue
            if b"\n" in value:  # type: ignore[operator]  # value is bytes: it parsed
                value = orjson.dumps(doc)
            doc_id = _own_id(doc) or source_id(record)
            index = render(doc) if render is not None else ""
            append(Document(record, doc_id, index, value))  # type: ignore[arg-type]
        return out

    def _invalid(self, record: GroupRecord, parsed: Any) -> Document:
        value = record.value
        if not value:
            reason = "empty record (no value)"
        elif parsed is None and value.strip() != b"null":
            reason = "not JSON"
        else:
            reason = f"JSON {type(parsed).__name__}, not an object"
        doc = {
            "@timestamp": datetime.fromtimestamp(max(record.timestamp_ms, 0) / 1000,
                                                 tz=timezone.utc).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "message": (value or b"").decode("utf-8", "replace"),
            "error": {"type": "invalid_record", "message": reason},
        }
        index = self._pattern.render(doc) if self._pattern is not None else ""
        return Document(record, source_id(record), index, orjson.dumps(doc),
                        invalid=reason, dead_letter=self._dead_letter_invalid)
