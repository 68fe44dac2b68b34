"""``schema="ecs"`` against Elastic's own formatter (``ecs_logging.StdlibFormatter``): for the
same ``LogRecord``, every field ecs-logging writes is in kafkalog's record with the same value,
except the few that docs/record-schema.md lists as deliberately different, each checked here
for the difference it documents."""

from __future__ import annotations

import logging
import os
import pathlib
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from record_json import encode, exc_info_of, make_record

from kafkalog.formatting import JsonFormatter

if os.environ.get("CI") == "true":
    import ecs_logging  # in the `test` extra: missing under CI is a failure, not a skip
else:
    ecs_logging = pytest.importorskip("ecs_logging", reason="the `test` extra is not installed")

_SCHEMA_DOC = pathlib.Path(__file__).parents[3] / "docs" / "record-schema.md"


class LedgerError(Exception):
    """An application's own exception: its ECS ``error.type`` is where the two differ."""


def _raise_nested(exc: Exception) -> None:
    def inner() -> None:
        raise exc

    inner()


def _flat(doc: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``doc`` as dotted names to leaf values: the form Elasticsearch indexes both as, whether a
    formatter nests objects (``{"log": {"level": ...}}``) or writes dotted keys
    (``{"ecs.version": ...}``)."""
    out: dict[str, Any] = {}
    for key, value in doc.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            out.update(_flat(value, f"{name}."))
        else:
            out[name] = value
    return out


def _to_time(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")


def _same_instant(ours: dict[str, Any], theirs: str) -> None:
    # ecs-logging writes milliseconds (record.msecs, truncated); kafkalog microseconds
    # (rounded): the same instant to within a millisecond.
    delta = (_to_time(ours["@timestamp"]) - _to_time(theirs)).total_seconds()
    assert -1e-6 <= delta < 1e-3 + 1e-6, (ours["@timestamp"], theirs)


def _newer_ecs_version(ours: dict[str, Any], theirs: str) -> None:
    # kafkalog declares the ECS version whose field set it follows.
    assert ours["ecs.version"] == "8.11.0", theirs


def _message_once(ours: dict[str, Any], theirs: str) -> None:
    # log.original would be a second copy of `message`: kafkalog writes it once.
    assert "log.original" not in ours
    assert ours["message"] == theirs


def _qualified_type(ours: dict[str, Any], theirs: str) -> None:
    # ecs-logging writes the class's __name__; kafkalog names it as the traceback module does,
    # module-qualified outside builtins and __main__.
    kind = ours["error.type"]
    assert kind == theirs or kind.endswith(f".{theirs}"), (kind, theirs)


def _stack_trace(ours: dict[str, Any], theirs: str) -> None:
    if "error.type" not in ours:
        # stack_info without an exception: ecs-logging writes it as error.stack_trace,
        # kafkalog as log.origin.stack_trace (there is no error to describe).
        assert ours["log.origin.stack_trace"] == theirs
        assert "error.stack_trace" not in ours
        return
    # ecs-logging writes only the frames (traceback.format_tb); kafkalog the whole traceback
    # (Formatter.formatException): header, frames, the exception line and chained causes.
    assert theirs in ours["error.stack_trace"]
    assert ours["error.stack_trace"].startswith("Traceback (most recent call last):\n")


#: The fields ecs-logging writes that kafkalog deliberately writes differently, and how the two
#: values must relate. Each is listed, with its reason, in docs/record-schema.md.
DELIBERATE: dict[str, Callable[[dict[str, Any], str], None]] = {
    "@timestamp": _same_instant,
    "ecs.version": _newer_ecs_version,
    "log.original": _message_once,
    "error.type": _qualified_type,
    "error.stack_trace": _stack_trace,
}


def _both(record: logging.LogRecord) -> tuple[dict[str, Any], dict[str, Any]]:
    """(kafkalog's record, ecs-logging's), flattened. kafkalog formats first: ecs-logging
    writes ``message`` into ``record.__dict__``."""
    ours = _flat(encode(record, JsonFormatter("ecs")))
    theirs = _flat(ecs_logging.StdlibFormatter().format_to_ecs(record))
    return ours, theirs


def _assert_parity(record: logging.LogRecord) -> dict[str, Any]:
    ours, theirs = _both(record)
    for name, value in theirs.items():
        if name in DELIBERATE:
            DELIBERATE[name](ours, value)
            continue
        assert name in ours, f"ecs-logging writes {name!r}, kafkalog does not"
        assert ours[name] == value, name
    return ours


def test_a_plain_record_has_every_field_ecs_logging_writes() -> None:
    record = make_record("user %s logged in", ("u-1",))
    ours = _assert_parity(record)
    # The fields issue 18 found missing, with the record's own values.
    assert ours["process.name"] == record.processName
    assert ours["process.thread.id"] == record.thread
    assert ours["process.pid"] == os.getpid()


def test_extras_land_on_the_same_dotted_names() -> None:
    extra = {
        "user.id": "u-1",
        "http": {"request": {"method": "GET"}, "response": {"status_code": 503}},
        "count": 3,
        "ratio": 0.25,
        "tags": ["a", "b"],
        "enabled": True,
    }
    ours = _assert_parity(make_record("charged", extra=extra))
    assert ours["user.id"] == "u-1"
    assert ours["http.request.method"] == "GET"


@pytest.mark.parametrize("exc", [ValueError("bad amount"), LedgerError("overdrawn")],
                         ids=["builtin", "application"])
def test_an_exception_is_described_alike(exc: Exception) -> None:
    try:
        _raise_nested(exc)
    except Exception as caught:
        exc_info = exc_info_of(caught)
    ours = _assert_parity(make_record("charge failed", level=logging.ERROR, exc_info=exc_info))
    assert ours["error.message"] == str(exc)
    if type(exc) is ValueError:
        assert ours["error.type"] == "ValueError"  # the same value where both name it alike


def test_a_chained_exception_keeps_their_frames_and_adds_the_cause() -> None:
    try:
        try:
            raise KeyError("invoice")
        except KeyError as cause:
            raise LedgerError("lookup failed") from cause
    except LedgerError as caught:
        exc_info = exc_info_of(caught)
    ours = _assert_parity(make_record("charge failed", level=logging.ERROR, exc_info=exc_info))
    assert "KeyError: 'invoice'" in ours["error.stack_trace"]


def test_stack_info_without_an_exception_is_not_an_error() -> None:
    stack = "Stack (most recent call last):\n  File x"
    ours = _assert_parity(make_record("where am I", sinfo=stack))
    assert ours["log.origin.stack_trace"] == stack


def test_every_deliberate_difference_is_documented() -> None:
    text = _SCHEMA_DOC.read_text(encoding="utf-8")
    section = text.split("### Compared with ecs-logging", 1)[1].split("\n## ", 1)[0]
    for name in [*DELIBERATE, "log.origin.stack_trace"]:
        assert f"`{name}`" in section, name
