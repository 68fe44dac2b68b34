"""Where a ``json`` line's time is: ``@timestamp``, else the first of ``timestamp``
(structlog), ``time`` (log/slog, logrus, pino, bunyan) and ``ts`` (zap) that holds a time; the
key used leaves the fields, and a key that holds no time stays one, with no error."""

from __future__ import annotations

import datetime
from typing import Any

import orjson
import pytest

from kafkalog.ship.building import InputRecords
from kafkalog.ship.multiline import Event
from kafkalog.ship.parsers import TIME_KEYS, parser_for
from kafkalog.ship.record import RecordBuilder

parse = parser_for("json")
NOON = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc).timestamp()


def test_the_keys_are_looked_for_in_this_order() -> None:
    assert TIME_KEYS == ("timestamp", "time", "ts")


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("time", "2026-12-04T13:00:00.000000000+01:00"),  # log/slog, nanoseconds and a zone
        ("time", "2026-12-04T12:00:00Z"),  # logrus, bunyan
        ("time", int(NOON * 1000)),  # pino: epoch milliseconds
        ("ts", NOON),  # zap's production encoder: epoch seconds
        ("ts", "2026-12-04T13:00:00.000+0100"),  # zap's ISO 8601 encoder
        ("timestamp", "2026-12-04T12:00:00.000000Z"),  # structlog's TimeStamper(fmt="iso")
        ("timestamp", int(NOON * 1_000_000_000)),  # epoch nanoseconds
    ],
)
def test_a_time_under_a_known_name_is_the_timestamp(name: str, value: Any) -> None:
    parsed = parse(orjson.dumps({"msg": "m", name: value, "level": "info"}).decode())
    assert parsed.timestamp == pytest.approx(NOON, abs=1e-6)
    assert parsed.fields == {"level": "info"}
    assert parsed.error is None


def test_at_timestamp_wins_and_the_other_names_stay_fields() -> None:
    parsed = parse(orjson.dumps({"@timestamp": NOON, "time": "2020-01-01T00:00:00Z",
                                 "ts": 1.6e9}).decode())
    assert parsed.timestamp == NOON
    assert parsed.fields == {"time": "2020-01-01T00:00:00Z", "ts": 1.6e9}


def test_timestamp_comes_before_time_and_ts() -> None:
    parsed = parse(orjson.dumps({"ts": 1.6e9, "time": 1.7e9, "timestamp": NOON}).decode())
    assert parsed.timestamp == NOON
    assert parsed.fields == {"ts": 1.6e9, "time": 1.7e9}


@pytest.mark.parametrize(
    "value",
    [0.35, 12, -5, "12ms", "yesterday", "16:38:29", True, None, [], {"s": 1}, 1e300, "",
     float("-0")],
)
def test_a_value_that_is_not_a_time_stays_a_field_without_an_error(value: Any) -> None:
    # nginx-style "time" (request time in seconds), a duration string, a time of day ...
    parsed = parse(orjson.dumps({"msg": "m", "time": value}).decode())
    assert parsed.timestamp is None
    assert parsed.fields == {"time": value}
    assert parsed.error is None


def test_the_next_name_is_tried_when_one_holds_no_time() -> None:
    parsed = parse(orjson.dumps({"msg": "m", "time": 0.35, "ts": NOON}).decode())
    assert parsed.timestamp == NOON
    assert parsed.fields == {"time": 0.35}


@pytest.mark.parametrize("schema", ["default", "ecs"])
def test_the_agents_record_carries_the_lines_time(schema: str) -> None:
    builder = RecordBuilder(schema=schema, static_fields={}, max_bytes=1 << 20,
                            json_fields=True)
    records = InputRecords(parser=parse, builder=builder, format="json", key=None,
                           multiline=None)
    line = b'{"time":"2026-12-04T13:00:00.250+01:00","level":"INFO","msg":"listening"}'
    built = records.of_events([Event(line, 0, len(line) + 1)], path="/l/a.log", ino=7,
                              source="s", read_time=1.0)
    doc = orjson.loads(built.values[0])
    assert doc["@timestamp"] == "2026-12-04T12:00:00.250000Z"
    assert "time" not in doc
    assert doc["message"] == "listening"
