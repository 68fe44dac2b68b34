"""The consumer loop: bulks per partition, commits after the store, pause, stop."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from sink_fakes import FakeConsumer, MemoryDeadLetters, MemoryOutput, record

from kafkalog.client.group import Partition
from kafkalog.sink import Sink, sink_config

P0, P1 = Partition("logs", 0), Partition("logs", 1)


def run_until(sink: Sink, condition: Callable[[], bool], timeout_s: float = 30.0) -> None:
    """Run ``sink`` on a thread until ``condition`` holds (bounded), then stop it."""
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,))
    thread.start()
    try:
        for _ in range(int(timeout_s / 0.01)):
            if condition():
                break
            threading.Event().wait(0.01)
    finally:
        stop.set()
        thread.join(timeout_s)
    assert not thread.is_alive()


def make_sink(records: list, output: MemoryOutput, before_poll: Any = None,
              **options: Any) -> tuple[Sink, list]:
    consumers: list[FakeConsumer] = []

    def factory(servers: Any, topics: Any, group: Any, *, listener: Any, **_: Any) -> Any:
        consumer = FakeConsumer(records, listener=listener, partitions={P0, P1})
        consumer.before_poll = before_poll
        consumers.append(consumer)
        return consumer

    config = sink_config({"topics": ["logs"], "group": "g", "to": "opensearch",
                          "commit_interval_ms": 10, "bulk_max_records": 3,
                          "max_in_flight_records": 6, **options})
    sink = Sink(config, output, dead_letters=MemoryDeadLetters(), consumer_factory=factory)
    return sink, consumers


def test_every_record_is_written_and_each_partition_commits_past_its_last() -> None:
    records = ([record(n, b'{"id":"p0-%d"}' % n) for n in range(10)]
               + [record(n, b'{"id":"p1-%d"}' % n, partition=1) for n in range(4)])
    output = MemoryOutput()
    sink, consumers = make_sink(records, output)
    run_until(sink, lambda: sink.stats()["written"] == 14)
    (consumer,) = consumers
    assert len(output.docs) == 14
    assert consumer.last_committed() == {P0: 10, P1: 4}
    assert consumer.closed and output.started and output.closed
    assert sink.stats()["read"] == 14


def test_nothing_is_committed_while_the_store_is_down_and_partitions_are_paused() -> None:
    records = [record(n, b'{"id":"%d"}' % n) for n in range(6)]
    output = MemoryOutput()
    output.fail_next = 10**9
    sink, consumers = make_sink(records, output, retry_backoff_ms=5,
                                retry_backoff_max_ms=20, shutdown_timeout_ms=100)
    run_until(sink, lambda: bool(consumers) and consumers[0].paused == {P0, P1}
              and output.writes >= 3)
    (consumer,) = consumers
    assert consumer.last_committed() == {}
    assert sink.stats()["retried"] >= 3
    assert not output.docs


def test_memory_is_bounded_by_records_in_flight_not_by_the_lag() -> None:
    records = [record(n, b'{"id":"%d"}' % n) for n in range(100)]
    output = MemoryOutput()
    gate = threading.Event()
    write = output.write

    def slow_write(docs: Any) -> Any:
        gate.wait(10)
        return write(docs)

    output.write = slow_write  # type: ignore[method-assign]
    sink, consumers = make_sink(records, output, bulk_workers=2, shutdown_timeout_ms=100)
    run_until(sink, lambda: bool(consumers) and bool(consumers[0].paused)
              and consumers[0].polls > 20)
    gate.set()
    assert sink.stats()["read"] <= 6 + 3  # max_in_flight_records, plus one poll's worth
    assert consumers[0].last_committed() == {}



def test_revoked_partitions_send_the_commit_of_what_was_written_and_are_forgotten() -> None:
    records = [record(n, b'{"id":"p0-%d"}' % n) for n in range(5)]
    output = MemoryOutput()
    revoked = threading.Event()

    def revoke_once_written(consumer: FakeConsumer) -> None:
        if not revoked.is_set() and len(output.docs) == 5:
            revoked.set()
            consumer.listener.revoked([P0])  # inside poll, as kafka-python does
            consumer.owned.discard(P0)

    sink, consumers = make_sink(records, output, before_poll=revoke_once_written)
    run_until(sink, revoked.is_set)
    (consumer,) = consumers
    assert consumer.async_commits == [{P0: 5}]
    assert P0 not in consumer.last_committed()  # forgotten: the stop commits nothing for it


def test_an_unexpected_error_in_a_bulk_worker_stops_the_sink_instead_of_stalling() -> None:
    output = MemoryOutput()

    def broken(docs: Any) -> Any:
        raise ZeroDivisionError("a bug")

    output.write = broken  # type: ignore[method-assign]
    sink, consumers = make_sink([record(0, b'{"id":"a"}')], output)
    with pytest.raises(ZeroDivisionError):
        sink.run(threading.Event())
    assert consumers[0].closed and consumers[0].last_committed() == {}
