"""Unit tests for kafkalog.formatting.formatter: JSON layout, odd values, truncation, ids."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import decimal
import enum
import io
import logging
import math
import os
import re
import socket
import threading
import time
import tracemalloc
import uuid
from types import TracebackType
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from kafkalog import context
from kafkalog.formatting import ECS_VERSION, JsonFormatter, new_record_id
from kafkalog.formatting.build import build_record
from kafkalog.formatting.plain import encode_plain

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None]

TS_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
ID_RE = re.compile(r"^[0-9a-f]{16}-[0-9a-f]+$")
MARKER_RE = re.compile(r"\u2026\[truncated (\d+) bytes\]$")

_LOGGER = logging.getLogger("kafkalog.tests.formatter")


def make_record(
    msg: object = "hello",
    args: Any = None,
    *,
    level: int = logging.INFO,
    name: str = "app.component",
    extra: dict[Any, Any] | None = None,
    exc_info: Any = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    """Build a record the way Logger._log does (so extra= rules apply)."""
    return _LOGGER.makeRecord(
        name, level, "/src/app/component.py", 42, msg, args, exc_info, "handle", extra, sinfo
    )


def encode(record: logging.LogRecord, formatter: JsonFormatter | None = None) -> dict[str, Any]:
    out = (formatter or JsonFormatter()).encode(record)
    assert isinstance(out, bytes)
    out.decode("utf-8")  # strict: must be valid UTF-8
    doc = orjson.loads(out)
    assert isinstance(doc, dict)
    return doc


def encode_extra(value: Any, formatter: JsonFormatter | None = None) -> Any:
    return encode(make_record(extra={"v": value}), formatter)["v"]


def exc_info_of(exc: BaseException) -> ExcInfo:
    try:
        raise exc
    except BaseException as caught:
        return (type(caught), caught, caught.__traceback__)


# --------------------------------------------------------------------------- layout


def test_default_schema_fields_and_order() -> None:
    record = make_record("hello %s", ("world",))
    doc = encode(record)
    assert list(doc) == [
        "@timestamp",
        "level",
        "logger",
        "message",
        "module",
        "function",
        "line",
        "process",
        "thread_name",
        "host",
        "id",
    ]
    assert doc["level"] == "INFO"
    assert doc["logger"] == "app.component"
    assert doc["message"] == "hello world"
    assert doc["module"] == "component"
    assert doc["function"] == "handle"
    assert doc["line"] == 42
    assert doc["process"] == os.getpid()
    assert doc["thread_name"] == threading.current_thread().name
    assert doc["host"] == socket.gethostname()
    assert ID_RE.match(doc["id"])


def test_format_is_decoded_encode_and_works_with_stream_handler() -> None:
    formatter = JsonFormatter()
    record = make_record("x", extra={"kafkalog_id": "fixed"})
    assert formatter.format(record) == formatter.encode(record).decode("utf-8")

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    handler.handle(make_record("via handler"))
    line = stream.getvalue().strip()
    assert orjson.loads(line)["message"] == "via handler"


def test_to_dict_matches_encode() -> None:
    formatter = JsonFormatter(static_fields={"service": "billing"})
    record = make_record("m", extra={"kafkalog_id": "abc", "user": "bob"})
    assert orjson.loads(formatter.encode(record)) == formatter.to_dict(record)


def test_to_dict_never_raises_on_broken_record() -> None:
    record = make_record()
    del record.levelname
    result = JsonFormatter().to_dict(record)
    assert result["logger"] == "app.component"
    assert "could not be serialised" in result["message"]


def test_message_is_not_written_back_to_record() -> None:
    record = make_record("a %s", ("b",))
    encode(record)
    assert "message" not in record.__dict__


# --------------------------------------------------------------------------- timestamp


def test_timestamp_format_and_value() -> None:
    record = make_record()
    ts = encode(record)["@timestamp"]
    assert TS_RE.match(ts)
    expected = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
    parsed = datetime.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc
    )
    assert abs(parsed - expected) <= datetime.timedelta(microseconds=1)


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        (1795252397.123456, "2026-11-21T09:13:17.123456Z"),
        (1795252397.0, "2026-11-21T09:13:17.000000Z"),
        (1795252397.9999996, "2026-11-21T09:13:18.000000Z"),  # rounding carries
        (0.5, "1970-01-01T00:00:00.500000Z"),
        (1795252398.25, "2026-11-21T09:13:18.250000Z"),
    ],
)
def test_timestamp_values_and_second_cache(created: float, expected: str) -> None:
    formatter = JsonFormatter()
    # Prime the per-second cache with a different second first, then check
    # that it is refreshed rather than reused.
    primer = make_record()
    primer.created = 1000.0
    assert encode(primer, formatter)["@timestamp"] == "1970-01-01T00:16:40.000000Z"
    record = make_record()
    record.created = created
    assert encode(record, formatter)["@timestamp"] == expected
    assert encode(record, formatter)["@timestamp"] == expected  # cached second


def _reference_timestamp(created: float) -> str:
    """The timestamp rule spelled out: floor to the second, round to microseconds, carry."""
    sec = math.floor(created)
    us = round((created - sec) * 1_000_000)
    if us >= 1_000_000:
        sec, us = sec + 1, us - 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)) + f"{us:06d}Z"


@settings(max_examples=300)
@given(
    st.one_of(
        st.floats(min_value=-2e9, max_value=4e9, allow_nan=False),
        # Just below and above whole seconds, where rounding carries, and exact halves of a
        # microsecond (1/128 s is 7812.5 µs), where rounding goes to the even neighbour.
        st.integers(min_value=-(10**6), max_value=4 * 10**9).flatmap(
            lambda s: st.sampled_from(
                [s - 5e-7, s - 4e-7, s - 1e-9, float(s), s + 4e-7, s + 1 / 128, s + 3 / 128]
            )
        ),
    )
)
def test_timestamp_matches_the_rounding_rule_cached_or_not(created: float) -> None:
    formatter = JsonFormatter()
    expected = _reference_timestamp(created)
    record = make_record()
    record.created = created
    assert encode(record, formatter)["@timestamp"] == expected  # fills the second's cache
    assert encode(record, formatter)["@timestamp"] == expected  # from the cache
    neighbour = make_record()
    neighbour.created = created + 0.5  # may be the same second or the next one
    assert encode(neighbour, formatter)["@timestamp"] == _reference_timestamp(created + 0.5)


@pytest.mark.parametrize("created", [1795252397, decimal.Decimal("1795252397.25")])
def test_timestamp_of_a_created_that_is_not_a_float(created: object) -> None:
    record = make_record()
    record.created = created  # type: ignore[assignment]
    assert encode(record)["@timestamp"] == _reference_timestamp(created)  # type: ignore[arg-type]


def test_nonsense_created_falls_back_to_now() -> None:
    record = make_record("still shipped")
    record.created = float("nan")
    doc = encode(record)
    assert TS_RE.match(doc["@timestamp"])
    assert doc["@timestamp"].startswith(str(datetime.datetime.now(datetime.timezone.utc).year))


# --------------------------------------------------------------------------- message


def test_get_message_failure_keeps_template_and_never_raises() -> None:
    record = make_record("value=%d", ("x",))
    doc = encode(record)
    assert "value=%d" in doc["message"]
    assert "formatting failed" in doc["message"]
    assert "'x'" in doc["message"]
    assert doc["level"] == "INFO"


def test_non_string_msg() -> None:
    assert encode(make_record({"a": 1}))["message"] == "{'a': 1}"


@given(st.text())
def test_arbitrary_message_text_is_valid_json(text: str) -> None:
    doc = encode(make_record(text))
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        expected = text.encode("utf-8", "backslashreplace").decode("utf-8")
    else:
        expected = text
    assert doc["message"] == expected


def test_lone_surrogate_message_is_escaped() -> None:
    doc = encode(make_record("bad \ud800 char"))
    assert doc["message"] == "bad \\ud800 char"


# --------------------------------------------------------------------------- ids


def test_ids_unique_and_compact() -> None:
    ids = [new_record_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(ID_RE.match(i) for i in ids)
    assert len({i.split("-")[0] for i in ids}) == 1  # one prefix per process


def test_ids_count_up_in_hex_across_blocks() -> None:
    # Ids are made in blocks of 256; written out they must still be the counter in hex.
    counters = [int(new_record_id().split("-")[1], 16) for _ in range(600)]
    assert counters == list(range(counters[0], counters[0] + 600))
    assert all(ID_RE.match(new_record_id()) for _ in range(300))


def test_pre_assigned_id_is_used() -> None:
    assert encode(make_record(extra={"kafkalog_id": "pre-1"}))["id"] == "pre-1"
    ecs = encode(make_record(extra={"kafkalog_id": "pre-2"}), JsonFormatter("ecs"))
    assert ecs["event"]["id"] == "pre-2"
    assert "kafkalog_id" not in ecs


def test_non_string_pre_assigned_id_is_ignored() -> None:
    doc = encode(make_record(extra={"kafkalog_id": 7}))
    assert ID_RE.match(doc["id"])
    assert "kafkalog_id" not in doc


def test_ids_unique_across_threads() -> None:
    formatter = JsonFormatter()
    results: list[list[str]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(slot: list[str]) -> None:
        barrier.wait()
        for _ in range(2000):
            slot.append(orjson.loads(formatter.encode(make_record()))["id"])

    threads = [threading.Thread(target=work, args=(slot,)) for slot in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for slot in results for i in slot]
    assert len(all_ids) == 16000
    assert len(set(all_ids)) == 16000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_ids_unique_after_fork_and_host_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    formatter = JsonFormatter()
    before = new_record_id()
    # The child must recompute the hostname after fork; make it observable.
    monkeypatch.setattr(socket, "gethostname", lambda: "child-host")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            docs = [orjson.loads(formatter.encode(make_record())) for _ in range(100)]
            payload = orjson.dumps({"ids": [d["id"] for d in docs], "host": docs[0]["host"]})
            os.write(write_fd, payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as reader:
        chunks.append(reader.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = orjson.loads(b"".join(chunks))
    parent_ids = [before] + [new_record_id() for _ in range(100)]
    assert len(child["ids"]) == 100
    assert not set(child["ids"]) & set(parent_ids)
    assert child["ids"][0].split("-")[0] != before.split("-")[0]
    assert child["host"] == "child-host"
    # The parent keeps the hostname computed at import.
    assert encode(make_record())["host"] != "child-host"


# --------------------------------------------------------------------------- extras & static


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


def test_a_log_record_subclass_getmessage_is_used() -> None:
    class Braces(logging.LogRecord):
        def getMessage(self) -> str:  # noqa: N802 - stdlib name
            return str(self.msg).format(*self.args)

    record = Braces("n", logging.INFO, "/p.py", 1, "user {} paid {}", ("u-1", 5), None)
    assert encode(record)["message"] == "user u-1 paid 5"


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


def test_static_fields_default_schema() -> None:
    static: dict[str, Any] = {"service": "billing", "env": "prod", "tags": ["a"]}
    formatter = JsonFormatter(static_fields=static)
    static["env"] = "mutated later"
    static["tags"].append("b")
    doc = encode(make_record(extra={"user": "u"}), formatter)
    assert doc["service"] == "billing"
    assert doc["env"] == "prod"
    assert doc["tags"] == ["a"]
    keys = list(doc)
    assert keys.index("id") < keys.index("service") < keys.index("user")


def test_static_fields_are_sanitised_once() -> None:
    formatter = JsonFormatter(static_fields={"ratio": float("inf"), "big": 2**80})
    doc = encode(make_record(), formatter)
    assert doc["ratio"] == "Infinity"
    assert doc["big"] == str(2**80)


def test_static_field_validation() -> None:
    with pytest.raises(ValueError, match="level"):
        JsonFormatter(static_fields={"level": "x"})
    with pytest.raises(ValueError, match="log"):
        JsonFormatter("ecs", static_fields={"log": {}})
    with pytest.raises(TypeError):
        JsonFormatter(static_fields={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        JsonFormatter(static_fields=["service"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="environment"):
        JsonFormatter("ecs", static_fields={"env": "a", "environment": "b"})


@pytest.mark.parametrize("schema", ["", "json", "ECS", "Default"])
def test_invalid_schema(schema: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        JsonFormatter(schema)


@pytest.mark.parametrize("max_bytes", [0, -5, True, 1.5, "100"])
def test_invalid_max_bytes(max_bytes: Any) -> None:
    with pytest.raises(ValueError, match="max_bytes"):
        JsonFormatter(max_bytes=max_bytes)


# --------------------------------------------------------------------------- exceptions


class CustomError(Exception):
    pass


class UnprintableError(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")

    def __repr__(self) -> str:
        raise RuntimeError("no repr")


def test_exception_fields() -> None:
    record = make_record("failed", exc_info=exc_info_of(CustomError("boom")), level=logging.ERROR)
    doc = encode(record)
    exc = doc["exception"]
    assert exc["type"] == f"{CustomError.__module__}.CustomError"
    assert exc["message"] == "boom"
    assert exc["stacktrace"].startswith("Traceback (most recent call last):")
    assert "CustomError: boom" in exc["stacktrace"]
    assert "raise exc" in exc["stacktrace"]
    assert record.exc_text == exc["stacktrace"]  # cached like the stdlib does
    assert list(doc)[-1] == "exception"


def test_builtin_exception_type_is_unqualified() -> None:
    doc = encode(make_record(exc_info=exc_info_of(ValueError("v"))))
    assert doc["exception"]["type"] == "ValueError"


def test_cached_exc_text_is_used() -> None:
    record = make_record(exc_info=exc_info_of(ValueError("v")))
    record.exc_text = "cached trace"
    assert encode(record)["exception"]["stacktrace"] == "cached trace"


def test_exception_with_broken_str() -> None:
    doc = encode(make_record(exc_info=exc_info_of(UnprintableError())))
    assert doc["exception"]["type"].endswith("UnprintableError")
    assert doc["exception"]["message"] == "<unrepresentable UnprintableError>"
    assert "UnprintableError" in doc["exception"]["stacktrace"]


def test_exc_info_without_active_exception_is_omitted() -> None:
    doc = encode(make_record(exc_info=(None, None, None)))
    assert "exception" not in doc


def test_stack_info() -> None:
    doc = encode(make_record(sinfo="Stack (most recent call last):\n  File x"))
    assert doc["stack"] == "Stack (most recent call last):\n  File x"


def test_real_logger_exception_call() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("kafkalog.tests.formatter.real")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        try:
            raise KeyError("missing")
        except KeyError:
            logger.exception("lookup failed", extra={"key": "missing"})
    finally:
        logger.removeHandler(handler)
    doc = orjson.loads(stream.getvalue())
    assert doc["level"] == "ERROR"
    assert doc["key"] == "missing"
    assert doc["exception"]["type"] == "KeyError"
    assert doc["function"] == "test_real_logger_exception_call"


# --------------------------------------------------------------------------- ECS


def test_ecs_layout() -> None:
    formatter = JsonFormatter(
        "ecs", static_fields={"service": "billing", "env": "prod", "team": "payments"}
    )
    record = make_record(
        "hi %s",
        ("there",),
        level=logging.WARNING,
        extra={"user": {"id": 1}, "log": "collides"},
        exc_info=exc_info_of(CustomError("bad")),
        sinfo="Stack (most recent call last):",
    )
    doc = encode(record, formatter)
    assert TS_RE.match(doc["@timestamp"])
    assert doc["message"] == "hi there"
    assert doc["log"]["level"] == "warning"
    assert doc["log"]["logger"] == "app.component"
    assert doc["log"]["origin"] == {
        "file": {"name": "component.py", "line": 42},
        "function": "handle",
        "stack_trace": "Stack (most recent call last):",
    }
    assert doc["process"] == {"pid": os.getpid(), "thread": {"name": record.threadName}}
    assert doc["host"] == {"hostname": socket.gethostname()}
    assert ID_RE.match(doc["event"]["id"])
    assert doc["ecs"] == {"version": ECS_VERSION} == {"version": "8.11.0"}
    assert doc["service"] == {"name": "billing", "environment": "prod"}
    assert doc["team"] == "payments"
    assert doc["user"] == {"id": 1}
    assert doc["extra_log"] == "collides"
    assert doc["error"]["type"] == f"{CustomError.__module__}.CustomError"
    assert doc["error"]["message"] == "bad"
    assert "CustomError: bad" in doc["error"]["stack_trace"]
    for flat_name in ("level", "logger", "thread_name", "id", "exception", "stack"):
        assert flat_name not in doc


def test_ecs_service_mapping_static() -> None:
    formatter = JsonFormatter("ecs", static_fields={"service": {"name": "a", "version": "1.2"}})
    doc = encode(make_record(extra={"service": "x"}), formatter)
    assert doc["service"] == {"name": "a", "version": "1.2"}
    assert doc["extra_service"] == "x"


# --------------------------------------------------------------------------- odd values


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


class ReprAndStrFail:
    def __repr__(self) -> str:
        raise RuntimeError("repr")

    def __str__(self) -> str:
        raise RuntimeError("str")

    def __format__(self, spec: str) -> str:
        raise RuntimeError("format")


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


# --------------------------------------------------------------------------- truncation


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


# --------------------------------------------------------------------------- robustness


def test_broken_record_yields_minimal_record() -> None:
    record = make_record("partial", extra={"kafkalog_id": "rid"})
    del record.funcName
    doc = encode(record)
    assert doc["id"] == "rid"
    assert doc["level"] == "INFO"
    assert "could not be serialised" in doc["message"]
    assert doc["message"].endswith("partial")


def _nan_created() -> logging.LogRecord:
    record = make_record("m")
    record.created = float("nan")
    return record


@pytest.mark.parametrize(
    "make",
    [
        lambda: make_record("plain"),
        lambda: make_record("m", extra={"x": math.inf}),  # re-encoded after sanitising
        lambda: make_record("m", extra={"x": {1: "int key"}}),  # orjson refuses, then retries
        lambda: make_record("m", extra={"x": {1: math.nan}}),  # both
        lambda: make_record("y" * 5_000),  # truncated to max_bytes
        _nan_created,  # the minimal record
    ],
)
def test_encoded_bytes_own_only_their_length(make: Any) -> None:
    # orjson 3.12+ returns its output in a buffer of 4 KiB or more; encode() must hand back a
    # right-sized copy, or every queued record would pin that buffer.
    formatter = JsonFormatter(max_bytes=1_000)
    formatter.encode(make())  # fills the formatter's caches
    record = make()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        out = formatter.encode(record)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    orjson.loads(out)
    # The slack covers small allocations that outlive the call (a 200-byte tuple of _build's
    # shows up here on CPython 3.11); a pinned orjson buffer is 4 KiB or more.
    assert held < len(out) + 1024, f"{held} bytes held for a {len(out)}-byte record"


def test_not_a_record_at_all() -> None:
    out = JsonFormatter().encode(None)  # type: ignore[arg-type]
    doc = orjson.loads(out)
    assert "could not be serialised" in doc["message"]
    assert TS_RE.match(doc["@timestamp"])


def test_encode_is_thread_safe() -> None:
    formatter = JsonFormatter(max_bytes=2_000)
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(300):
                rec = make_record("m" * (i * 10), extra={"n": n, "f": math.pi})
                rec.created += i  # different seconds race on the timestamp cache
                doc = orjson.loads(formatter.encode(rec))
                expected = datetime.datetime.fromtimestamp(rec.created, datetime.timezone.utc)
                assert doc["@timestamp"].startswith(expected.strftime("%Y-%m-%dT%H:%M:%S"))
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_module_has_no_print_side_effects(capsys: pytest.CaptureFixture[str]) -> None:
    encode(make_record(extra={"bad": ReprAndStrFail()}))
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


def test_keyboard_interrupt_from_user_repr_is_not_swallowed() -> None:
    # Only Exception subclasses are absorbed; Ctrl-C must still reach the app.
    class Interrupting:
        def __repr__(self) -> str:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        JsonFormatter().encode(make_record(extra={"k": Interrupting()}))


# -- the plain-record path (JsonFormatter._encode_plain) ---------------------------------------

_texts = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=_texts, msg=_texts, args=st.tuples() | st.tuples(_texts, st.integers(-10**6, 10**6)),
    func=st.none() | _texts, lineno=st.integers(0, 10**6), thread_name=_texts,
    process=st.none() | st.integers(0, 2**31), level=st.sampled_from([10, 20, 30, 40, 50, 7]),
    static=st.dictionaries(st.sampled_from(["service", "env", "région", "k\n"]),
                           st.none() | _texts | st.integers() | st.booleans(), max_size=3),
)
def test_a_plain_record_is_encoded_as_its_dict_would_be(  # noqa: PLR0917 - hypothesis
    name: str, msg: str, args: tuple[Any, ...], func: str | None, lineno: int,
    thread_name: str, process: int | None, level: int, static: dict[str, Any],
) -> None:
    """The plain path writes the bytes that building the dict and dumping it would."""
    if args:  # a template for the args; a "%" in the text would be a directive
        msg = msg.replace("%", "%%") + " %s %d"
    formatter = JsonFormatter(static_fields=static)
    record = logging.LogRecord(name, level, "/srv/app/mod.py", lineno, msg, args, None,
                               func=func)
    record.process = process
    record.threadName = thread_name
    tail = formatter._plain_tail
    assert tail is not None
    fast = encode_plain(formatter, record, tail)
    assert fast is not None
    slow_dict, _ = build_record(formatter, record)
    slow = orjson.dumps(slow_dict)
    fast_id = orjson.loads(fast)["id"]
    assert fast.replace(fast_id.encode(), str(slow_dict["id"]).encode()) == slow


def test_records_that_are_not_plain_take_the_dict_path() -> None:
    formatter = JsonFormatter()
    tail = formatter._plain_tail
    assert tail is not None
    log = logging.getLogger("plain.check")

    def made(**kwargs: Any) -> logging.LogRecord:
        return log.makeRecord("plain.check", logging.INFO, "f.py", 1, "m %s", ("a",), None,
                              **kwargs)

    assert encode_plain(formatter, made(), tail) is not None
    assert encode_plain(formatter, made(extra={"user": "u"}), tail) is None
    assert encode_plain(formatter, made(sinfo="Stack (most recent call last):"), tail) is None
    bad = made()
    bad.args = (1, 2)  # "m %s" with two args: formatting fails
    assert encode_plain(formatter, bad, tail) is None
    assert b"message formatting failed" in formatter.encode(bad)
    surrogate = made()
    surrogate.msg, surrogate.args = "lone \ud800", ()
    assert encode_plain(formatter, surrogate, tail) is None
    assert orjson.loads(formatter.encode(surrogate))["message"].startswith("lone")
    small = JsonFormatter(max_bytes=120)
    long = made()
    long.args = ("x" * 500,)
    assert encode_plain(small, long, tail) is None
    assert orjson.loads(small.encode(long))["truncated"] is True
    assert JsonFormatter(schema="ecs")._plain_tail is None
    with context.bound(user="u-1"):
        assert encode_plain(formatter, made(), tail) is None
        assert orjson.loads(formatter.encode(made()))["user"] == "u-1"
    tracer = TracerProvider().get_tracer("kafkalog.test")
    with tracer.start_as_current_span("request"):
        assert encode_plain(formatter, made(), tail) is None
        assert "trace_id" in orjson.loads(formatter.encode(made()))
    assert encode_plain(formatter, made(), tail) is not None  # OpenTelemetry imported, no span
