"""kafkalog.context: bound fields in every record, per thread and per task; OpenTelemetry ids."""

from __future__ import annotations

import asyncio
import contextvars
import logging
import re
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import orjson
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.trace import NonRecordingSpan, SpanContext, use_span

from kafkalog import JsonFormatter, KafkaHandler, context
from kafkalog.testing import MemoryTransport


def record(msg: str = "hello", **extra: Any) -> logging.LogRecord:
    rec = logging.LogRecord("ctx.test", logging.INFO, __file__, 1, msg, (), None)
    rec.__dict__.update(extra)
    return rec


def encode(rec: logging.LogRecord | None = None, **options: Any) -> dict[str, Any]:
    out: dict[str, Any] = orjson.loads(JsonFormatter(**options).encode(rec or record()))
    return out


def test_bind_adds_fields_until_reset() -> None:
    token = context.bind(request_id="r-1", user_id=7)
    try:
        doc = encode()
        assert doc["request_id"] == "r-1"
        assert doc["user_id"] == 7
        assert dict(context.current()) == {"request_id": "r-1", "user_id": 7}
    finally:
        token.reset()
    doc = encode()
    assert "request_id" not in doc
    assert "user_id" not in doc
    assert dict(context.current()) == {}


def test_bind_as_context_manager_and_rebinding_a_name() -> None:
    with context.bind(a=1):
        with context.bind(a=2, b=3):
            assert encode()["a"] == 2
            assert encode()["b"] == 3
        assert dict(context.current()) == {"a": 1}
    assert dict(context.current()) == {}


def test_bound_nests_and_restores_on_exception() -> None:
    with context.bound(outer="o") as fields:
        assert dict(fields) == {"outer": "o"}
        with pytest.raises(KeyError), context.bound(inner="i"):
            assert encode()["inner"] == "i"
            raise KeyError("boom")
        doc = encode()
        assert doc["outer"] == "o"
        assert "inner" not in doc
    assert dict(context.current()) == {}


def test_bound_binds_only_when_entered() -> None:
    later = context.bound(x=1)
    assert dict(context.current()) == {}
    with later:
        assert dict(context.current()) == {"x": 1}


def test_unbind_and_clear_are_undone_by_reset() -> None:
    with context.bound(a=1, b=2, c=3):
        with context.unbind("a", "not-bound"):
            assert dict(context.current()) == {"b": 2, "c": 3}
            with context.clear():
                assert dict(context.current()) == {}
                assert "b" not in encode()
            assert encode()["b"] == 2
        assert dict(context.current()) == {"a": 1, "b": 2, "c": 3}


def test_current_is_read_only_and_bindings_do_not_alias() -> None:
    with context.bound(a=1) as seen:
        with pytest.raises(TypeError):
            seen["a"] = 2  # type: ignore[index]
        with context.bound(b=2):
            pass
        assert dict(seen) == {"a": 1}  # a later binding made a new dict


def test_reset_twice_raises_like_contextvars() -> None:
    token = context.bind(a=1)
    token.reset()
    with pytest.raises(RuntimeError):
        token.reset()


def test_each_thread_has_its_own_fields() -> None:
    barrier = threading.Barrier(4, timeout=10)
    seen: dict[int, list[Any]] = {}

    def work(n: int) -> None:
        assert dict(context.current()) == {}  # nothing inherited from the main thread
        with context.bound(worker=n):
            barrier.wait()  # all four threads are bound at the same time
            seen[n] = [encode()["worker"] for _ in range(50)]
            barrier.wait()

    with context.bound(worker="main"):
        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        assert encode()["worker"] == "main"
    assert seen == {n: [n] * 50 for n in range(4)}


def test_copy_context_carries_fields_into_an_executor() -> None:
    with context.bound(job="nightly"), ThreadPoolExecutor(2) as pool:
        ctx = contextvars.copy_context()
        doc = pool.submit(ctx.run, encode).result(10)
        bare = pool.submit(encode).result(10)
    assert doc["job"] == "nightly"
    assert "job" not in bare


def test_each_asyncio_task_sees_its_own_fields() -> None:
    async def handle(n: int, start: asyncio.Event) -> list[Any]:
        out = []
        with context.bound(task=n):
            await start.wait()
            for _ in range(20):
                out.append(encode()["task"])
                await asyncio.sleep(0)  # let the other tasks run in between
        return out

    async def main() -> tuple[list[list[Any]], dict[str, Any]]:
        start = asyncio.Event()
        with context.bound(parent=True):
            tasks = [asyncio.create_task(handle(n, start)) for n in range(10)]
            start.set()
            results = await asyncio.gather(*tasks)
            return list(results), dict(context.current())

    results, parent = asyncio.run(main())
    assert results == [[n] * 20 for n in range(10)]
    assert parent == {"parent": True}  # the tasks' bindings never reached the parent


def test_child_task_inherits_fields_bound_before_it_was_created() -> None:
    async def child() -> dict[str, Any]:
        return encode()

    async def main() -> dict[str, Any]:
        with context.bound(request_id="r-9"):
            task = asyncio.create_task(child())
        return await task  # awaited after the parent's binding ended

    assert asyncio.run(main())["request_id"] == "r-9"


def test_fields_are_read_on_the_logging_thread_not_the_worker(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = KafkaHandler(topic="t", linger_ms=0, spill_dir=None,
                           transport_factory=MemoryTransport.factory(transport))
    logger.addHandler(handler)
    with context.bound(request_id="r-1"):
        logger.info("first")
    logger.info("second")
    assert handler.flush(30.0)
    by_msg = {m["message"]: m for m in transport.messages()}
    assert by_msg["first"]["request_id"] == "r-1"
    assert "request_id" not in by_msg["second"]


def test_key_option_uses_a_bound_field_when_the_record_has_none(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = KafkaHandler(topic="t", linger_ms=0, spill_dir=None, key="request_id",
                           transport_factory=MemoryTransport.factory(transport))
    logger.addHandler(handler)
    with context.bound(request_id="bound-1"):
        logger.info("bound")
        logger.info("extra wins", extra={"request_id": "extra-2"})
    logger.info("no key")
    assert handler.flush(30.0)
    assert [key for _value, key in transport.records] == [b"bound-1", b"extra-2", None]


# --------------------------------------------------------------------------- precedence


def test_standard_fields_are_never_overwritten_by_bound_fields() -> None:
    with context.bound(level="nope", id="mine", message="m", host="h"):
        doc = encode()
    assert doc["level"] == "INFO"
    assert doc["message"] == "hello"
    assert doc["extra_level"] == "nope"
    assert doc["extra_id"] == "mine"
    assert doc["extra_host"] == "h"


def test_static_and_extra_fields_win_over_bound_ones() -> None:
    with context.bound(service="ctx", uid="ctx-u", region="eu"):
        doc = encode(record(uid="call-u"), static_fields={"service": "billing"})
    assert doc["service"] == "billing"
    assert doc["extra_service"] == "ctx"
    assert doc["uid"] == "call-u"
    assert doc["extra_uid"] == "ctx-u"
    assert doc["region"] == "eu"
    keys = list(doc)
    assert keys.index("uid") < keys.index("region")  # bound fields come after the extras


def test_bound_field_equal_to_an_extra_is_not_repeated() -> None:
    with context.bound(request_id="r-1", level="INFO"):
        doc = encode(record(request_id="r-1"))
    assert doc["request_id"] == "r-1"
    assert "extra_request_id" not in doc
    assert "extra_level" not in doc


def test_bound_value_with_a_raising_eq_is_kept() -> None:
    class Odd:
        def __eq__(self, other: object) -> bool:
            raise RuntimeError("no")

        __hash__ = object.__hash__

        def __repr__(self) -> str:
            return "Odd()"

    with context.bound(thing=Odd()):
        doc = encode(record(thing="x"))
    assert doc["thing"] == "x"
    assert doc["extra_thing"] == "Odd()"


def test_bound_values_that_json_lacks_are_converted() -> None:
    with context.bound(ratio=float("nan"), tags={"a"}, big=2**70):
        doc = encode()
    assert doc["ratio"] == "NaN"
    assert doc["tags"] == ["a"]
    assert doc["big"] == str(2**70)


def test_bound_fields_under_ecs_go_to_the_top_level() -> None:
    with context.bound(request_id="r-1", log="clash"):
        doc = encode(schema="ecs")
    assert doc["request_id"] == "r-1"
    assert doc["log"]["level"] == "info"
    assert doc["extra_log"] == "clash"


def test_no_context_adds_nothing() -> None:
    doc = encode()
    assert set(doc) == {"@timestamp", "level", "logger", "message", "module", "function",
                        "line", "process", "thread_name", "host", "id"}


# --------------------------------------------------------------------------- OpenTelemetry


@pytest.fixture
def tracer() -> Any:
    # A provider of the test's own: the global one is left alone.
    return TracerProvider().get_tracer("kafkalog.test")


def test_active_span_adds_trace_and_span_ids(tracer: Any) -> None:
    with tracer.start_as_current_span("outer") as span:
        doc = encode()
        ecs = encode(schema="ecs")
    ctx = span.get_span_context()
    assert re.fullmatch(r"[0-9a-f]{32}", doc["trace_id"])
    assert re.fullmatch(r"[0-9a-f]{16}", doc["span_id"])
    assert int(doc["trace_id"], 16) == ctx.trace_id
    assert int(doc["span_id"], 16) == ctx.span_id
    assert ecs["trace"] == {"id": doc["trace_id"]}
    assert ecs["span"] == {"id": doc["span_id"]}
    assert "trace_id" not in encode()  # span ended


def test_nested_span_has_its_own_span_id_and_the_same_trace(tracer: Any) -> None:
    with tracer.start_as_current_span("outer"):
        outer = encode()
        with tracer.start_as_current_span("inner"):
            inner = encode()
    assert inner["trace_id"] == outer["trace_id"]
    assert inner["span_id"] != outer["span_id"]


def test_small_ids_are_zero_padded() -> None:
    span = NonRecordingSpan(SpanContext(trace_id=5, span_id=6, is_remote=False))
    with use_span(span):
        doc = encode()
    assert doc["trace_id"] == "0" * 31 + "5"
    assert doc["span_id"] == "0" * 15 + "6"


def test_invalid_span_adds_nothing() -> None:
    with use_span(NonRecordingSpan(SpanContext(trace_id=0, span_id=0, is_remote=False))):
        doc = encode()
    assert "trace_id" not in doc
    assert "span_id" not in doc


def test_extra_named_trace_id_does_not_overwrite_the_span(tracer: Any) -> None:
    with tracer.start_as_current_span("s"):
        doc = encode(record(trace_id="mine"))
    assert len(doc["trace_id"]) == 32
    assert doc["extra_trace_id"] == "mine"


def test_without_opentelemetry_imported_nothing_is_looked_up(
    tracer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with tracer.start_as_current_span("s"):
        monkeypatch.delitem(sys.modules, "opentelemetry.trace")
        assert context.trace_ids() is None
        assert "trace_id" not in encode()
        monkeypatch.undo()
        assert context.trace_ids() is not None


def test_broken_opentelemetry_never_breaks_logging(monkeypatch: pytest.MonkeyPatch) -> None:
    class Broken:
        def get_current_span(self) -> Any:
            raise RuntimeError("half imported")

    monkeypatch.setitem(sys.modules, "opentelemetry.trace", Broken())
    assert context.trace_ids() is None
    assert encode()["message"] == "hello"
