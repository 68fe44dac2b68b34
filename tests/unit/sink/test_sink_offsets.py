"""The commit point: the highest contiguous acknowledged offset of each partition."""

from __future__ import annotations

from kafkalog.client.group import Partition
from kafkalog.sink.offsets import OffsetTracker

P0 = Partition("logs", 0)
P1 = Partition("logs", 1)


def test_a_later_bulk_acknowledged_first_does_not_move_the_commit_point() -> None:
    tracker = OffsetTracker()
    first = tracker.dispatch(P0, 0, 9, 10)
    second = tracker.dispatch(P0, 10, 19, 10)
    tracker.acknowledge([second])
    assert tracker.to_commit() == {}
    assert tracker.pending(P0) == 10
    tracker.acknowledge([first])
    assert tracker.to_commit() == {P0: 20}
    assert tracker.pending() == 0


def test_offsets_with_gaps_commit_past_the_last_record_of_the_span() -> None:
    tracker = OffsetTracker()
    span = tracker.dispatch(P0, 5, 40, 3)  # transaction markers between the records
    tracker.acknowledge([span])
    assert tracker.to_commit() == {P0: 41}


def test_partitions_move_independently_and_commits_are_not_repeated() -> None:
    tracker = OffsetTracker()
    a = tracker.dispatch(P0, 0, 4, 5)
    tracker.dispatch(P1, 0, 4, 5)
    tracker.acknowledge([a])
    assert tracker.to_commit() == {P0: 5}
    tracker.committed({P0: 5})
    assert tracker.to_commit() == {}
    assert tracker.oldest_pending() == {P1: 0}


def test_a_forgotten_partition_ignores_its_late_acknowledgements() -> None:
    tracker = OffsetTracker()
    old = tracker.dispatch(P0, 0, 9, 10)
    tracker.forget([P0])
    fresh = tracker.dispatch(P0, 10, 19, 10)  # reassigned, read again from 10
    tracker.acknowledge([old])
    assert tracker.to_commit() == {}
    tracker.acknowledge([fresh])
    assert tracker.to_commit() == {P0: 20}
