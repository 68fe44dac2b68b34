"""The self-check of kafka-python's private API (kafkalog.transports.kafka_python_internals):
a changed internal turns the whole-batch hand-off off, and the transport then sends every record
through the public ``KafkaProducer.send()``, saying so once."""

from __future__ import annotations

import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kafka
import pytest
from kafka.future import Future
from kafka.partitioner.default import DefaultPartitioner
from kafka.producer.producer_batch import ProducerBatch
from kafka.producer.record_accumulator import RecordAccumulator

from kafkalog.config import HandlerConfig
from kafkalog.transports import bulk
from kafkalog.transports import kafka_python_internals as internals
from kafkalog.transports.kafka_python import KafkaPythonTransport


@pytest.fixture(autouse=True)
def fresh_self_check(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test finds the verdict anew and hears the once-per-process lines again."""
    monkeypatch.setattr(internals, "_verdict", [])
    monkeypatch.setattr(internals, "_said", set())
    monkeypatch.delenv(internals.PUBLIC_API_ENV, raising=False)
    yield


class FakeProducer:
    """A KafkaProducer with a real accumulator; flush() completes what it holds."""

    def __init__(self, **config: Any) -> None:
        self.config: dict[str, Any] = {"partitioner": DefaultPartitioner(),
                                       "max_request_size": 1 << 20, **config}
        self._accumulator = RecordAccumulator(batch_size=1 << 20)
        self._sender = types.SimpleNamespace(wakeup=lambda: None)
        self._metadata = types.SimpleNamespace(available_partitions_for_topic=lambda _: {0, 1, 2})
        self.sent: list[tuple[bytes, bytes | None]] = []

    def partitions_for(self, topic: str) -> set[int]:
        return {0, 1, 2}

    def send(self, topic: str, value: bytes, key: bytes | None, partition: int | None) -> Future:
        self.sent.append((value, key))
        return Future().success(None)

    def flush(self, timeout: float | None = None) -> None:
        for queue in self._accumulator._batches.values():
            while queue:
                batch = queue.popleft()
                batch.records.close()
                batch.complete(0, -1)


def transport_with(producer: FakeProducer) -> KafkaPythonTransport:
    transport = KafkaPythonTransport(HandlerConfig.given(None, "t", {}))
    transport._producer = producer
    return transport


RECORDS = [(b'{"i":%d}' % i, b"k%d" % (i % 4) if i % 3 else None) for i in range(40)]


def test_the_installed_kafka_python_passes_the_self_check() -> None:
    assert internals.process_verdict() is None


def test_batches_go_whole_to_a_kafka_python_that_passes() -> None:
    producer = FakeProducer()
    transport = transport_with(producer)
    assert transport.send(RECORDS, 5.0) == [None] * len(RECORDS)
    assert transport.bulk
    assert producer.sent == []


def _without_rebind(monkeypatch: pytest.MonkeyPatch) -> None:
    split = RecordAccumulator.split_and_reenqueue

    def split_forgetting_the_records(self: Any, batch: Any, now: Any = None) -> Any:
        batch._record_futures = []  # a kafka-python that no longer moves per-record futures
        return split(self, batch, now)

    monkeypatch.setattr(RecordAccumulator, "split_and_reenqueue", split_forgetting_the_records)


def _two_tuple_result(monkeypatch: pytest.MonkeyPatch) -> None:
    def complete(self: Any, base_offset: Any, timestamp_ms: Any, record_exceptions_fn: Any) -> None:
        self.produce_future.success((base_offset, timestamp_ms))  # no per-record errors any more

    monkeypatch.setattr(ProducerBatch, "_complete_future", complete)


def _new_batch_signature(monkeypatch: pytest.MonkeyPatch) -> None:
    init = ProducerBatch.__init__

    def new_init(self: Any, tp: Any, records: Any, now: Any, deadline_ms: int) -> None:
        init(self, tp, records, now)

    monkeypatch.setattr(ProducerBatch, "__init__", new_init)


def _moved_module(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bulk, "MISSING",
                        ModuleNotFoundError("No module named 'kafka.producer.producer_batch'"))


@pytest.mark.parametrize(("change", "said"), [
    (lambda mp: mp.delattr(RecordAccumulator, "_tp_lock"), "_tp_lock"),
    (_new_batch_signature, "TypeError"),
    (_without_rebind, "split batch were not moved"),
    (_two_tuple_result, "IndexError"),
    (_moved_module, "kafka.producer.producer_batch"),
], ids=["missing-attribute", "changed-signature", "split-without-rebind", "changed-result",
        "moved-module"])
def test_a_changed_private_api_makes_the_transport_use_the_public_send(
    monkeypatch: pytest.MonkeyPatch, warnings_heard: list[str], change: Any, said: str
) -> None:
    change(monkeypatch)
    assert said in (internals.process_verdict() or "")
    producer = FakeProducer()
    transport = transport_with(producer)
    for _ in range(3):
        assert transport.send(RECORDS, 5.0) == [None] * len(RECORDS)
        assert not transport.bulk
    assert producer.sent == RECORDS * 3  # every record, through send(), in order
    [warning] = warnings_heard  # one line, however many sends
    assert said in warning and "KafkaProducer.send()" in warning
    assert "Widening the kafka-python bound" in warning


@pytest.mark.parametrize("lacks", ["_sender", "_metadata", "_accumulator"])
def test_a_producer_without_a_part_the_hand_off_uses_gets_the_public_send(
    warnings_heard: list[str], lacks: str
) -> None:
    producer = FakeProducer()
    delattr(producer, lacks)
    assert not internals.hand_off_usable(producer)
    assert not internals.hand_off_usable(FakeProducer())  # the verdict holds for the process
    [warning] = warnings_heard
    assert f"KafkaProducer has no {lacks}" in warning


def test_an_accumulator_without_a_setting_the_hand_off_reads_is_refused(
    warnings_heard: list[str]
) -> None:
    producer = FakeProducer()
    del producer._accumulator.config["compression_attrs"]
    assert not internals.hand_off_usable(producer)
    assert "no compression_attrs" in warnings_heard[0]


def test_the_hand_off_is_used_only_with_kafka_pythons_defaults(
    warnings_heard: list[str]
) -> None:
    assert internals.hand_off_usable(FakeProducer())
    assert not internals.hand_off_usable(FakeProducer(partitioner=object()))
    assert not internals.hand_off_usable(FakeProducer(transactional_id="t"))
    assert not internals.hand_off_usable(FakeProducer(value_serializer=bytes))
    old = FakeProducer()
    old._accumulator.config["message_version"] = 1
    assert not internals.hand_off_usable(old)
    assert warnings_heard == []  # settings of the user's, not a changed kafka-python


@pytest.mark.parametrize(("value", "forced"), [
    ("1", True), ("true", True), ("YES", True), (" on ", True),
    ("0", False), ("", False), ("false", False), ("off", False),
])
def test_the_environment_variable_forces_the_public_send(
    monkeypatch: pytest.MonkeyPatch, warnings_heard: list[str], value: str, forced: bool
) -> None:
    monkeypatch.setenv(internals.PUBLIC_API_ENV, value)
    producer = FakeProducer()
    transport = transport_with(producer)
    assert transport.send(RECORDS, 5.0) == [None] * len(RECORDS)
    assert transport.bulk is not forced
    assert producer.sent == (RECORDS if forced else [])
    assert warnings_heard == ([f"kafka-python transport: sending record by record through "
                               f"KafkaProducer.send(), as ${internals.PUBLIC_API_ENV} asks"]
                              if forced else [])


def test_an_unknown_value_of_the_variable_is_ignored_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, warnings_heard: list[str]
) -> None:
    monkeypatch.setenv(internals.PUBLIC_API_ENV, "please")
    assert not internals.public_api_forced()
    assert warnings_heard == [f"${internals.PUBLIC_API_ENV}='please' is neither 1 nor 0: ignored"]


def test_a_hand_over_that_breaks_part_way_keeps_what_was_placed_and_retries_the_rest(
    monkeypatch: pytest.MonkeyPatch, warnings_heard: list[str]
) -> None:
    assert internals.process_verdict() is None  # the self-check passed: this comes later
    append = bulk.append_batch
    calls: list[int] = []

    def append_once(*args: Any) -> Any:
        calls.append(1)
        if len(calls) > 1:
            raise AttributeError("'RecordAccumulator' object has no attribute '_incomplete'")
        return append(*args)

    monkeypatch.setattr(bulk, "append_batch", append_once)
    producer = FakeProducer()
    transport = transport_with(producer)
    keyed = [(b"%d" % i, b"key-%d" % i) for i in range(30)]  # several partitions: batches
    results = transport.send(keyed, 5.0)
    assert transport.bulk
    handed = [i for i, r in enumerate(results) if r is None]
    retried = [i for i, r in enumerate(results) if r is not None]
    assert handed and retried
    assert all(r.retriable and "AttributeError" in str(r) for r in results if r is not None)
    # The next attempt (the worker's retry) takes the public path, and says why once.
    again = transport.send([keyed[i] for i in retried], 5.0)
    assert again == [None] * len(retried)
    assert not transport.bulk
    assert producer.sent == [keyed[i] for i in retried]
    [warning] = warnings_heard
    assert "handing a batch over raised AttributeError" in warning


def test_the_warning_quotes_the_bound_pyproject_sets() -> None:
    if sys.version_info >= (3, 11):
        import tomllib  # noqa: PLC0415
    else:
        import tomli as tomllib  # noqa: PLC0415
    pyproject = Path(__file__).resolve().parents[3] / "pyproject.toml"
    dependencies = tomllib.loads(pyproject.read_text(encoding="utf-8"))["project"]["dependencies"]
    assert f"kafka-python{internals.TESTED_VERSIONS}" in dependencies
    low, high = (tuple(int(n) for n in bound.lstrip("<>=").split("."))
                 for bound in internals.TESTED_VERSIONS.split(","))
    installed = tuple(int(n) for n in kafka.__version__.split(".")[:3])
    assert low <= installed < high, "the tests run a kafka-python outside the bound"
