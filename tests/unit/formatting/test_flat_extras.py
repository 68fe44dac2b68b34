"""The fast path for records whose extras are flat scalars (kafkalog.formatting.extras
.flat_extras, joined by kafkalog.formatting.plain): the same bytes as the dict path, and only
for the extras it can write as they are."""

from __future__ import annotations

import logging
import math
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_json import make_record

from kafkalog import context
from kafkalog.formatting import JsonFormatter, plain
from kafkalog.formatting.build import build_record
from kafkalog.formatting.extras import flat_extras
from kafkalog.formatting.plain import encode_plain
from kafkalog.formatting.redaction import DEFAULT_REDACT_KEYS, Redactor
from kafkalog.formatting.sanitize import json_default
from kafkalog.formatting.schema import DEFAULT_CORE, STD_ATTRS

_LOGRECORD_NAMES = frozenset(
    logging.LogRecord("n", logging.INFO, "p", 1, "m", None, None).__dict__) | {"message", "asctime"}
# Names an extra may have: plain ones, ones a redactor masks, core and static field names,
# a lone surrogate (orjson refuses it), and one that needs escaping.
_NAMES = st.sampled_from([
    "uid", "seq", "amount", "région", "k\n\"q", "db_password", "apiKey", "token2", "level",
    "host", "env", "extra_level", "bad\ud800", "user_id", "id",
]) | st.text(min_size=1, max_size=8).filter(
    # logging itself refuses an extra that would overwrite a LogRecord attribute.
    lambda name: name not in _LOGRECORD_NAMES)
_SCALARS = (
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats()
    | st.text(max_size=12)  # may hold a lone surrogate
)
_VALUES = _SCALARS | st.binary(max_size=4) | st.lists(_SCALARS, max_size=2) | st.dictionaries(
    st.sampled_from(["a", "password"]), _SCALARS, max_size=2)


@pytest.fixture(autouse=True)
def _fresh_call_sites() -> None:
    """Every record here comes from record_json's one call site: forget which took the dict
    path in an earlier test."""
    plain._dict_sites.clear()


def _utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _writable_as_is(name: Any, value: Any, reserved: frozenset[str],
                    redact: Redactor | None) -> bool:
    """What the fast path should take, worked out independently of it."""
    if type(name) is not str or name in STD_ATTRS or name in reserved or not _utf8(name):
        return False
    if redact is not None and redact.matches(name):
        return False
    t = type(value)
    if value is None or t is bool:
        return True
    if t is int:
        return -(2**63) <= value <= 2**64 - 1
    if t is float:
        return math.isfinite(value)
    return t is str and _utf8(value)


def _general(formatter: JsonFormatter, record: logging.LogRecord) -> tuple[bytes, str]:
    """The dict path's bytes for ``record``, and the id in them."""
    d, _ = build_record(formatter, record)
    return orjson.dumps(d, default=json_default), str(d["id"])


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    extras=st.dictionaries(_NAMES, _VALUES, min_size=1, max_size=5),
    static=st.dictionaries(st.sampled_from(["service", "env"]), st.text(max_size=5),
                           max_size=2),
    redacting=st.booleans(),
)
def test_flat_extras_are_encoded_as_their_dict_would_be(
    extras: dict[str, Any], static: dict[str, str], redacting: bool
) -> None:
    """Whenever the fast path writes a record, its bytes are the dict path's; and it writes
    exactly the records whose extras are all scalars it may pass to orjson as they are."""
    formatter = JsonFormatter(static_fields=static,
                              redact_keys=DEFAULT_REDACT_KEYS if redacting else None)
    tail = formatter._plain_tail
    assert tail is not None
    record = make_record("user %s did %d", ("u-42", 7), extra=extras)
    plain._dict_sites.clear()  # every example comes from the same call site
    for _ in range(2):  # the second time from the formatter's cache of names
        fast = encode_plain(formatter, record, tail)
        expected = all(_writable_as_is(k, v, formatter._reserved, formatter._redact)
                       for k, v in extras.items())
        assert (fast is not None) == expected
        if fast is not None:
            slow, slow_id = _general(formatter, record)
            fast_id = orjson.loads(fast)["id"]
            assert fast.replace(fast_id.encode(), slow_id.encode()) == slow
    # Through the public entry point, whichever path it takes, the bytes are those of a
    # formatter that always takes the dict path.
    dict_only = JsonFormatter(static_fields=static,
                              redact_keys=DEFAULT_REDACT_KEYS if redacting else None)
    dict_only._plain_tail = None
    out, slow = formatter.encode(record), dict_only.encode(record)
    out_id, slow_id = orjson.loads(out)["id"], orjson.loads(slow)["id"]
    assert out.replace(out_id.encode(), slow_id.encode()) == slow


def _formatter_and_tail(**kwargs: Any) -> tuple[JsonFormatter, bytes]:
    formatter = JsonFormatter(**kwargs)
    tail = formatter._plain_tail
    assert tail is not None
    return formatter, tail


def test_the_structured_keyed_record_takes_the_fast_path() -> None:
    formatter, tail = _formatter_and_tail(static_fields={"service": "billing"})
    record = make_record("user %s did %d", ("u-42", 3), extra={"uid": "u-42", "seq": 3})
    fast = encode_plain(formatter, record, tail)
    assert fast is not None
    doc = orjson.loads(fast)
    assert list(doc)[-3:] == ["service", "uid", "seq"]
    assert (doc["uid"], doc["seq"], doc["message"]) == ("u-42", 3, "user u-42 did 3")
    assert formatter._flat_keys == {"uid": True, "seq": True}


def test_extras_it_cannot_write_as_they_are_take_the_dict_path() -> None:
    formatter, tail = _formatter_and_tail()
    cases: list[tuple[dict[str, Any], str, Any]] = [
        ({"password": "hunter2"}, "password", "[REDACTED]"),
        ({"level": "custom"}, "extra_level", "custom"),
        ({"ratio": math.inf}, "ratio", "Infinity"),
        ({"big": 2**70}, "big", str(2**70)),
        ({"blob": b"ab"}, "blob", "ab"),
        ({"req": {"token": "t"}}, "req", {"token": "[REDACTED]"}),
        ({"text": "lone \ud800"}, "text", "lone \\ud800"),
        ({"kafkalog_id": "my-id"}, "id", "my-id"),  # the record's own id, not an extra
    ]
    for extra, name, written in cases:
        plain._dict_sites.clear()
        record = make_record(extra={"uid": "u", **extra})
        assert encode_plain(formatter, record, tail) is None, extra
        doc = orjson.loads(formatter.encode(record))
        assert (doc["uid"], doc[name]) == ("u", written), extra


def test_a_record_whose_standard_attribute_was_set_again_takes_the_dict_path() -> None:
    # The extras are then not simply the attributes after the standard ones.
    formatter, tail = _formatter_and_tail()
    record = make_record(extra={"uid": "u"})
    msecs = record.msecs
    del record.msecs
    record.msecs = msecs
    assert encode_plain(formatter, record, tail) is None
    assert orjson.loads(formatter.encode(record))["uid"] == "u"
    deleted = make_record(extra={"uid": "u", "seq": 1})
    del deleted.msecs
    assert flat_extras(deleted.__dict__, {}, frozenset(DEFAULT_CORE), None) is None
    assert orjson.loads(formatter.encode(deleted))["uid"] == "u"


def test_the_cache_of_names_is_bounded() -> None:
    formatter, tail = _formatter_and_tail()
    for i in range(5000):
        assert encode_plain(formatter, make_record(extra={f"k{i}": i}), tail) is not None
    assert 0 < len(formatter._flat_keys) <= 4096


def test_flat_extras_with_a_bound_field_take_the_dict_path() -> None:
    formatter, tail = _formatter_and_tail()
    record = make_record(extra={"uid": "u", "seq": 1})
    with context.bound(request_id="r-1"):
        assert encode_plain(formatter, record, tail) is None
        doc = orjson.loads(formatter.encode(record))
    assert (doc["uid"], doc["seq"], doc["request_id"]) == ("u", 1, "r-1")
    assert encode_plain(formatter, record, tail) is not None  # unbound again


def test_a_call_site_whose_extras_were_not_flat_keeps_the_dict_path() -> None:
    formatter, tail = _formatter_and_tail()
    plain._dict_sites.clear()
    assert encode_plain(formatter, make_record(extra={"req": {"a": 1}}), tail) is None
    flat = make_record(extra={"uid": "u"})  # the same call site
    assert encode_plain(formatter, flat, tail) is None
    assert orjson.loads(formatter.encode(flat))["uid"] == "u"
    plain._dict_sites.clear()
    assert encode_plain(formatter, flat, tail) is not None
