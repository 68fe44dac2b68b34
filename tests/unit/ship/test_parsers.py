"""The line formats of the file agent (kafkalog.ship.parsers): finding a parser by name, raw
and JSON lines, the timestamps the formats write, the ECS names of the fields, and that no
parser raises whatever the line."""

from __future__ import annotations

import datetime
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalog.ship.formats_common import clf_epoch, iso_epoch, iso_epoch_by_regex, json_epoch
from kafkalog.ship.parsers import ECS_FIELDS, FORMATS, Parsed, parser_for, to_ecs


def epoch(*args: int, tz: datetime.tzinfo = datetime.timezone.utc) -> float:
    return datetime.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


# --------------------------------------------------------------------------- parser_for


def test_every_format_has_a_parser() -> None:
    assert FORMATS == ("raw", "json", "nginx", "apache", "syslog")
    for name in FORMATS:
        assert isinstance(parser_for(name)("x"), Parsed)


def test_an_unknown_format_is_a_value_error_naming_it() -> None:
    with pytest.raises(ValueError, match=r"'xml'.*raw, json, nginx, apache, syslog"):
        parser_for("xml")


# --------------------------------------------------------------------------- raw


def test_raw_keeps_the_line_as_the_message_with_no_fields() -> None:
    line = "2024-05-01 12:00:00 plain text \u0000 with a NUL and caf\u00e9 \ufffd"
    assert parser_for("raw")(line) == Parsed(line, None, {})


# --------------------------------------------------------------------------- json


def test_json_merges_the_keys_and_takes_message_and_timestamp() -> None:
    # as Elastic's ecs-logging-python writes a record
    line = (
        '{"@timestamp":"2024-05-01T12:00:00.123Z","log.level":"info","message":"order 42 paid",'
        '"ecs.version":"1.6.0","log":{"logger":"shop.orders"},"order_id":42}'
    )
    parsed = parser_for("json")(line)
    assert parsed.message == "order 42 paid"
    assert parsed.timestamp == pytest.approx(epoch(2024, 5, 1, 12, 0, 0) + 0.123)
    assert parsed.fields == {
        "log.level": "info", "ecs.version": "1.6.0", "log": {"logger": "shop.orders"},
        "order_id": 42,
    }
    assert parsed.error is None


def test_json_without_message_or_timestamp() -> None:
    parsed = parser_for("json")('{"user":"alice","level":"info"}')
    assert parsed == Parsed("", None, {"user": "alice", "level": "info"})


def test_json_message_that_is_not_a_string_is_written_as_json() -> None:
    assert parser_for("json")('{"message":{"a":[1,2]}}').message == '{"a":[1,2]}'
    assert parser_for("json")('{"message":404}').message == "404"


@pytest.mark.parametrize(
    ("stamp", "expected"),
    [
        ("1714564800", 1714564800.0),  # epoch seconds
        ("1714564800.25", 1714564800.25),
        ("1714564800123", 1714564800.123),  # epoch milliseconds, as Elasticsearch reads them
        ('"2024-05-01T14:00:00+02:00"', 1714564800.0),
        ('"2024-05-01 12:00:00"', 1714564800.0),  # no offset: UTC
    ],
)
def test_json_timestamp_forms(stamp: str, expected: float) -> None:
    parsed = parser_for("json")('{"@timestamp":' + stamp + ',"message":"m"}')
    assert parsed.timestamp == pytest.approx(expected)
    assert parsed.error is None
    assert "@timestamp" not in parsed.fields


def test_json_invalid_timestamp_is_an_error_and_the_rest_is_kept() -> None:
    parsed = parser_for("json")('{"@timestamp":"yesterday","message":"m","a":1}')
    assert parsed == Parsed("m", None, {"a": 1}, 'invalid @timestamp: "yesterday"')


@pytest.mark.parametrize(
    ("line", "error"),
    [
        ('{"message": "cut short', "invalid JSON: "),
        ("not json at all", "invalid JSON: "),
        ("[1, 2, 3]", "invalid JSON: not an object but list"),
        ('"a string"', "invalid JSON: not an object but str"),
        ("", "invalid JSON: "),
    ],
)
def test_json_that_is_not_an_object_keeps_the_line(line: str, error: str) -> None:
    parsed = parser_for("json")(line)
    assert parsed.message == line
    assert parsed.timestamp is None
    assert parsed.fields == {}
    assert parsed.error is not None and parsed.error.startswith(error)


def test_json_keeps_nul_and_replacement_characters() -> None:
    parsed = parser_for("json")('{"message":"a\\u0000b \ufffd"}')
    assert parsed.message == "a\x00b \ufffd"


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize("parse", [iso_epoch, iso_epoch_by_regex])
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2003-10-11T22:14:15.003Z", epoch(2003, 10, 11, 22, 14, 15) + 0.003),
        ("2003-08-24T05:14:15.000003-07:00", epoch(2003, 8, 24, 12, 14, 15) + 0.000003),
        ("2026-12-04T17:38:54.153633+00:00", epoch(2026, 12, 4, 17, 38, 54) + 0.153633),
        ("2024-02-29T23:59:59+05:30", epoch(2024, 2, 29, 18, 29, 59)),
        ("2024-05-01 12:00:00,5", epoch(2024, 5, 1, 12, 0, 0) + 0.5),
        ("2024-05-01T12:00Z", epoch(2024, 5, 1, 12, 0, 0)),
        ("2024-05-01", epoch(2024, 5, 1, 0, 0, 0)),
    ],
)
def test_iso_timestamps(parse: object, text: str, expected: float) -> None:
    assert callable(parse)
    assert parse(text) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("parse", [iso_epoch, iso_epoch_by_regex])
@pytest.mark.parametrize(
    "text", ["2023-02-29T00:00:00Z", "2024-13-01T00:00:00Z", "2024-05-01T25:00:00Z",
             "yesterday", "", "2024-05-01T12:00:00+25:00"],
)
def test_iso_timestamps_that_are_no_time(parse: object, text: str) -> None:
    assert callable(parse)
    assert parse(text) is None


def test_clf_timestamps() -> None:
    assert clf_epoch("10/Oct/2000:13:55:36 -0700") == epoch(2000, 10, 10, 20, 55, 36)
    assert clf_epoch("04/Dec/2026:17:40:02 +0000") == epoch(2026, 12, 4, 17, 40, 2)
    # the cache is by minute: another second of the same minute
    assert clf_epoch("04/Dec/2026:17:40:59 +0000") == epoch(2026, 12, 4, 17, 40, 59)
    for bad in ("31/Feb/2024:00:00:00 +0000", "04/Dez/2026:17:40:02 +0000",
                "04/Dec/2026:17:40:xx +0000", "04/Dec/2026:17:40:99 +0000", "-"):
        assert clf_epoch(bad) is None, bad


def test_json_epoch_scales_and_refuses_what_is_no_time() -> None:
    assert json_epoch(1714564800123456) == pytest.approx(1714564800.123456)  # microseconds
    assert json_epoch(1714564800123456789) == pytest.approx(1714564800.123456789)
    for bad in (True, None, [1], {"a": 1}, 10**400, float("nan"), float("inf"), 1e40):
        assert json_epoch(bad) is None, bad


# --------------------------------------------------------------------------- ECS


def test_ecs_names_of_every_field() -> None:
    assert ECS_FIELDS["client_ip"] == "source.address"
    assert ECS_FIELDS["protocol"] == "http.version"
    assert ECS_FIELDS["status"] == "http.response.status_code"
    assert ECS_FIELDS["bytes"] == "http.response.body.bytes"
    assert ECS_FIELDS["user_agent"] == "user_agent.original"
    assert ECS_FIELDS["facility"] == "log.syslog.facility.code"
    assert ECS_FIELDS["structured_data"] == "log.syslog.structured_data"
    assert ECS_FIELDS["msg_id"] == "event.code"
    assert ECS_FIELDS["level"] == "log.level"


def test_every_field_a_parser_emits_has_an_ecs_name() -> None:
    lines = {
        "nginx": '10.0.0.1 id bob [04/Dec/2026:17:40:02 +0000] "GET / HTTP/1.1" 200 5 "r" "ua"',
        "syslog": '<131>1 2026-12-04T17:38:54Z vm app 12 ID47 [a b="c"] m',
    }
    for name, line in lines.items():
        fields = parser_for(name)(line).fields
        assert fields and set(fields) <= set(ECS_FIELDS), name


def test_to_ecs_renames_and_converts_values() -> None:
    assert to_ecs({"protocol": "HTTP/1.1", "status": 200, "proc_id": 7}) == {
        "http.version": "1.1", "http.response.status_code": 200, "process.pid": 7,
    }
    assert to_ecs({"proc_id": "kworker"}) == {"log.syslog.procid": "kworker"}


# --------------------------------------------------------------------------- robustness


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FORMATS), st.text())
def test_no_parser_raises_on_any_text(name: str, line: str) -> None:
    parsed = parser_for(name)(line)
    assert isinstance(parsed.message, str)
    assert parsed.timestamp is None or math.isfinite(parsed.timestamp)
    assert parsed.error is None or isinstance(parsed.error, str)


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(FORMATS), st.binary())
def test_no_parser_raises_on_any_decoded_bytes(name: str, data: bytes) -> None:
    line = data.decode("utf-8", "replace")
    parsed = parser_for(name)(line)
    assert isinstance(parsed.message, str)
