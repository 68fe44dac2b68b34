"""The whole-batch hand-off to kafka-python: producer batches encoded in one pass, put straight
into its accumulator, and settled with one future per batch instead of one per record.

kafka-python's sender still assigns the idempotent sequence, compresses, sends, retries and
completes each batch; only the per-record ``send()`` bookkeeping is skipped. This reaches into
kafka-python's internals, so it is used only with a kafka-python on which it was checked to
work (:mod:`kafkalog.transports.kafka_python_internals`); otherwise the transport keeps to the
public per-record ``send()``.
"""

from __future__ import annotations

import bisect
import itertools
import random
import time
from collections.abc import Callable, Collection, Sequence
from operator import itemgetter
from typing import Any

import kafka.errors
from kafka.structs import TopicPartition

from kafkalog.errors import TransportError
from kafkalog.transports.base import OutRecord
from kafkalog.transports.errors import not_acknowledged
from kafkalog.transports.recordbatch import encode_chunks, record_size

# Private modules of kafka-python: a release that moves them must not break the import of the
# transport, only turn the hand-off off (the self-check reports MISSING).
try:
    from kafka.producer.producer_batch import ProducerBatch
    from kafka.record.memory_records import MemoryRecordsBuilder

    MISSING: ImportError | None = None
except ImportError as exc:
    ProducerBatch = MemoryRecordsBuilder = None
    MISSING = exc

# How kafka-python's errors become kafkalog's (the transport's classify, its topic bound).
Classify = Callable[[BaseException], TransportError]
# One producer batch handed over: its records' results, and their positions in the send.
Placed = tuple["Positions", list[int]]


def unkeyed_only(records: Sequence[OutRecord]) -> bool:
    """Whether no record has a key (the default, without key_field)."""
    return list(map(itemgetter(1), records)).count(None) == len(records)


def oversized(records: Sequence[OutRecord], limit: int, *, no_keys: bool) -> set[int]:
    """The positions of records that are over ``limit`` (max_request_size) encoded.

    As ``send()`` would, such a record fails alone and the rest go on. The handler already cuts
    values to fit, so first a check in C over all the lengths.
    """
    longest = max(map(len, map(itemgetter(0), records)), default=0)
    if not no_keys:
        longest += max((len(k) for _, k in records if k is not None), default=0)
    if record_size(b"", None) + longest <= limit:
        return set()
    return {i for i, (v, k) in enumerate(records) if record_size(v, k) > limit}


def unkeyed_runs(
    records: Sequence[OutRecord], positions: list[int], run_bytes: int
) -> list[list[int]]:
    """``positions`` cut into consecutive runs of about ``run_bytes`` of values each.

    Each run of unkeyed records goes to a partition picked at random among those with a leader,
    as the sticky partitioners of Kafka's clients switch partition every ``batch.size`` bytes
    (KIP-794); runs that land on the same partition share its producer batches, so a hand-over
    still makes at most one batch per partition until a batch is full.
    """
    if len(positions) == len(records):  # every record is unkeyed: sizes summed in C
        ends = list(itertools.accumulate(map(len, map(itemgetter(0), records))))
    else:
        ends = list(itertools.accumulate(len(records[i][0]) for i in positions))
    runs: list[list[int]] = []
    start = 0
    while start < len(positions):
        # The first position whose running total passes the next run's end (at least one).
        stop = max(bisect.bisect_left(ends, ends[start] - len(records[positions[start]][0])
                                      + run_bytes), start + 1)
        runs.append(positions[start:stop])
        start = stop
    return runs


def hand_over(
    producer: Any, records: Sequence[OutRecord], topic: str, groups: dict[int, list[int]],
    unkeyed: list[int], *, run_bytes: int, placed: list[Placed],
) -> None:
    """Put the records into kafka-python's accumulator as whole producer batches and wake its
    sender: ``groups`` by partition, and the ``unkeyed`` spread in runs of ``run_bytes``.

    Each batch is added to ``placed`` as soon as kafka-python holds it, so that if this raises
    part way, the caller knows which records kafka-python has (and will send) and which not.
    """
    acc = producer._accumulator
    batch_bytes = acc.config["batch_size"]
    wakeup = producer._sender.wakeup
    now_ms = int(time.time() * 1000)
    work = list(groups.items())
    if unkeyed:
        pool = list(producer._metadata.available_partitions_for_topic(topic) or ())
        pool = pool or sorted(producer.partitions_for(topic))
        spread: dict[int, list[int]] = {}
        for run in unkeyed_runs(records, unkeyed, run_bytes):
            spread.setdefault(random.choice(pool), []).extend(run)
        work += spread.items()
    n = len(records)
    for p, idx in work:
        start = 0
        chosen = records if len(idx) == n else [records[i] for i in idx]
        tp = TopicPartition(topic, p)
        for chunk in encode_chunks(chosen, batch_bytes):
            batch = append_batch(acc, tp, chunk, now_ms)
            placed.append((batch._record_futures, idx[start:start + chunk[0]]))
            start += chunk[0]
    wakeup()


def settle(
    placed: Collection[Placed], classify: Classify, results: list[TransportError | None]
) -> bool:
    """Write each handed-over record's result into ``results``; whether any batch failed."""
    failed = False
    for positions, idx in placed:
        errors = positions.results(classify)
        if errors is None:
            continue  # all acknowledged
        failed = True
        for i, error in zip(idx, errors, strict=True):
            results[i] = error
    return failed


def not_placed(
    placed: Collection[Placed], results: list[TransportError | None], err: TransportError
) -> None:
    """Give ``err`` to each record of ``results`` still without one that is not in ``placed``
    (a hand-over that raised part way)."""
    held = {i for _, idx in placed for i in idx}
    for i, result in enumerate(results):
        if result is None and i not in held:
            results[i] = err


def append_batch(acc: Any, tp: TopicPartition, chunk: tuple[int, bytes], timestamp_ms: int) -> Any:
    """Put one producer batch of ``count`` encoded records into kafka-python's accumulator.

    The batch is built as kafka-python's own ``append`` would leave it (the self-check of
    :mod:`kafkalog.transports.kafka_python_internals` compares the two), then queued behind the
    partition's other batches.
    """
    builder = MemoryRecordsBuilder(acc.config["message_version"], acc.config["compression_attrs"],
                                   acc.config["batch_size"])
    fill(builder, chunk[0], chunk[1], timestamp_ms)
    batch = ProducerBatch(tp, builder)
    batch._record_futures = Positions(batch.produce_future, chunk[0])
    acc._appends_in_progress.increment()  # so that a forced close aborts this batch too
    try:
        with acc._tp_lock(tp):
            if acc._closed:
                raise kafka.errors.IllegalStateError("RecordAccumulator is closed")
            acc._batches[tp].append(batch)
            acc._incomplete.add(batch)
    finally:
        acc._appends_in_progress.decrement()
    return batch


def fill(builder: Any, count: int, body: bytes, timestamp_ms: int) -> None:
    """Set a fresh ``MemoryRecordsBuilder`` to hold ``body``: ``count`` records of one time."""
    inner = builder._builder
    inner._buffer += body
    inner._first_timestamp = inner._max_timestamp = timestamp_ms
    inner._last_offset = count - 1
    inner._num_records = count
    builder._next_offset = count


class Positions:
    """Stands in for a producer batch's per-record futures, of which ours has none.

    kafka-python reads them in one place: when the broker finds a batch too large, it splits
    the batch in two and moves each record's future to the new batch with ``rebind``. Here a
    record is a position, created only if it is moved, and the move is written down, so the
    result of every record can still be found, through any number of splits, without a
    future per record.
    """

    __slots__ = ("_count", "_future", "moved")

    def __init__(self, future: Any, count: int) -> None:
        self._future = future
        self._count = count
        self.moved: dict[int, tuple[Any, int]] = {}  # position -> (batch future, index in it)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, position: int) -> _Moved:
        return _Moved(self, position)

    def _where(self) -> list[tuple[Any, int]]:
        future, moved = self._future, self.moved
        return [moved.get(k, (future, k)) for k in range(self._count)]

    def done(self) -> bool:
        """Whether kafka-python has settled every record of the batch."""
        if not self.moved:
            return bool(self._future.is_done)
        return all(future.is_done for future, _ in self._where())

    def results(self, classify: Classify) -> list[TransportError | None] | None:
        """None if every record was acknowledged, else one result per record."""
        if not self.moved:
            outcome = batch_outcome(self._future, classify)
            if outcome is None:
                return None
            if callable(outcome):
                return [outcome(k) for k in range(self._count)]
            return [outcome] * self._count
        results: list[TransportError | None] = []
        for future, index in self._where():
            outcome = batch_outcome(future, classify)
            results.append(outcome(index) if callable(outcome) else outcome)
        return results if any(results) else None


class _Moved:
    """One record of a split batch, as kafka-python's ``split_and_reenqueue`` handles it."""

    __slots__ = ("_position", "_positions")

    def __init__(self, positions: Positions, position: int) -> None:
        self._positions = positions
        self._position = position

    def rebind(self, future: Any, index: int) -> None:
        """The record now is record ``index`` of the batch whose future is ``future``."""
        self._positions.moved[self._position] = (future, index)


def batch_outcome(
    future: Any, classify: Classify
) -> TransportError | Callable[[int], TransportError] | None:
    """A batch's result: None (acknowledged), one error for all its records, or a function of
    the record's index (the broker refused some records of the batch)."""
    if not future.is_done:
        return not_acknowledged("KafkaTimeoutError")
    if future.failed():
        return classify(future.exception)
    failures = future.value[2]  # kafka-python completes failed batches this way too
    if failures is None:
        return None
    return lambda index: classify(failures(index))
