"""The bulk workers: retries with backoff, dead letters, abandoning."""

from __future__ import annotations

import queue
import threading

from sink_fakes import MemoryDeadLetters, MemoryOutput, record

from kafkalog.client.group import Partition
from kafkalog.sink.bulks import Backoff, Bulk, BulkWorkers
from kafkalog.sink.documents import Preparer
from kafkalog.sink.offsets import OffsetTracker
from kafkalog.sink.outputs import Refused, Retry
from kafkalog.sink.stats import SinkStats

P0 = Partition("logs", 0)


def make(output: MemoryOutput, letters: MemoryDeadLetters, *, on_invalid: str = "index",
         backoff_ms: int = 1) -> tuple[BulkWorkers, queue.SimpleQueue, SinkStats]:
    done: queue.SimpleQueue = queue.SimpleQueue()
    stats = SinkStats()
    workers = BulkWorkers(output, Preparer(None, on_invalid), letters, stats, workers=2,
                          backoff=Backoff(backoff_ms, backoff_ms * 4), on_done=done.put)
    return workers, done, stats


def bulk(values: list[bytes], first: int = 0) -> Bulk:
    records = [record(first + i, v) for i, v in enumerate(values)]
    span = OffsetTracker().dispatch(P0, first, first + len(values) - 1, len(values))
    return Bulk(P0, records, span)


def test_backoff_grows_is_capped_and_jittered() -> None:
    backoff = Backoff(100, 1000)
    assert backoff.delay_s(0, rand=lambda: 1.0) == 0.1
    assert backoff.delay_s(3, rand=lambda: 1.0) == 0.8
    assert backoff.delay_s(10, rand=lambda: 1.0) == 1.0
    assert backoff.delay_s(10, rand=lambda: 0.0) == 0.5


def test_a_store_outage_is_retried_until_the_bulk_is_written() -> None:
    output, letters = MemoryOutput(), MemoryDeadLetters()
    output.fail_next = 3
    workers, done, stats = make(output, letters)
    workers.submit(bulk([b'{"id":"a"}', b'{"id":"b"}']))
    finished = done.get(timeout=10)
    workers.close(timeout_s=5)
    assert finished.completed
    assert output.writes == 4
    assert set(output.docs) == {("", "a"), ("", "b")}
    assert stats["retried"] == 6 and stats["bulk_failures"] == 3 and stats["written"] == 2


def test_a_refused_document_is_dead_lettered_and_the_rest_is_written() -> None:
    output, letters = MemoryOutput(), MemoryDeadLetters()
    output.verdicts = {"bad": Refused("400 mapper_parsing_exception: x"), "slow": Retry("429")}
    workers, done, stats = make(output, letters)
    workers.submit(bulk([b'{"id":"ok"}', b'{"id":"bad"}', b'{"id":"slow"}']))
    assert done.get(timeout=10).completed
    workers.close(timeout_s=5)
    assert set(output.docs) == {("", "ok"), ("", "slow")}
    assert [(d.doc_id, reason) for d, reason in letters.letters] == [
        ("bad", "400 mapper_parsing_exception: x")]
    assert stats["dead_lettered"] == 1 and stats["written"] == 2


def test_a_record_not_json_goes_to_the_dead_letters_when_chosen() -> None:
    output, letters = MemoryOutput(), MemoryDeadLetters()
    workers, done, stats = make(output, letters, on_invalid="dead-letter")
    workers.submit(bulk([b"not json", b'{"id":"ok"}']))
    assert done.get(timeout=10).completed
    workers.close(timeout_s=5)
    assert list(output.docs) == [("", "ok")]
    assert [reason for _, reason in letters.letters] == ["not JSON"]
    assert stats["invalid"] == 1


def test_an_abandoned_bulk_stops_retrying_and_is_not_completed() -> None:
    output, letters = MemoryOutput(), MemoryDeadLetters()
    output.fail_next = 10**9
    workers, done, stats = make(output, letters, backoff_ms=50)
    b = bulk([b'{"id":"a"}'])
    workers.submit(b)
    retrying = threading.Event()
    for _ in range(200):
        if workers.retrying:
            retrying.set()
            break
        threading.Event().wait(0.01)
    assert retrying.is_set()
    workers.abandon({P0})
    finished = done.get(timeout=10)
    workers.close(timeout_s=5)
    assert finished is b and not finished.completed
    assert stats["abandoned"] == 1 and not output.docs
