"""The bounded pool of bulk workers: prepare, write, retry, dead-letter, report.

Each worker takes a :class:`Bulk` (records of one partition, in offset order), turns its
records into documents, and writes them to the output until every one is in the store or on
the dead-letter topic. A retriable failure (the store down, 429, 5xx) is retried with
exponential backoff and jitter, for as long as it takes: Kafka holds the data meanwhile, and
the consumer loop pauses its partitions while any bulk is retrying. A bulk is given up only
when it is abandoned (its partition revoked, or the stop's bound passed); its offsets are then
never committed by this process.

Several workers run at once, so several bulks are in flight while the loop consumes.
"""

from __future__ import annotations

import queue
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from kafkalog.client.group import GroupRecord, Partition
from kafkalog.diagnostics import log
from kafkalog.sink.deadletters import DeadLetterError, DeadLetters
from kafkalog.sink.documents import Document, Preparer
from kafkalog.sink.offsets import Span
from kafkalog.sink.outputs import Output, Refused, Retry, StoreUnavailableError
from kafkalog.sink.stats import SinkStats

__all__ = ["Backoff", "Bulk", "BulkWorkers"]


@dataclass(frozen=True)
class Backoff:
    """Exponential backoff with jitter: ``base_ms * 2**attempt``, capped at ``max_ms``, then
    a random 50-100% of it, so that workers retrying together do not hit the store together."""

    base_ms: int
    max_ms: int

    def delay_s(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        """Seconds to wait before try number ``attempt + 1`` (attempt counts from 0)."""
        ceiling = min(self.max_ms, self.base_ms * (1 << min(attempt, 30)))
        return ceiling * (0.5 + 0.5 * rand()) / 1000


@dataclass(eq=False)
class Bulk:
    """Records of one partition handed to the workers together."""

    partition: Partition
    records: list[GroupRecord]
    span: Span
    abandoned: threading.Event = field(default_factory=threading.Event)
    completed: bool = False


class BulkWorkers:
    """``workers`` threads writing bulks to ``output``; ``on_done(bulk)`` is called (on a
    worker thread) when a bulk completes or is abandoned."""

    def __init__(
        self,
        output: Output,
        preparer: Preparer,
        dead_letters: DeadLetters,
        stats: SinkStats,
        *,
        workers: int,
        backoff: Backoff,
        on_done: Callable[[Bulk], None],
    ) -> None:
        self._output = output
        self._preparer = preparer
        self._dead_letters = dead_letters
        self._stats = stats
        self._backoff = backoff
        self._on_done = on_done
        self._queue: queue.SimpleQueue[Bulk | None] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._live: set[Bulk] = set()
        self._retrying = 0
        #: The first unexpected error of a worker (a bug): the loop stops the sink with it,
        #: rather than stall the bulk's partition for good.
        self.failure: Exception | None = None
        self._threads = [threading.Thread(target=self._work, name=f"kafkalog-sink-bulk-{i}",
                                          daemon=True) for i in range(workers)]
        for thread in self._threads:
            thread.start()

    @property
    def in_flight(self) -> int:
        """Bulks handed to the workers and not finished."""
        with self._lock:
            return len(self._live)

    @property
    def retrying(self) -> int:
        """How many bulks are waiting to retry now (the store is failing)."""
        return self._retrying

    def submit(self, bulk: Bulk) -> None:
        """Queue ``bulk`` for the next free worker."""
        with self._lock:
            self._live.add(bulk)
        self._queue.put(bulk)

    def abandon(self, partitions: set[Partition] | None = None) -> None:
        """Give up the bulks of ``partitions`` (None: every bulk) at their next step."""
        with self._lock:
            for bulk in self._live:
                if partitions is None or bulk.partition in partitions:
                    bulk.abandoned.set()

    def close(self, timeout_s: float) -> None:
        """Stop the workers once the queue is empty; a worker not done in ``timeout_s`` is
        left behind (it is a daemon, and its bulk abandoned)."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout_s)

    def _work(self) -> None:
        while True:
            bulk = self._queue.get()
            if bulk is None:
                return
            try:
                bulk.completed = self._write(bulk)
            except Exception as exc:  # a bug: the bulk stays unacknowledged, the sink stops
                log.error("kafkalog sink: bulk of %s failed: %s", bulk.partition, exc,
                          exc_info=True)
                if self.failure is None:
                    self.failure = exc
            finally:
                with self._lock:
                    self._live.discard(bulk)
                self._on_done(bulk)

    def _write(self, bulk: Bulk) -> bool:
        """Write ``bulk`` until done; False if it was abandoned first."""
        if bulk.abandoned.is_set():
            self._stats.add(abandoned=len(bulk.records))
            return False
        docs = self._preparer.prepare(bulk.records)
        letters = [(doc, doc.invalid or "") for doc in docs if doc.dead_letter]
        todo = [doc for doc in docs if not doc.dead_letter]
        invalid = sum(1 for doc in docs if doc.invalid)
        written = 0
        attempt = 0
        while todo:
            started = time.perf_counter()
            try:
                results = self._output.write(todo)
            except StoreUnavailableError as exc:
                self._stats.add(bulk_failures=1)
                reason = str(exc)
                results = [Retry(reason)] * len(todo)
            finally:
                self._stats.observe_bulk(time.perf_counter() - started)
            again: list[Document] = []
            for doc, result in zip(todo, results, strict=True):
                if result is None:
                    written += 1
                elif isinstance(result, Refused):
                    letters.append((doc, result.reason))
                else:
                    again.append(doc)
            todo = again
            if todo:
                if not self._pause(bulk, attempt, retried=len(todo)):
                    return False
                attempt += 1
        attempt = 0
        while letters:
            try:
                self._dead_letters.send(letters)
                break
            except DeadLetterError as exc:
                log.warning("kafkalog sink: %s; retrying", exc)
                if not self._pause(bulk, attempt, retried=0):
                    return False
                attempt += 1
        self._stats.add(written=written, invalid=invalid, bulks=1, dead_lettered=len(letters))
        return True

    def _pause(self, bulk: Bulk, attempt: int, *, retried: int) -> bool:
        """Wait before the next try; False if the bulk was abandoned meanwhile."""
        self._stats.add(retried=retried)
        with self._lock:
            self._retrying += 1
        try:
            abandoned = bulk.abandoned.wait(self._backoff.delay_s(attempt))
        finally:
            with self._lock:
                self._retrying -= 1
        if abandoned:
            self._stats.add(abandoned=len(bulk.records))
        return not abandoned
