"""Races between the worker thread and the callers that wake it, each forced deterministically
(a hook runs the caller's step at the exact point of the worker's where it would be lost):
a caller's request must never be slept through for a whole backoff or a connect timeout."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest
from race_hooks import HookOnClear, NoticingLock, run_aside

from kafkalog import TransportError
from kafkalog.pipeline import Pipeline
from kafkalog.pipeline import worker as worker_module
from kafkalog.pipeline.queue import RecordQueue
from kafkalog.testing import MemoryTransport
from kafkalog.transports import OutRecord, Transport

DOWN = TransportError("broker down", retriable=True, cause_name="Down")


class ConnectingTransport:
    """Kafka is down: the first send fails at once (``on_first`` runs then); each later one
    waits its whole timeout to connect, as kafka-python's does, unless ``hurried`` is set."""

    def __init__(self) -> None:
        self.hurried = HookOnClear()
        self.on_first: Callable[[], None] | None = None
        self.calls = 0

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        self.calls += 1
        if self.calls == 1 and self.on_first is not None:
            self.on_first()
        elif self.calls > 1:
            self.hurried.wait(timeout_s)
        return [DOWN] * len(records)

    def close(self, timeout_s: float) -> None:
        pass

    def interrupt(self) -> None:
        self.hurried.set()

    def disown(self) -> None:
        pass


def test_a_caller_hurrying_just_before_an_attempt_clears_hurried_is_not_waited_out(
    tmp_path: Path,
) -> None:
    # The worker decided "no caller waits" before clearing ``hurried``; a caller who arrived in
    # between set it, the clear lost it, and the send waited out its whole timeout to connect.
    transport = ConnectingTransport()

    def factory(_config: object, _hook: object) -> Transport:
        return transport

    pipeline = Pipeline("t", transport_factory=factory, spill_dir=str(tmp_path), linger_ms=0,
                        spill_after_ms=600_000, request_timeout_ms=600_000, retry_backoff_ms=1,
                        retry_backoff_max_ms=1, close_timeout_ms=2000)
    try:
        # Kafka is known down after the first send; the caller arrives as the second begins.
        transport.on_first = lambda: setattr(transport.hurried, "hook",
                                             lambda: pipeline.wait(1, timeout_s=0))
        assert pipeline.submit(b"r") == 1
        # (The ledger's own wait: pipeline.wait() would set ``hurried`` again.)
        assert pipeline._ledger.wait(1, 30.0), "the record waited out the connect timeout"
        assert not transport.hurried.armed()
        assert pipeline.stats()["spilled"] == 1
    finally:
        pipeline.close()


def test_a_flush_just_before_the_replay_sleep_clears_its_wakeup_is_not_slept_through(
    tmp_path: Path,
) -> None:
    # Replaying while Kafka is down, the worker spilled a new record (not fsynced yet: the
    # interval is long), checked that nobody waits for it, and a flush() landed before the
    # clear of the wake-up event: it waited out the backoff (a minute) for the fsync.
    transport = MemoryTransport()
    transport.fail_next = [DOWN] * 100_000
    pipeline = Pipeline("t", transport_factory=MemoryTransport.factory(transport),
                        spill_dir=str(tmp_path), linger_ms=0, spill_after_ms=0,
                        spill_fsync_interval_ms=600_000, retry_backoff_ms=60_000,
                        retry_backoff_max_ms=60_000, close_timeout_ms=600_000)
    wakeup = HookOnClear()
    pipeline._queue.wakeup = wakeup
    try:
        assert pipeline.wait(pipeline.submit(b"first"), 30.0)
        deadline = time.monotonic() + 30.0
        while not (pipeline.stats()["retries"] >= 1 and wakeup.waiting):
            assert time.monotonic() < deadline, "the worker did not start its replay backoff"
            time.sleep(0.01)  # polled, bounded: the worker runs on its own thread
        wakeup.hook = lambda: pipeline.wait(2, timeout_s=0)  # the flush, as the worker clears
        second = pipeline.submit(b"second")  # wakes the worker: it spills the record
        assert pipeline._ledger.wait(second, 30.0), "the flush was slept through"
        assert not wakeup.armed()
        assert pipeline.stats()["spilled"] == 2
    finally:
        pipeline.close()


class _HookedTarget(int):
    """A flush target whose comparison (as request_flush() reads it) first runs ``hook``."""

    hook: Callable[[], None] | None = None

    def __lt__(self, other: object) -> bool:
        hook, _HookedTarget.hook = _HookedTarget.hook, None
        if hook is not None:
            hook()
        return int(self) < other  # type: ignore[operator]


def test_two_flushes_at_once_never_lower_the_flush_target() -> None:
    # Two threads logging with sync_level (or a flush and a queue overflow) asked for flushes
    # at once: the one that read the target first wrote its smaller one back, and the other's
    # records then waited for linger_ms, or for spill_after_ms of retries while Kafka was down.
    pipeline = Pipeline("t", transport_factory=MemoryTransport.factory(MemoryTransport()))
    worker = pipeline._worker
    settled = threading.Event()  # the other flush is done, or waits for the first one's lock
    worker._flush_lock = NoticingLock(settled)  # type: ignore[attr-defined]
    others: list[threading.Thread] = []
    worker._flush_target = _HookedTarget(0)
    _HookedTarget.hook = lambda: others.append(run_aside(lambda: worker.request_flush(10),
                                                         settled))
    worker.request_flush(5)
    assert len(others) == 1
    others[0].join(30.0)
    assert not others[0].is_alive()
    assert worker._flush_target == 10
    pipeline.close()


def test_a_submit_that_passed_the_closed_check_before_close_is_refused_and_counted() -> None:
    # submit() checks ``closed`` and then puts into the queue. A close() that ran in between,
    # worker exit included, left that record in a queue nobody takes: accepted (a number came
    # back) but never resolved, and counted nowhere.
    transport = MemoryTransport()
    pipeline = Pipeline("t", transport_factory=MemoryTransport.factory(transport), linger_ms=0)
    assert pipeline.flush(30.0) and pipeline.submit(b"before") == 1
    pipeline.close()
    assert not pipeline._worker.alive
    late = pipeline._queue.put((b"late", None))  # the rest of a submit() that raced close()
    assert late == 0, "accepted by a queue that nobody takes from any more"
    assert pipeline.stats()["dropped"] == 1
    assert pipeline.resolved() == 1
    assert [value for value, _ in transport.records] == [b"before"]


def test_a_put_blocked_for_room_when_the_worker_stops_is_refused_at_once() -> None:
    # Under overflow_policy "block", a caller still waiting for room when the worker stops
    # for good gives up then (refused, counted), not after block_timeout_ms (here 10 minutes).
    queue = RecordQueue(max_records=1, max_bytes=1 << 20, batch_bytes=1 << 16, policy="block",
                        block_timeout_s=600.0)
    assert queue.put((b"queued", None)) == 1
    results: list[int] = []
    blocked = threading.Thread(target=lambda: results.append(queue.put((b"blocked", None))))
    blocked.start()
    deadline = time.monotonic() + 30.0
    while queue.counters()["blocked"] < 1:
        assert time.monotonic() < deadline, "the second put did not wait for room"
        time.sleep(0.01)  # polled, bounded: the caller runs on its own thread
    queue.refuse_more()
    blocked.join(30.0)
    assert not blocked.is_alive(), "the blocked put waited out block_timeout_ms"
    assert results == [0]
    assert queue.put((b"later", None)) == 0
    assert queue.counters()["dropped_newest"] == 2
    assert queue.take(10, 1 << 20) == [(b"queued", None)]


class _HookOnRelease:
    """A lock that runs ``hook`` once, just after its next release."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.hook: Callable[[], None] | None = None

    def __enter__(self) -> None:
        self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()


def test_a_first_submit_that_passed_the_closed_check_before_close_is_refused() -> None:
    # The same race before any record, the first submit() landing just after close() marked
    # the pipeline closed: no worker is started then, and the record would have waited in a
    # queue that has none.
    pipeline = Pipeline("t", transport_factory=MemoryTransport.factory(MemoryTransport()))
    state_lock = _HookOnRelease()
    pipeline._state_lock = state_lock  # type: ignore[assignment]
    late: list[int] = []

    def rest_of_a_first_submit() -> None:  # it found the pipeline open, and now goes on
        pipeline._start_worker()
        late.append(pipeline._queue.put((b"late", None)))

    state_lock.hook = rest_of_a_first_submit
    pipeline.close()
    assert late == [0], "accepted into a queue that no worker takes from"
    assert not pipeline._worker.alive
    assert pipeline.stats()["dropped"] == 1


def test_a_queue_overflow_just_before_the_idle_worker_clears_its_wakeup_is_replayed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # An idle worker looked at the spill (nothing), then a record larger than the whole queue
    # went to the spill from the caller's thread and set the wake-up, which the worker then
    # cleared: the record waited for the next idle timeout (here ten minutes) to be replayed.
    monkeypatch.setattr(worker_module, "IDLE_WAIT_S", 600.0)
    transport = MemoryTransport()
    pipeline = Pipeline("t", transport_factory=MemoryTransport.factory(transport),
                        spill_dir=str(tmp_path), linger_ms=0, queue_max_bytes=4096,
                        max_request_size=4096, close_timeout_ms=2000)
    wakeup = HookOnClear()
    pipeline._queue.wakeup = wakeup
    try:
        assert pipeline.wait(pipeline.submit(b"first"), 30.0)
        deadline = time.monotonic() + 30.0
        while not wakeup.waiting:
            assert time.monotonic() < deadline, "the worker did not go idle"
            time.sleep(0.01)  # polled, bounded: the worker runs on its own thread
        big: list[int] = []
        wakeup.hook = lambda: big.append(pipeline.submit(b"x" * 5000))  # overflows to disk
        wakeup.set()  # the idle loop turns once more: the overflow lands just before the clear
        deadline = time.monotonic() + 30.0
        while len(transport.records) < 2:
            assert time.monotonic() < deadline, "the spilled record waited for the idle timeout"
            time.sleep(0.01)  # polled, bounded: the worker runs on its own thread
        assert big == [2]
        assert [len(value) for value, _ in transport.records] == [5, 5000]
    finally:
        pipeline.close()
