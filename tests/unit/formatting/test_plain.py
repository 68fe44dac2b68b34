"""The plain-record fast path (kafkalog.formatting.plain): the same bytes as the dict path, and
only for records that are plain."""

from __future__ import annotations

import logging
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.sdk.trace import TracerProvider

from kafkalog import context
from kafkalog.formatting import JsonFormatter
from kafkalog.formatting.build import build_record
from kafkalog.formatting.plain import encode_plain

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
    assert encode_plain(formatter, made(extra={"user": "u"}), tail) is not None  # flat extras
    assert encode_plain(formatter, made(extra={"user": ["u"]}), tail) is None
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
