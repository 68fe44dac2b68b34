"""Pipeline.submit_many: records queued in order under one lock, numbered as submit() numbers
them, a prefix accepted when the queue fills, each overflow policy applied as submit() applies
it; and the queue's take() of a long head, which runs in C."""

from __future__ import annotations

import pytest

from kafkalog.pipeline import Pipeline
from kafkalog.pipeline.queue import ENTRY_OVERHEAD_BYTES, Entry, RecordQueue
from kafkalog.testing import MemoryTransport


def pipeline(transport: MemoryTransport, **options: object) -> Pipeline:
    return Pipeline("t", transport_factory=MemoryTransport.factory(transport), linger_ms=0,
                    **options)


def queue(*, policy: str = "drop_newest", max_records: int = 1000,
          max_bytes: int = 10**6) -> RecordQueue:
    return RecordQueue(max_records=max_records, max_bytes=max_bytes, batch_bytes=10**6,
                       policy=policy, block_timeout_s=0.0)


def values(count: int, first: int = 0) -> list[bytes]:
    return [b"r%d" % i for i in range(first, first + count)]


def test_submit_many_delivers_in_order_and_numbers_like_submit() -> None:
    transport = MemoryTransport()
    p = pipeline(transport)
    try:
        assert p.submit(b"a") == 1
        assert p.submit_many(values(3), [b"k0", None, b"k2"]) == (3, 4)
        assert p.submit_many(values(2, 3)) == (2, 6)
        assert p.submit(b"z") == 7
        assert p.flush(30.0)
        assert transport.records == [(b"a", None), (b"r0", b"k0"), (b"r1", None),
                                     (b"r2", b"k2"), (b"r3", None), (b"r4", None), (b"z", None)]
        assert p.resolved() == 7
    finally:
        p.close()


def test_submit_many_refuses_what_is_not_bytes_and_accepts_none_of_it() -> None:
    p = pipeline(MemoryTransport())
    try:
        with pytest.raises(TypeError):
            p.submit_many([b"ok", "text"])  # type: ignore[list-item]
        with pytest.raises(TypeError):
            p.submit_many([b"ok"], ["key"])  # type: ignore[list-item]
        with pytest.raises(ValueError):
            p.submit_many([b"a", b"b"], [None])
        assert p.accepted == 0
        assert p.submit_many([]) == (0, 0)
    finally:
        p.close()


def test_after_close_nothing_is_accepted_and_all_is_counted() -> None:
    p = pipeline(MemoryTransport())
    p.close()
    assert p.submit_many(values(4)) == (0, 0)
    assert p.stats()["dropped_after_close"] == 4


def test_a_full_queue_takes_the_prefix_that_fits_and_refuses_the_next_one() -> None:
    q = queue(max_records=5)
    assert q.put_many([(v, None) for v in values(3)]) == (3, 3)
    assert q.put_many([(v, None) for v in values(4, 3)]) == (2, 5)
    assert q.dropped_newest == 1  # the one refused; the one after it was not offered
    assert q.depth()[0] == 5


def test_the_byte_bound_cuts_the_prefix_too() -> None:
    size = 50 + ENTRY_OVERHEAD_BYTES
    q = queue(max_bytes=size * 3 + 10)
    entries: list[Entry] = [(b"x" * 50, None)] * 5
    assert q.put_many(entries) == (3, 3)
    assert q.depth() == (3, size * 3)


def test_drop_oldest_makes_room_and_accepts_everything() -> None:
    q = queue(policy="drop_oldest", max_records=4)
    assert q.put_many([(v, None) for v in values(6)]) == (6, 6)
    assert q.dropped_oldest == 2
    assert [value for value, _ in q.take(10, 10**6)] == values(4, 2)


def test_keys_count_against_the_byte_bound() -> None:
    q = queue(max_bytes=3 * (ENTRY_OVERHEAD_BYTES + 20))
    entries: list[Entry] = [(b"v" * 10, b"k" * 10)] * 4
    assert q.put_many(entries) == (3, 3)
    assert q.depth()[1] == 3 * (ENTRY_OVERHEAD_BYTES + 20)


def test_take_removes_a_long_head_within_both_bounds() -> None:
    q = queue(max_records=100)
    q.put_many([(v, None) for v in values(50)])
    batch = q.take(20, 10**6)
    assert [v for v, _ in batch] == values(20)
    size = len(b"r30") + ENTRY_OVERHEAD_BYTES
    batch = q.take(20, size * 5 + 1)
    assert [v for v, _ in batch] == values(5, 20)
    assert q.depth()[0] == 25
    assert q.removed == 25


def test_take_always_takes_one_record_even_if_it_alone_is_over_the_byte_bound() -> None:
    q = queue()
    q.put_many([(b"x" * 500, b"key"), (b"y", None)])
    assert q.take(1, 10) == [(b"x" * 500, b"key")]
    assert q.depth()[0] == 1
