"""Odd values (kafkalog.formatting.sanitize): whatever an extra holds, the output is valid JSON
that keeps as much of it as it can."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from record_json import (
    ReprAndStrFail,
    encode,
    encode_extra,
    make_record,
)

from kafkalog.formatting import JsonFormatter


class Color(enum.Enum):
    RED = "red"
    PRICE = decimal.Decimal("1.10")


class Level(enum.IntEnum):
    HIGH = 3


@dataclasses.dataclass
class Point:
    x: int
    y: Any
    _private: int = 0


Pair = collections.namedtuple("Pair", ["left", "right"])


class Opaque:
    def __repr__(self) -> str:
        return "<Opaque thing>"


class ReprFails:
    def __repr__(self) -> str:
        raise RuntimeError("repr")


class SurrogateRepr:
    def __repr__(self) -> str:
        return "sur\udc80rogate"


UUID_VALUE = uuid.UUID("12345678-1234-5678-1234-567812345678")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (datetime.datetime(2026, 1, 2, 3, 4, 5, 6), "2026-01-02T03:04:05.000006"),
        (
            datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
            "2026-01-02T03:04:05+00:00",
        ),
        (datetime.date(2026, 1, 2), "2026-01-02"),
        (datetime.time(3, 4, 5), "03:04:05"),
        (
            decimal.Decimal("3.14159265358979323846264338327950288"),
            "3.14159265358979323846264338327950288",
        ),
        (UUID_VALUE, "12345678-1234-5678-1234-567812345678"),
        (Color.RED, "red"),
        (Color.PRICE, "1.10"),
        (Level.HIGH, 3),
        (b"caf\xc3\xa9 \xff", "café \\xff"),
        (bytearray(b"abc"), "abc"),
        (memoryview(b"mv"), "mv"),
        (2**64, "18446744073709551616"),
        (-(2**63) - 1, "-9223372036854775809"),
        (2**64 - 1, 2**64 - 1),
        (float("inf"), "Infinity"),
        (float("-inf"), "-Infinity"),
        (float("nan"), "NaN"),
        (1.5, 1.5),
        ((1, "a", None), [1, "a", None]),
        (Point(1, decimal.Decimal("2.5")), {"x": 1, "y": "2.5"}),
        (Pair(1, 2), {"left": 1, "right": 2}),
        (Opaque(), "<Opaque thing>"),
        (ReprAndStrFail(), "<unrepresentable ReprAndStrFail>"),
        (SurrogateRepr(), "sur\\udc80rogate"),
        ("x\ud800y", "x\\ud800y"),
        (
            {1: "a", None: "b", 2.5: "c", False: "d"},
            {"1": "a", "null": "b", "2.5": "c", "false": "d"},
        ),
        ({(1, 2): "t"}, {"(1, 2)": "t"}),
        ({"k\udfff": 1}, {"k\\udfff": 1}),
        ({"nested": [float("nan"), {"d": decimal.Decimal("1")}]}, {"nested": ["NaN", {"d": "1"}]}),
        ([2**100, "\udc00"], [str(2**100), "\\udc00"]),
    ],
    ids=lambda v: type(v).__name__,
)
def test_odd_values(value: Any, expected: Any) -> None:
    assert encode_extra(value) == expected


def test_repr_failure_falls_back_to_str() -> None:
    class StrOnly(ReprFails):
        def __str__(self) -> str:
            return "from str"

    assert encode_extra(StrOnly()) == "from str"


def test_sets_become_lists() -> None:
    assert sorted(encode_extra({3, 1, 2})) == [1, 2, 3]
    assert encode_extra(frozenset({"a"})) == ["a"]
    assert sorted(encode_extra({2**70, 1}), key=str) == [1, str(2**70)]  # walked path


def test_nan_next_to_real_none_is_distinguished() -> None:
    doc = encode(make_record(extra={"a": None, "b": [float("nan"), None]}))
    assert doc["a"] is None
    assert doc["b"] == ["NaN", None]


def test_unrepresentable_value_among_good_ones() -> None:
    doc = encode(make_record(extra={"bad": ReprAndStrFail(), "good": 1, "big": 2**65}))
    assert doc["bad"] == "<unrepresentable ReprAndStrFail>"
    assert doc["good"] == 1
    assert doc["big"] == str(2**65)


def test_cyclic_structures() -> None:
    lst: list[Any] = [1]
    lst.append(lst)
    dct: dict[str, Any] = {}
    dct["a"] = dct
    dct["b"] = dct  # branching cycle: must not explode exponentially
    doc = encode(make_record(extra={"lst": lst, "dct": dct}))
    assert doc["lst"] == [1, "<cycle: list>"]
    assert doc["dct"] == {"a": "<cycle: dict>", "b": "<cycle: dict>"}


def test_deep_nesting_is_bounded() -> None:
    deep: list[Any] = []
    node = deep
    for _ in range(5000):
        child: list[Any] = []
        node.append(child)
        node = child
    value = encode_extra(deep)
    depth = 0
    while isinstance(value, list):
        value = value[0]
        depth += 1
    assert isinstance(value, str) and value.startswith("<max depth")
    assert depth < 40


def test_shared_non_cyclic_references_are_kept() -> None:
    shared = {"k": 2**70}
    assert encode_extra([shared, shared]) == [{"k": str(2**70)}, {"k": str(2**70)}]


json_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.binary(),
    st.decimals(allow_nan=True, allow_infinity=True),
    st.datetimes(timezones=st.none() | st.just(datetime.timezone.utc)),
    st.uuids(),
    st.sampled_from([Color.RED, Color.PRICE, Level.HIGH]),
    st.builds(Opaque),
    st.builds(ReprAndStrFail),
)


nested_values = st.recursive(
    json_leaves,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.frozensets(st.integers() | st.text(max_size=3), max_size=3),
        st.dictionaries(st.text(max_size=5) | st.integers() | st.none(), children, max_size=4),
    ),
    max_leaves=20,
)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(value=nested_values, key=st.text(min_size=1, max_size=8), message=st.text())
def test_arbitrary_values_always_produce_valid_json(value: Any, key: str, message: str) -> None:
    record = make_record(message, extra={"x_" + key: value})
    for formatter in (JsonFormatter(), JsonFormatter("ecs")):
        doc = encode(record, formatter)
        assert "@timestamp" in doc
        assert any(k.startswith("x_") for k in doc)
    limited = JsonFormatter(max_bytes=300).encode(record)
    assert len(limited) <= 300
    assert "@timestamp" in orjson.loads(limited)
