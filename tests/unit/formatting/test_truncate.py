"""max_bytes (kafkalog.formatting.truncate and .fallback): an oversized record is cut on UTF-8
boundaries, long fields and the largest extras first, else the minimal record is written."""

from __future__ import annotations

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_json import (
    MARKER_RE,
    encode,
    exc_info_of,
    make_record,
)

from kafkalog.formatting import ECS_VERSION, JsonFormatter


def _check_marker(message: str, original: str) -> str:
    match = MARKER_RE.search(message)
    assert match is not None
    kept = message[: match.start()]
    assert original.startswith(kept)
    assert len(kept.encode()) + int(match.group(1)) == len(original.encode())
    return kept


def test_five_megabyte_message_truncated_to_one_mebibyte() -> None:
    limit = 1024 * 1024
    original = ("0123456789abcdef" * 327_680)[: 5 * 1024 * 1024]
    formatter = JsonFormatter(max_bytes=limit)
    out = formatter.encode(make_record(original, extra={"user": "bob"}))
    assert len(out) <= limit
    assert len(out) > limit - 100  # used the space, did not throw the message away
    doc = orjson.loads(out)
    assert doc["truncated"] is True
    assert doc["user"] == "bob"
    kept = _check_marker(doc["message"], original)
    assert len(kept) > limit - 1000


def test_truncation_respects_utf8_boundaries() -> None:
    original = "é😀" * 300_000
    for limit in (1000, 1001, 1002, 1003, 5000):
        out = JsonFormatter(max_bytes=limit).encode(make_record(original))
        assert len(out) <= limit
        message = orjson.loads(out)["message"]
        assert "\ufffd" not in message
        _check_marker(message, original)


def test_truncation_with_escape_heavy_text() -> None:
    original = '"\\\n\x01' * 200_000
    out = JsonFormatter(max_bytes=4096).encode(make_record(original))
    assert len(out) <= 4096
    _check_marker(orjson.loads(out)["message"], original)


def test_small_record_is_not_marked_truncated() -> None:
    formatter = JsonFormatter(max_bytes=10_000)
    doc = encode(make_record("short"), formatter)
    assert "truncated" not in doc
    assert doc["message"] == "short"


def test_exception_and_stack_truncated_after_message() -> None:
    huge_exc = ValueError("e" * 200_000)
    record = make_record("m" * 50_000, exc_info=exc_info_of(huge_exc), sinfo="s" * 100_000)
    out = JsonFormatter(max_bytes=20_000).encode(record)
    assert len(out) <= 20_000
    doc = orjson.loads(out)
    assert doc["truncated"] is True
    assert MARKER_RE.search(doc["message"])
    assert MARKER_RE.search(doc["exception"]["stacktrace"])
    assert doc["exception"]["type"] == "ValueError"


def test_ecs_truncation_paths() -> None:
    record = make_record("m" * 50_000, exc_info=exc_info_of(ValueError("v" * 50_000)))
    out = JsonFormatter("ecs", max_bytes=8_000).encode(record)
    assert len(out) <= 8_000
    doc = orjson.loads(out)
    assert doc["truncated"] is True
    assert MARKER_RE.search(doc["error"]["stack_trace"])
    assert doc["log"]["level"] == "info"


def test_large_extras_are_truncated_largest_first() -> None:
    extra = {
        "blob": {"data": ["x" * 1000] * 200},
        "text": "t" * 50_000,
        "small": "keep me",
    }
    out = JsonFormatter(max_bytes=60_000).encode(make_record("short message", extra=extra))
    assert len(out) <= 60_000
    doc = orjson.loads(out)
    assert doc["truncated"] is True
    assert doc["message"] == "short message"  # short fields are not mangled for nothing
    assert doc["small"] == "keep me"
    assert isinstance(doc["blob"], str)
    assert doc["blob"].startswith('{"data":["xxx')
    assert MARKER_RE.search(doc["blob"])
    assert doc["text"] == "t" * 50_000  # fitting once the largest extra shrank


def test_minimal_record_when_nothing_fits() -> None:
    formatter = JsonFormatter(max_bytes=20)
    out = formatter.encode(make_record("x" * 1000, extra={"kafkalog_id": "the-id"}))
    doc = orjson.loads(out)
    assert set(doc) == {"@timestamp", "level", "logger", "id", "message", "truncated"}
    assert doc["id"] == "the-id"
    assert doc["truncated"] is True


def test_ecs_minimal_record_when_nothing_fits() -> None:
    doc = encode(make_record("y" * 1000), JsonFormatter("ecs", max_bytes=20))
    assert set(doc) == {"@timestamp", "message", "log", "event", "ecs", "truncated"}
    assert doc["log"] == {"level": "info", "logger": "app.component"}
    assert doc["ecs"]["version"] == ECS_VERSION


def test_max_bytes_can_be_set_after_construction() -> None:
    formatter = JsonFormatter()
    assert formatter.max_bytes is None
    record = make_record("z" * 10_000)
    assert len(formatter.encode(record)) > 10_000
    formatter.max_bytes = 2_000
    assert formatter.max_bytes == 2_000
    assert len(formatter.encode(record)) <= 2_000
    with pytest.raises(ValueError, match="max_bytes"):
        formatter.max_bytes = 0
    formatter.max_bytes = None
    assert len(formatter.encode(record)) > 10_000


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    limit=st.integers(min_value=230, max_value=3000),
    message=st.text(min_size=0, max_size=3000),
    extra=st.text(max_size=3000),
)
def test_truncation_always_fits_when_possible(limit: int, message: str, extra: str) -> None:
    record = make_record(message, extra={"blob": extra}, exc_info=exc_info_of(ValueError("x")))
    record.exc_text = "T" * 2000
    formatter = JsonFormatter(max_bytes=limit)
    untruncated = len(JsonFormatter().encode(record))
    out = formatter.encode(record)
    doc = orjson.loads(out)
    # 230 bytes always leave room for the minimal record, so it must fit.
    assert len(out) <= limit
    assert doc.get("truncated", False) is (untruncated > limit)
