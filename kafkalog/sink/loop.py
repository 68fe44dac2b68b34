"""The sink's consumer loop: poll, hand bulks to the workers, commit what the store has.

One thread (the caller of :meth:`Sink.run`) owns the Kafka consumer: it polls, cuts what it
read into bulks of one partition each, hands them to the bulk workers, and commits each
partition's highest contiguous acknowledged offset every ``commit_interval_ms``. It pauses
every partition while a bulk is retrying or the records in flight reach
``max_in_flight_records`` (memory is bounded by records in flight, not by the lag), and keeps
polling meanwhile, which is what keeps it in the group.

On a rebalance, revoked partitions get up to 3 s for their bulks to finish; then the rest is
abandoned and the commit of what was written is sent. On stop, the same for every
partition, and the consumer leaves the group at once.
"""

from __future__ import annotations

import os
import queue
import socket
import threading
import time
import weakref
from collections.abc import Callable, Collection, Mapping, Sequence
from itertools import groupby
from operator import attrgetter
from typing import Any

from kafkalog.client import client_settings
from kafkalog.client.group import GroupCommitError, GroupConsumer, GroupRecord, Partition
from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.errors import InvariantError
from kafkalog.sink.bulks import Backoff, Bulk, BulkWorkers
from kafkalog.sink.config import SinkConfig
from kafkalog.sink.deadletters import DeadLetters
from kafkalog.sink.documents import Preparer
from kafkalog.sink.offsets import OffsetTracker
from kafkalog.sink.outputs import Output
from kafkalog.sink.outputs.file import FileOutput
from kafkalog.sink.stats import SinkStats

__all__ = ["Sink", "build_output", "live_sinks"]

_POLL_S = 0.2
_LAG_EVERY_S = 1.0
# How long a revocation waits for its bulks: it holds kafka-python's I/O thread (heartbeats
# too), so well under the session timeout.
_REVOKE_WAIT_MAX_S = 3.0
_warnings = RateLimitedWarnings()
_LIVE: weakref.WeakSet[Sink] = weakref.WeakSet()


def live_sinks() -> list[Sink]:
    """The sinks of this process that are running (for :mod:`kafkalog.metrics`)."""
    return list(_LIVE)


def build_output(config: SinkConfig) -> Output:
    """The output ``config`` names (opensearch-py is imported only for OpenSearch)."""
    if config.output == "file":
        if config.file_dir is None:
            raise InvariantError("the file output has no directory")
        return FileOutput(config.file_dir, max_bytes=config.file_max_bytes,
                          max_age_ms=config.file_max_age_ms,
                          compression=config.file_compression)
    # Imported here: opensearch-py is an optional extra, and slow to import.
    from kafkalog.sink.outputs.opensearch import OpenSearchOutput  # noqa: PLC0415

    return OpenSearchOutput.from_config(config)


class Sink:
    """Reads ``config.topics`` as group ``config.group`` and writes them to ``output``.

    ``dead_letters`` and ``consumer_factory`` are for tests; by default the dead letters go to
    ``config.dead_letters`` and the consumer is a :class:`~kafkalog.client.group.GroupConsumer`.
    """

    def __init__(
        self,
        config: SinkConfig,
        output: Output | None = None,
        *,
        dead_letters: DeadLetters | None = None,
        consumer_factory: Callable[..., GroupConsumer] = GroupConsumer,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.output = output if output is not None else build_output(config)
        self._dead_letters = dead_letters
        self._consumer_factory = consumer_factory
        self._clock = clock
        self._stats = SinkStats()
        self._tracker = OffsetTracker()
        self._done: queue.SimpleQueue[Bulk] = queue.SimpleQueue()
        self._consumer: GroupConsumer | None = None
        self._workers: BulkWorkers | None = None
        self._paused = False
        self.started = threading.Event()

    def stats(self) -> dict[str, Any]:
        """Counters and gauges (see :mod:`kafkalog.sink.stats`)."""
        return self._stats.snapshot()

    def run(self, stop: threading.Event) -> None:
        """Consume until ``stop`` is set; then settle, commit and leave the group."""
        config = self.config
        self.output.start()
        kafka = config.kafka_config()
        dead_letters = self._dead_letters or DeadLetters(kafka)
        try:
            self._workers = BulkWorkers(
                self.output, Preparer(config.index_pattern() if config.output != "file"
                                      else None, config.on_invalid),
                dead_letters, self._stats, workers=config.bulk_workers,
                backoff=Backoff(config.retry_backoff_ms, config.retry_backoff_max_ms),
                on_done=self._done.put)
            self._consumer = self._consumer_factory(
                kafka.bootstrap_servers, config.topics, config.group, listener=self,
                start=config.start,
                consumer_config={"client_id": f"kafkalog-sink-{socket.gethostname()}-"
                                               f"{os.getpid()}",  # which process a member is
                                 **client_settings(kafka), **config.consumer})
            self.started.set()
            _LIVE.add(self)
            try:
                self._consume(stop)
            finally:
                _LIVE.discard(self)
                self._settle()
                self._consumer.close()
        finally:
            if self._workers is not None:
                self._workers.close(timeout_s=1.0)
            self.output.close()
            if self._dead_letters is None:
                dead_letters.close()

    @property
    def _group(self) -> GroupConsumer:
        if self._consumer is None:
            raise InvariantError("the sink is not running: no consumer")
        return self._consumer

    @property
    def _pool(self) -> BulkWorkers:
        if self._workers is None:
            raise InvariantError("the sink is not running: no bulk workers")
        return self._workers

    def _consume(self, stop: threading.Event) -> None:
        config = self.config
        next_commit = next_lag = self._clock()
        while not stop.is_set():
            if self._pool.failure is not None:
                raise self._pool.failure
            self._drain(0)
            now = self._clock()
            if now >= next_commit:
                self._commit()
                next_commit = now + config.commit_interval_ms / 1000
            if now >= next_lag:
                self._gauges()
                self.output.tick()
                next_lag = now + _LAG_EVERY_S
            self._flow_control()
            records = self._group.poll(_POLL_S, config.bulk_max_records)
            if records:
                self._dispatch(records)

    def _gauges(self) -> None:
        """Lag, work in flight and the oldest unindexed record's age, for progress and
        metrics (once a second)."""
        oldest = self._tracker.oldest_timestamp_ms()
        age_s = 0.0 if oldest is None else max(0.0, time.time() - oldest / 1000)
        self._stats.set(lag=self._group.lag(), in_flight_bulks=self._pool.in_flight,
                        oldest_unindexed_age_s=age_s)

    def _dispatch(self, records: Sequence[GroupRecord]) -> None:
        max_records, max_bytes = self.config.bulk_max_records, self.config.bulk_max_bytes
        self._stats.add(read=len(records))
        for (topic, number), group in groupby(records, key=attrgetter("topic", "partition")):
            partition = Partition(topic, number)
            chunk: list[GroupRecord] = []
            size = 0
            for record in group:
                length = len(record.value or b"")
                if chunk and (len(chunk) >= max_records or size + length > max_bytes):
                    self._submit(partition, chunk)
                    chunk, size = [], 0
                chunk.append(record)
                size += length
            if chunk:
                self._submit(partition, chunk)

    def _submit(self, partition: Partition, chunk: list[GroupRecord]) -> None:
        span = self._tracker.dispatch(partition, chunk[0].offset, chunk[-1].offset, len(chunk),
                                      chunk[0].timestamp_ms)
        self._pool.submit(Bulk(partition, chunk, span))

    def _drain(self, timeout_s: float) -> None:
        """Take the bulks the workers finished; move the commit points of completed ones."""
        try:
            bulk = self._done.get(timeout=timeout_s) if timeout_s > 0 else self._done.get_nowait()
        except queue.Empty:
            return
        done = [bulk]
        while True:
            try:
                done.append(self._done.get_nowait())
            except queue.Empty:
                break
        self._tracker.acknowledge(b.span for b in done if b.completed)
        self._stats.set(in_flight_records=self._tracker.pending())

    def _flow_control(self) -> None:
        """Pause every partition while a bulk retries or too much is in flight."""
        in_flight = self._tracker.pending()
        limit = self.config.max_in_flight_records - self.config.bulk_max_records
        want_pause = self._pool.retrying > 0 or in_flight > limit
        if want_pause != self._paused:
            assignment = self._group.assignment()
            if want_pause:
                self._group.pause(assignment)
            else:
                self._group.resume(assignment)
            self._paused = want_pause
            self._stats.set(paused=want_pause)

    def _commit(self) -> None:
        """Commit the offsets that moved."""
        offsets: Mapping[Partition, int] = self._tracker.to_commit()
        if not offsets:
            return
        try:
            self._group.commit(offsets)
        except GroupCommitError as exc:
            self._stats.add(commit_failures=1)
            _warnings.warn("commit", "kafkalog sink: %s (records after the last commit are "
                                     "written again, over themselves)", exc)
            return
        self._tracker.committed(offsets)
        self._stats.add(commits=1)
        self._stats.set(committed={f"{p.topic}-{p.partition}": n
                                   for p, n in self._tracker.committed_offsets().items()})

    def _settle(self) -> None:
        """At stop: let the bulks in flight finish within ``shutdown_timeout_ms``, abandon
        the rest, and commit what was written."""
        bound_s = self.config.shutdown_timeout_ms / 1000
        if self._pool.failure is not None:
            bound_s = 0.0  # a broken worker finishes nothing: no point waiting
        deadline = self._clock() + bound_s
        while self._tracker.pending() and self._clock() < deadline:
            self._drain(min(0.1, max(deadline - self._clock(), 0.001)))
        self._pool.abandon()
        self._drain(0)
        self._commit()

    # -- the group's rebalance callbacks (kafka-python's I/O thread, from inside poll) --------

    def revoked(self, partitions: Collection[Partition]) -> None:
        """Let the revoked partitions' bulks finish (bounded), abandon the rest, send the
        commit of what was written, and forget them.

        Runs on kafka-python's I/O thread while the loop's thread waits in poll(), so the
        tracker is not touched by two threads at once; but nothing here may block on Kafka,
        and heartbeats wait meanwhile: hence the shorter bound and the commit not waited for.
        """
        if not partitions:
            return
        wanted = set(partitions)
        deadline = self._clock() + min(self.config.shutdown_timeout_ms / 1000,
                                       _REVOKE_WAIT_MAX_S)
        while (sum(self._tracker.pending(p) for p in wanted)
               and self._clock() < deadline):
            self._drain(min(0.1, max(deadline - self._clock(), 0.001)))
        self._pool.abandon(wanted)
        offsets = {p: n for p, n in self._tracker.to_commit().items() if p in wanted}
        self._group.commit_async(offsets)
        self._tracker.forget(wanted)

    def assigned(self, partitions: Collection[Partition]) -> None:
        """New partitions start paused if the loop is holding back."""
        if self._paused and partitions and self._consumer is not None:
            self._consumer.pause(partitions)
