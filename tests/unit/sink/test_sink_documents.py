"""Records as documents: the _id rule, the bytes kept as they are, records that are not JSON."""

from __future__ import annotations

import orjson
from sink_fakes import record

from kafkalog.sink.documents import Preparer
from kafkalog.sink.routing import IndexPattern

PATTERN = IndexPattern("logs-{app}", "unrouted")


def test_the_id_is_the_records_id_and_the_bytes_are_kept_as_they_are() -> None:
    value = b'{"id":"abc-1","app":"shop","message":"hi",  "n": 1}'
    (doc,) = Preparer(PATTERN, "index").prepare([record(7, value)])
    assert doc.doc_id == "abc-1"
    assert doc.source is value
    assert doc.index == "logs-shop"
    assert doc.invalid is None and not doc.dead_letter


def test_the_ecs_schema_id_is_event_id() -> None:
    (doc,) = Preparer(PATTERN, "index").prepare([record(7, b'{"event":{"id":"e-9"}}')])
    assert doc.doc_id == "e-9"
    assert doc.index == "unrouted"


def test_a_record_without_an_id_gets_topic_partition_offset() -> None:
    (doc,) = Preparer(None, "index").prepare([record(42, b'{"m":1}', partition=2)])
    assert doc.doc_id == "logs-2-42"
    assert doc.index == ""


def test_a_raw_newline_inside_the_json_is_re_serialised_onto_one_line() -> None:
    (doc,) = Preparer(None, "index").prepare([record(0, b'{"a":\n 1}')])
    assert doc.source == b'{"a":1}'


def test_a_record_that_is_not_json_is_indexed_as_a_message_with_an_error() -> None:
    docs = Preparer(PATTERN, "index").prepare(
        [record(3, b"plain text"), record(4, b"[1,2]"), record(5, None)])
    bodies = [orjson.loads(d.source) for d in docs]
    assert [b["message"] for b in bodies] == ["plain text", "[1,2]", ""]
    assert [d.invalid for d in docs] == ["not JSON", "JSON list, not an object",
                                        "empty record (no value)"]
    assert all(b["error"]["type"] == "invalid_record" for b in bodies)
    assert bodies[0]["@timestamp"] == "2023-11-14T22:13:20.000Z"
    assert [d.doc_id for d in docs] == ["logs-0-3", "logs-0-4", "logs-0-5"]
    assert not any(d.dead_letter for d in docs)
    assert {d.index for d in docs} == {"unrouted"}


def test_with_dead_letter_chosen_a_record_that_is_not_json_is_marked_for_it() -> None:
    (doc,) = Preparer(PATTERN, "dead-letter").prepare([record(3, b"\xff\xfe")])
    assert doc.dead_letter
    assert doc.invalid == "not JSON"
