"""``LogRecord.taskName`` (Python 3.12+: the asyncio task's name) is a standard attribute, never
an extra: it is not written by either schema, on the plain fast path or the dict path."""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any

import orjson
import pytest
from record_json import encode, make_record

from kafkalog.formatting import JsonFormatter
from kafkalog.formatting.plain import encode_plain

pytestmark = pytest.mark.skipif(
    sys.version_info < (3, 12), reason="LogRecord.taskName exists from Python 3.12 on"
)

_TASK = "ledger-sync"


def _keys(doc: Any, prefix: str = "") -> set[str]:
    """Every key of ``doc`` at any depth, as a dotted name."""
    if not isinstance(doc, dict):
        return set()
    out = set()
    for key, value in doc.items():
        out.add(f"{prefix}{key}")
        out |= _keys(value, f"{prefix}{key}.")
    return out


def _records_in_a_task() -> list[logging.LogRecord]:
    """A plain record and one with a list extra (so it takes the dict path), made inside an
    asyncio task named _TASK."""

    async def log() -> list[logging.LogRecord]:
        return [make_record("settled %d", (3,)), make_record("settled", extra={"batch": [7]})]

    async def main() -> list[logging.LogRecord]:
        return await asyncio.create_task(log(), name=_TASK)

    return asyncio.run(main())


def test_records_made_in_a_task_carry_its_name() -> None:
    # What the other tests rely on: the attribute is really there, with the task's name.
    for record in _records_in_a_task():
        assert record.taskName == _TASK


@pytest.mark.parametrize("schema", ["default", "ecs"])
def test_task_name_is_not_written_as_an_extra(schema: str) -> None:
    formatter = JsonFormatter(schema)
    plain, with_extras = _records_in_a_task()
    for record in (plain, with_extras):
        out = formatter.encode(record)
        assert b"taskName" not in out
        assert _TASK.encode() not in out
        assert not any("taskName" in key for key in _keys(orjson.loads(out)))
        assert "taskName" not in _keys(formatter.to_dict(record))
    assert encode(with_extras, formatter)["batch"] == [7]  # the real extra is written


def test_the_plain_record_takes_the_fast_path_and_the_other_the_dict_path() -> None:
    # So the test above covers both paths of the default schema.
    formatter = JsonFormatter()
    tail = formatter._plain_tail
    assert tail is not None
    plain, with_extras = _records_in_a_task()
    fast = encode_plain(formatter, plain, tail)
    assert fast is not None
    assert b"taskName" not in fast
    assert encode_plain(formatter, with_extras, tail) is None


def test_a_task_name_set_on_a_plain_record_keeps_it_plain() -> None:
    # Outside a task taskName is None; a record whose taskName a filter set afterwards is
    # still a plain record and writes no such field.
    formatter = JsonFormatter()
    tail = formatter._plain_tail
    assert tail is not None
    record = make_record("x")
    record.taskName = _TASK
    fast = encode_plain(formatter, record, tail)
    assert fast is not None
    assert _TASK.encode() not in fast
