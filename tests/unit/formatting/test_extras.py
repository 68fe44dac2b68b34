"""extra= fields (kafkalog.formatting.extras): written at the top level, found however the
record keeps its attributes, never overwriting a core, static or earlier field."""

from __future__ import annotations

import logging
import socket

from record_json import (
    ID_RE,
    encode,
    make_record,
)

from kafkalog.formatting import JsonFormatter


def test_extras_at_top_level_after_core() -> None:
    doc = encode(make_record(extra={"user": "bob", "count": 3, "ok": True, "none": None}))
    assert doc["user"] == "bob"
    assert doc["count"] == 3
    assert doc["ok"] is True
    assert doc["none"] is None
    assert list(doc)[-4:] == ["user", "count", "ok", "none"]


def test_extras_are_found_whatever_order_the_record_keeps_its_attributes_in() -> None:
    # The formatter's quick "no extras" test looks at the record's last attribute: records
    # whose standard attributes were set again after the extras, or that carry the
    # ``message`` a stdlib Formatter adds, must still have their extras written.
    reordered = make_record(extra={"user": "bob"})
    last = list(vars(reordered))[-2]  # the last standard attribute, before "user"
    value = getattr(reordered, last)
    delattr(reordered, last)
    setattr(reordered, last, value)
    assert list(vars(reordered))[-1] == last
    assert encode(reordered)["user"] == "bob"
    formatted = make_record("m %s", ("x",), extra={"user": "eve"})
    logging.Formatter().format(formatted)  # adds record.message
    assert encode(formatted)["user"] == "eve"
    rebuilt = logging.makeLogRecord({**vars(make_record()), "user": "ann"})
    assert encode(rebuilt)["user"] == "ann"
    plain = make_record()
    assert set(encode(plain)) == {
        "@timestamp", "level", "logger", "message", "module", "function", "line",
        "process", "thread_name", "host", "id",
    }


def test_extra_collisions_are_prefixed_not_overwritten() -> None:
    extra = {"level": "fake", "host": "evil", "id": "x", "extra_level": "explicit"}
    doc = encode(make_record(extra=extra))
    assert doc["level"] == "INFO"
    assert doc["host"] == socket.gethostname()
    assert ID_RE.match(doc["id"])
    assert doc["extra_level"] == "fake"
    assert doc["extra_host"] == "evil"
    assert doc["extra_id"] == "x"
    assert doc["extra_extra_level"] == "explicit"


def test_extra_cannot_overwrite_static_or_reserved_optional_fields() -> None:
    formatter = JsonFormatter(static_fields={"service": "billing"})
    doc = encode(
        make_record(extra={"service": "other", "exception": 1, "truncated": False}), formatter
    )
    assert doc["service"] == "billing"
    assert doc["extra_service"] == "other"
    assert doc["extra_exception"] == 1
    assert doc["extra_truncated"] is False
    assert "truncated" not in doc and "exception" not in doc


def test_non_string_extra_key() -> None:
    doc = encode(make_record(extra={5: "five", (1, 2): "pair"}))
    assert doc["5"] == "five"
    assert doc["(1, 2)"] == "pair"
