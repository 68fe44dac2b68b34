"""Pipeline on its own, with an in-memory transport: numbers, the resolved watermark, and each
outcome reported truthfully (delivered, spilled once fsynced, dead-lettered, dropped)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from kafkalog import ConfigError, TransportError
from kafkalog.pipeline import Outcome, Pipeline
from kafkalog.testing import MemoryTransport


class Outcomes:
    """Collects what the pipeline's callback hears, by record number."""

    def __init__(self) -> None:
        self.by_number: dict[int, list[Outcome]] = {}
        self.calls = 0
        self.changed = threading.Condition()

    def __call__(self, outcome: Outcome, numbers: range) -> None:
        with self.changed:
            self.calls += 1
            for n in numbers:
                self.by_number.setdefault(n, []).append(outcome)
            self.changed.notify_all()

    def wait_for(self, predicate: Callable[[], bool], timeout_s: float = 30.0) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout_s)

    def final(self) -> dict[int, Outcome]:
        return {n: outcomes[-1] for n, outcomes in self.by_number.items()}


def make(transport: MemoryTransport, outcomes: Outcomes, **options: object) -> Pipeline:
    opts: dict[str, object] = {"topic": "t", "linger_ms": 0, "retry_backoff_ms": 1,
                               "retry_backoff_max_ms": 5, "spill_dir": None}
    opts.update(options)
    return Pipeline(transport_factory=MemoryTransport.factory(transport), on_outcome=outcomes,
                    **opts)  # type: ignore[arg-type]


def test_submit_numbers_records_and_every_one_is_reported_delivered() -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    pipeline = make(transport, outcomes)
    numbers = [pipeline.submit(b"v%d" % i, b"k" if i % 2 else None) for i in range(500)]
    assert numbers == list(range(1, 501))
    assert pipeline.flush(30.0)
    assert pipeline.resolved() == pipeline.accepted == 500
    assert outcomes.wait_for(lambda: len(outcomes.by_number) == 500)
    assert set(outcomes.final().values()) == {Outcome.DELIVERED}
    assert all(len(o) == 1 for o in outcomes.by_number.values()), "each reported once"
    assert outcomes.calls < 50, "reports come per run of records, not per record"
    assert transport.records[:2] == [(b"v0", None), (b"v1", b"k")]
    pipeline.close()
    assert pipeline.submit(b"late") == 0
    assert pipeline.stats()["dropped_after_close"] == 1


def test_spilled_is_reported_only_once_the_segment_is_fsynced(tmp_path: Path) -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    transport.fail_next = [TransportError("down", retriable=True)] * 10_000
    # A long fsync interval: only the worker's sync (on flush, or going idle) makes it durable.
    pipeline = make(transport, outcomes, spill_dir=str(tmp_path), spill_after_ms=0,
                    spill_fsync="interval", spill_fsync_interval_ms=600_000)
    synced = threading.Event()
    spill = pipeline._spill
    assert spill is not None
    real_sync = spill.sync

    def sync_and_note() -> None:
        real_sync()
        synced.set()

    spill.sync = sync_and_note  # type: ignore[method-assign]
    first = pipeline.submit(b"a")
    pipeline.submit(b"b")
    assert pipeline.wait(2, 30.0)
    assert synced.is_set(), "resolved only after an fsync"
    assert outcomes.wait_for(lambda: len(outcomes.by_number) == 2)
    assert outcomes.final() == {first: Outcome.SPILLED, first + 1: Outcome.SPILLED}
    assert pipeline.stats()["spilled"] == 2
    transport.fail_next.clear()
    pipeline.close()


def test_records_kafka_refuses_for_good_are_dead_lettered(tmp_path: Path) -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    refusal = TransportError("record too large", retriable=False)
    transport.fail_next = [refusal, refusal]  # the batch, then the confirming re-send
    pipeline = make(transport, outcomes, spill_dir=str(tmp_path))
    number = pipeline.submit(b"poison")
    assert not pipeline.flush(5.0), "a dead-lettered record makes flush() say so"
    assert outcomes.wait_for(lambda: number in outcomes.by_number)
    assert outcomes.final() == {number: Outcome.DEAD_LETTERED}
    assert pipeline.stats()["dead_letter_segment_records"] == 1
    pipeline.close()


def test_a_refused_record_that_cannot_be_kept_is_dropped() -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    refusal = TransportError("record too large", retriable=False)
    transport.fail_next = [refusal, refusal]
    pipeline = make(transport, outcomes)  # no spill dir, no dead-letter topic
    number = pipeline.submit(b"poison")
    pipeline.flush(30.0)
    assert outcomes.wait_for(lambda: number in outcomes.by_number)
    assert outcomes.final() == {number: Outcome.DROPPED}
    assert pipeline.stats()["failed"] == 1
    pipeline.close()


def test_overflow_drops_are_reported() -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    transport.gate = threading.Event()  # the worker holds its first batch until opened
    newest = make(transport, outcomes, queue_max_records=3, overflow_policy="drop_newest")
    numbers = [newest.submit(b"%d" % i) for i in range(10)]
    assert 0 in numbers, "a full queue refuses the newest record"
    assert newest.stats()["dropped_newest"] == numbers.count(0)
    transport.gate.set()
    assert newest.flush(30.0)
    newest.close()

    transport, outcomes = MemoryTransport(), Outcomes()
    transport.gate = threading.Event()
    oldest = make(transport, outcomes, queue_max_records=3, overflow_policy="drop_oldest")
    numbers = [oldest.submit(b"%d" % i) for i in range(10)]
    assert numbers == list(range(1, 11)), "drop_oldest accepts every record"
    transport.gate.set()
    assert not oldest.flush(5.0), "records were dropped since the last flush"
    assert oldest.resolved() == 10
    assert outcomes.wait_for(lambda: len(outcomes.by_number) == 10)
    final = outcomes.final()
    dropped = [n for n, o in final.items() if o is Outcome.DROPPED]
    assert len(dropped) == oldest.stats()["dropped_oldest"] > 0
    assert final[10] is Outcome.DELIVERED, "the newest record is kept"
    oldest.close()


def test_the_spill_cap_drops_and_says_so(tmp_path: Path) -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    transport.fail_next = [TransportError("down", retriable=True)] * 10_000
    pipeline = make(transport, outcomes, spill_dir=str(tmp_path), spill_after_ms=0,
                    spill_max_bytes=4096, spill_segment_bytes=4096,
                    spill_full_policy="drop_newest")
    for _ in range(20):  # one at a time: each is a batch of its own
        assert pipeline.wait(pipeline.submit(b"x" * 600), 30.0)
    assert outcomes.wait_for(lambda: len(outcomes.by_number) == 20)
    final = outcomes.final()
    spilled = [n for n, o in final.items() if o is Outcome.SPILLED]
    dropped = [n for n, o in final.items() if o is Outcome.DROPPED]
    assert spilled and dropped
    assert len(spilled) + len(dropped) == 20
    assert min(dropped) > max(spilled), "drop_newest keeps the oldest"
    stats = pipeline.stats()
    assert stats["spill_dropped"] == len(dropped)
    assert stats["spilled"] == len(spilled)
    transport.fail_next.clear()
    pipeline.close()


def test_a_record_dropped_from_the_spill_after_it_was_reported_spilled_is_reported_again(
    tmp_path: Path,
) -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    transport.fail_next = [TransportError("down", retriable=True)] * 10_000
    pipeline = make(transport, outcomes, spill_dir=str(tmp_path), spill_after_ms=0,
                    spill_max_bytes=6000, spill_segment_bytes=4096,
                    spill_full_policy="drop_oldest")
    first = pipeline.submit(b"x" * 1500)
    assert pipeline.wait(first, 30.0)
    assert outcomes.wait_for(lambda: outcomes.final().get(first) is Outcome.SPILLED)
    for _ in range(12):  # each needs room: the oldest segment goes
        pipeline.submit(b"y" * 1500)
    assert pipeline.wait(pipeline.accepted, 30.0)
    assert outcomes.wait_for(lambda: outcomes.by_number[first][-1] is Outcome.DROPPED)
    assert outcomes.by_number[first] == [Outcome.SPILLED, Outcome.DROPPED]
    assert pipeline.stats()["dropped_after_spilled"] >= 1
    transport.fail_next.clear()
    pipeline.close()


def test_handler_only_options_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match="'schema'"):
        Pipeline(topic="t", schema="ecs")
    with pytest.raises(ConfigError, match="linger_ms"):
        Pipeline(topic="t", linger_ms=-1)


def test_a_failing_callback_does_not_stop_delivery() -> None:
    transport = MemoryTransport()
    seen: list[range] = []

    def callback(outcome: Outcome, numbers: range) -> None:
        seen.append(numbers)
        raise RuntimeError("the producer's bug")

    pipeline = Pipeline(topic="t", linger_ms=0, spill_dir=None, on_outcome=callback,
                        transport_factory=MemoryTransport.factory(transport))
    for i in range(3):
        pipeline.submit(b"%d" % i)
        assert pipeline.flush(30.0)
    pipeline.close()
    assert len(transport.records) == 3
    assert sum(len(r) for r in seen) == 3


def test_submit_refuses_what_is_not_bytes_at_once() -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    pipeline = make(transport, outcomes)
    with pytest.raises(TypeError, match="takes bytes"):
        pipeline.submit("text")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="key str"):
        pipeline.submit(b"v", "k")  # type: ignore[arg-type]
    assert pipeline.accepted == 0
    assert pipeline.submit(b"v", b"k") == 1
    assert pipeline.flush(30.0)
    pipeline.close()
