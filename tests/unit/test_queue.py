"""RecordQueue: its bounds, and that it wakes the worker once per batch, not once per record."""

from __future__ import annotations

import threading

from kafkalog.pipeline.queue import ENTRY_OVERHEAD_BYTES, Entry, RecordQueue


class CountingEvent(threading.Event):
    """An Event that counts its set() calls."""

    def __init__(self) -> None:
        super().__init__()
        self.sets = 0

    def set(self) -> None:
        self.sets += 1
        super().set()


def make_queue(*, batch_bytes: int = 1000, policy: str = "drop_newest",
               max_records: int = 1000, max_bytes: int = 10**6) -> RecordQueue:
    q = RecordQueue(max_records=max_records, max_bytes=max_bytes, batch_bytes=batch_bytes,
                    policy=policy, block_timeout_s=0.0)
    q.wakeup = CountingEvent()
    return q


def entry(value_bytes: int = 100) -> Entry:
    return (b"v" * (value_bytes - ENTRY_OVERHEAD_BYTES), None)  # costs value_bytes


def sets(q: RecordQueue) -> int:
    assert isinstance(q.wakeup, CountingEvent)
    return q.wakeup.sets


def test_the_worker_is_woken_when_the_queue_fills_up_and_when_a_batch_is_full() -> None:
    q = make_queue(batch_bytes=1000)
    assert q.put(entry())
    assert sets(q) == 1  # no longer empty
    for _ in range(8):
        assert q.put(entry())
    assert sets(q) == 1  # 900 bytes: not a batch yet
    assert q.put(entry())
    assert sets(q) == 2  # 1000 bytes: a batch
    for _ in range(50):
        assert q.put(entry())
    assert sets(q) == 2  # not once per record
    assert q.accepted == 60
    assert q.depth() == (60, 6000)


def test_after_a_take_the_next_record_and_the_next_batch_wake_it_again() -> None:
    q = make_queue(batch_bytes=1000)
    for _ in range(20):
        q.put(entry())
    assert sets(q) == 2
    assert len(q.take(100, 10**6)) == 20
    q.batch_done()
    q.put(entry())
    assert sets(q) == 3  # empty again, then not
    for _ in range(9):
        q.put(entry())
    assert sets(q) == 4  # a batch again
    # A take that leaves a batch's worth behind: nothing new to cross, no wake-up needed;
    # one that leaves less: the next crossing wakes it.
    for _ in range(10):
        q.put(entry())
    assert len(q.take(5, 10**6)) == 5
    q.batch_done()
    q.put(entry())
    assert sets(q) == 4
    assert len(q.take(10, 10**6)) == 10
    q.batch_done()
    assert q.depth() == (6, 600)
    for _ in range(3):
        q.put(entry())
    assert sets(q) == 4
    q.put(entry())
    assert sets(q) == 5


def test_drop_oldest_keeps_the_bounds_and_rearms_the_wake_up() -> None:
    q = make_queue(batch_bytes=450, policy="drop_oldest", max_records=5)
    for _ in range(5):
        q.put(entry())
    assert sets(q) == 2  # first record, then 500 >= 450
    for _ in range(5):
        assert q.put(entry())
    assert q.depth() == (5, 500)
    assert q.dropped_oldest == 5
    assert q.accepted == 10
    assert q.removed == 5
    # Each drop brings the queue under a batch, and the record that follows crosses it again.
    assert sets(q) == 7


def test_drop_newest_refuses_what_does_not_fit_by_count_or_bytes() -> None:
    q = make_queue(max_records=3, max_bytes=1000)
    assert q.put(entry())
    assert q.put(entry())
    assert not q.put(entry(900))  # 1100 bytes would be over max_bytes
    assert q.put(entry())
    assert not q.put(entry())  # a fourth record
    assert q.depth() == (3, 300)
    assert q.accepted == 3
    assert q.dropped_newest == 2
