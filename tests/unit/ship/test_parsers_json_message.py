"""Where a ``json`` line's message is: ``message``, else ``msg`` (Go's slog, zap), else
``event`` (structlog); the key used leaves the fields, through the parser and the records the
agent builds."""

from __future__ import annotations

import datetime

import orjson
import pytest

from kafkalog.ship.building import InputRecords
from kafkalog.ship.multiline import Event
from kafkalog.ship.parsers import MESSAGE_KEYS, Parsed, parser_for
from kafkalog.ship.record import RecordBuilder

parse = parser_for("json")


def utc(*args: int) -> float:
    return datetime.datetime(*args, tzinfo=datetime.timezone.utc).timestamp()


def test_the_keys_are_looked_for_in_this_order() -> None:
    assert MESSAGE_KEYS == ("message", "msg", "event")


def test_go_slog_msg_is_the_message() -> None:
    # log/slog's JSONHandler
    line = ('{"time":"2026-12-04T16:38:29.123456789Z","level":"INFO","msg":"order paid",'
            '"order":42,"amount":19.9}')
    parsed = parse(line)
    # (Python 3.10's parser keeps the nanoseconds a float can hold; 3.11's stops at micro.)
    assert parsed.timestamp == pytest.approx(utc(2026, 12, 4, 16, 38, 29, 123456), abs=1e-6)
    assert parsed == Parsed("order paid", parsed.timestamp, {
        "level": "INFO", "order": 42, "amount": 19.9,
    })


def test_zap_msg_is_the_message() -> None:
    # zap's production encoder: "ts" in epoch seconds, "caller", "msg"
    line = ('{"level":"error","ts":1733330309.1234,"caller":"shop/pay.go:88",'
            '"msg":"payment refused","card":"visa"}')
    parsed = parse(line)
    assert parsed.message == "payment refused"
    assert "msg" not in parsed.fields
    assert parsed.timestamp == 1733330309.1234
    assert parsed.fields == {"level": "error", "caller": "shop/pay.go:88", "card": "visa"}


def test_structlog_event_is_the_message() -> None:
    # structlog's JSONRenderer after TimeStamper(fmt="iso") and add_log_level
    line = ('{"user":"alice","event":"user logged in","level":"info",'
            '"timestamp":"2026-12-04T16:38:29.004512Z"}')
    assert parse(line) == Parsed("user logged in", utc(2026, 12, 4, 16, 38, 29, 4512), {
        "user": "alice", "level": "info",
    })


def test_message_wins_over_msg_and_event_which_stay_fields() -> None:
    parsed = parse('{"message":"the message","msg":"short","event":"e"}')
    assert parsed.message == "the message"
    assert parsed.fields == {"msg": "short", "event": "e"}


def test_msg_wins_over_event() -> None:
    parsed = parse('{"event":"e","msg":"m"}')
    assert (parsed.message, parsed.fields) == ("m", {"event": "e"})


def test_a_message_that_is_not_a_string_still_wins_as_json_text() -> None:
    # Left among the fields it would be hidden by the record's own "message".
    parsed = parse('{"message":{"code":7},"msg":"m"}')
    assert (parsed.message, parsed.fields) == ('{"code":7}', {"msg": "m"})


@pytest.mark.parametrize("line", ['{"msg":42,"event":"e"}', '{"msg":null,"event":"e"}'])
def test_a_msg_that_is_not_a_string_is_passed_over_and_kept(line: str) -> None:
    parsed = parse(line)
    assert parsed.message == "e"
    assert parsed.fields == {"msg": orjson.loads(line)["msg"]}


def test_no_key_that_is_a_string_gives_an_empty_message_and_keeps_every_field() -> None:
    parsed = parse('{"msg":["a"],"event":{"kind":"x"},"n":1}')
    assert parsed == Parsed("", None, {"msg": ["a"], "event": {"kind": "x"}, "n": 1})


def test_the_timestamp_is_still_read_beside_msg() -> None:
    parsed = parse('{"@timestamp":"2026-12-04T16:38:29Z","msg":"m"}')
    assert parsed.message == "m"
    assert parsed.timestamp == datetime.datetime(2026, 12, 4, 16, 38, 29,
                                                 tzinfo=datetime.timezone.utc).timestamp()
    assert parsed.fields == {}


@pytest.mark.parametrize("schema", ["default", "ecs"])
def test_the_records_of_json_lines_carry_the_message_of_each_convention(schema: str) -> None:
    # JSON has no chunk path: every line goes through the parser and the general builder.
    builder = RecordBuilder(schema=schema, static_fields={}, max_bytes=1 << 20,
                            json_fields=True)
    records = InputRecords(parser=parse, builder=builder, format="json", key=None,
                           multiline=None)
    assert not records.chunked
    lines = [b'{"level":"INFO","msg":"from slog"}', b'{"event":"from structlog","n":1}',
             b'{"message":"from ecs-logging"}']
    offsets = [0, 35, 69, 101]
    assert records.of_lines(lines, offsets, path="/l/a.log", ino=7, source="s",
                            read_time=0.0) is None
    events = [Event(line, start, end)
              for line, start, end in zip(lines, offsets[:-1], offsets[1:], strict=True)]
    built = records.of_events(events, path="/l/a.log", ino=7, source="s", read_time=0.0)
    docs = [orjson.loads(value) for value in built.values]
    assert [d["message"] for d in docs] == ["from slog", "from structlog", "from ecs-logging"]
    assert all("msg" not in d for d in docs)
    if schema == "ecs":
        # structlog's "event" no longer collides with ECS's event object
        assert docs[1]["event"] == {"id": "s-23"} and docs[1]["n"] == 1
    else:
        assert "event" not in docs[1] and docs[1]["n"] == 1
    assert docs[0]["level"] == "INFO"
