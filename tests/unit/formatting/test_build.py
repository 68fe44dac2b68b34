"""The record as its schema lays it out (kafkalog.formatting.build): field order, the message,
the exception and stack, and the ECS layout."""

from __future__ import annotations

import io
import logging
import os
import socket
import threading
from typing import Any

import orjson
from hypothesis import given
from hypothesis import strategies as st
from record_json import (
    ID_RE,
    TS_RE,
    encode,
    exc_info_of,
    make_record,
)

from kafkalog.formatting import ECS_VERSION, JsonFormatter

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


def test_a_log_record_subclass_getmessage_is_used() -> None:
    class Braces(logging.LogRecord):
        def getMessage(self) -> str:  # noqa: N802 - stdlib name
            return str(self.msg).format(*self.args)

    record = Braces("n", logging.INFO, "/p.py", 1, "user {} paid {}", ("u-1", 5), None)
    assert encode(record)["message"] == "user u-1 paid 5"


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
    assert doc["process"] == {
        "pid": os.getpid(),
        "name": record.processName,
        "thread": {"id": record.thread, "name": record.threadName},
    }
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


def test_ecs_process_object_follows_each_records_thread_and_process() -> None:
    # The "process" objects are shared between records of one thread (build.py caches them):
    # every record must still carry its own thread and process.
    formatter = JsonFormatter("ecs")
    here = make_record()
    docs: list[dict[str, Any]] = []
    worker = threading.Thread(target=lambda: docs.append(encode(make_record(), formatter)),
                              name="ecs-worker")
    worker.start()
    worker.join(10)
    renamed = make_record()
    renamed.threadName = "renamed"
    odd = make_record()
    odd.threadName = ["not", "hashable"]  # type: ignore[assignment]
    odd.processName = "child-3"
    first, theirs = encode(here, formatter), docs[0]
    assert first["process"]["thread"] == {"id": here.thread, "name": here.threadName}
    assert theirs["process"]["thread"] == {"id": worker.ident, "name": "ecs-worker"}
    assert encode(renamed, formatter)["process"]["thread"]["name"] == "renamed"
    assert encode(odd, formatter)["process"] == {
        "pid": os.getpid(), "name": "child-3",
        "thread": {"id": odd.thread, "name": ["not", "hashable"]},
    }
    assert encode(make_record(), formatter)["process"] == first["process"]
