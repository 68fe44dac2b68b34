"""The background thread: wait for a batch, send it, retry with backoff, spill what can't go.

One batch is in flight at a time, so records leave in the order they were accepted and the
queue's watermark tells ``flush()`` exactly what has been resolved. The thread wakes when a
batch fills, when ``linger_ms`` has passed since the first record arrived, or when someone asks
for a flush or a stop; it never spins while idle.

With a spill store, a batch that keeps failing for ``spill_after_ms`` goes to disk, and from
then on the worker is in replay mode: new records are appended behind the spilled ones and the
spill is replayed oldest first, so the order of records survives an outage.
"""

from __future__ import annotations

import bisect
import threading
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    wait_exponential_jitter,
)
from tenacity.stop import stop_base

from kafkalog.config import HandlerConfig
from kafkalog.diagnostics import RateLimitedWarnings, log
from kafkalog.errors import SecurityError, TransportError
from kafkalog.pipeline.queue import Entry, RecordQueue
from kafkalog.spill import ReplayBatch, SpillRecord, SpillStore
from kafkalog.transports import Transport

# The most the worker hands to the transport at once. Bounds the memory a batch pins while it
# is retried, and the work lost to a crash of a single attempt.
MAX_BATCH_RECORDS = 20000
MAX_BATCH_BYTES = 16 * 1024 * 1024
# How long an idle worker sleeps before re-checking for a stop nobody woke it for.
IDLE_WAIT_S = 1.0
# How often a worker with a spill store looks for segments of dead writers to adopt.
ADOPT_INTERVAL_S = 30.0
# Bucket upper bounds of the per-request distributions (records per request, seconds per
# request). Fixed, so that every process reports the same buckets to a metrics system.
BATCH_SIZE_BUCKETS = (1, 5, 10, 50, 100, 500, 1000, 5000, 10000, MAX_BATCH_RECORDS)
SEND_LATENCY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


class Distribution:
    """Counts of observed values per bucket, plus their sum: the data of a histogram.

    Recorded once per request to Kafka (never per record), read by ``stats()`` and
    :mod:`kafkalog.metrics` from other threads.
    """

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self._counts = [0] * (len(self.bounds) + 1)  # the last bucket: above every bound
        self._sum = 0.0
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        """Count ``value`` in the first bucket whose bound is >= it."""
        index = bisect.bisect_left(self.bounds, value)
        with self._lock:
            self._counts[index] += 1
            self._sum += value

    def snapshot(self) -> dict[str, Any]:
        """``bounds``, ``counts`` (per bucket, not cumulative; one more than bounds: the
        overflow bucket), ``count`` and ``sum``; JSON-serialisable."""
        with self._lock:
            counts = list(self._counts)
            total = self._sum
        return {"bounds": list(self.bounds), "counts": counts, "count": sum(counts), "sum": total}


class _StopAtDeadline(stop_base):
    """Stop retrying once the worker is aborted or past its stop deadline."""

    def __init__(self, past_deadline: Callable[[], bool]) -> None:
        self._past_deadline = past_deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._past_deadline()


def _is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and exc.retriable


def _records(entries: Sequence[Entry]) -> list[SpillRecord]:
    return list(map(_VALUE_AND_KEY, entries))


_VALUE_AND_KEY: Callable[[Entry], SpillRecord] = itemgetter(0, 1)
_WAITER: Callable[[Entry], threading.Event | None] = itemgetter(2)


def _release(entries: Sequence[Entry]) -> None:
    """Wake the callers waiting for these records (``sync_level``): they are resolved."""
    if list(map(_WAITER, entries)).count(None) == len(entries):
        return  # nobody waits (the usual case): checked in C, not record by record
    for entry in entries:
        waiter = entry[2]
        if waiter is not None:
            waiter.set()


class BatchWorker:
    """Moves records from a :class:`RecordQueue` to a :class:`Transport`, on its own thread."""

    def __init__(
        self,
        queue: RecordQueue,
        transport: Transport,
        config: HandlerConfig,
        *,
        spill: SpillStore | None,
        warnings: RateLimitedWarnings,
        clock: Callable[[], float] = time.monotonic,
        name: str = "kafkalog-worker",
    ) -> None:
        self._queue = queue
        self._transport = transport
        self._config = config
        self._spill = spill
        self._warnings = warnings
        self._clock = clock
        self._name = name
        self._linger_s = config.linger_ms / 1000
        self._batch_bytes = config.batch_size
        self._request_timeout_s = config.request_timeout_ms / 1000
        self._delivery_timeout_s = config.delivery_timeout_ms / 1000
        self._dead_letter_topic = config.dead_letter_topic
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._stop_deadline = float("inf")
        self._flush_target = 0
        self._next_adopt = 0.0
        self.delivered = 0
        self.failed = 0
        self.dead_lettered = 0
        self.retries = 0
        self.batches = 0
        self.last_error: str | None = None
        self.batch_sizes = Distribution(BATCH_SIZE_BUCKETS)
        self.send_latencies = Distribution(SEND_LATENCY_BUCKETS_S)
        in_memory_s = self._delivery_timeout_s
        if spill is not None:
            in_memory_s = min(in_memory_s, config.spill_after_ms / 1000)
        backoff = wait_exponential_jitter(
            multiplier=config.retry_backoff_ms / 1000,
            max=config.retry_backoff_max_ms / 1000,
            jitter=config.retry_backoff_ms / 1000,
        )
        retry = retry_if_exception(_is_retriable)
        self._retrying = Retrying(
            retry=retry,
            stop=stop_any(stop_after_delay(in_memory_s), _StopAtDeadline(self._past_deadline)),
            wait=backoff,
            sleep=self._sleep,
            before_sleep=self._count_retry,
            reraise=True,
        )
        # Replay retries until it succeeds or the worker stops; while it backs off, new records
        # keep moving from the queue to the spill.
        # While closing, replay goes on until the stop deadline (close_timeout_ms): a broker
        # that has just come back is often still being connected to at that moment, and
        # giving up early would leave records on disk that this process could have sent.
        self._replay_retrying = Retrying(
            retry=retry,
            stop=_StopAtDeadline(self._past_deadline),
            wait=backoff,
            sleep=self._sleep_spilling,
            before_sleep=self._count_retry,
            reraise=True,
        )

    # -- control, from other threads -----------------------------------------------------------

    def start(self) -> None:
        """Start the thread (a daemon: a stuck network call must not keep the process alive)."""
        thread = threading.Thread(target=self._run, name=self._name, daemon=True)
        self._thread = thread
        thread.start()

    @property
    def alive(self) -> bool:
        """True while the thread runs."""
        return self._thread is not None and self._thread.is_alive()

    def request_flush(self, upto: int) -> None:
        """Send the first ``upto`` accepted records without waiting for ``linger_ms``."""
        self._flush_target = max(self._flush_target, upto)
        self._queue.wakeup.set()

    def stop(self, deadline: float) -> None:
        """Deliver what is queued, then exit; spill (or give up) what is left at ``deadline``."""
        self._stop_deadline = min(self._stop_deadline, deadline)
        self._stopping.set()
        self._queue.wakeup.set()

    @property
    def stop_deadline(self) -> float:
        """When a stopping worker stops trying to deliver (monotonic clock)."""
        return self._stop_deadline

    def abort(self) -> None:
        """Stop sending now; what is not delivered is spilled (or counted failed)."""
        self._abort.set()
        self._transport.interrupt()
        self.stop(self._clock())

    def join(self, timeout_s: float) -> bool:
        """Wait up to ``timeout_s`` for the thread to end. True if it has."""
        thread = self._thread
        if thread is None:
            return True
        if thread is not threading.current_thread():
            thread.join(max(0.0, timeout_s))
        return not thread.is_alive()

    # -- the thread ------------------------------------------------------------------------------

    def _run(self) -> None:
        queue = self._queue
        try:
            while True:
                self._maybe_adopt()
                if self._spill is not None and self._spill.has_pending():
                    if self._stopping.is_set() and self._past_deadline():
                        break  # what is spilled stays on disk for the next process
                    self._spill_queued()
                    self._replay()
                    continue
                if not self._wait_for_batch():
                    break
                batch = queue.take(MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
                if batch:
                    try:
                        self._deliver(batch)
                    finally:
                        self._batch_done()
            self._spill_queued()
        except BaseException:  # the thread must report, not vanish silently
            log.exception("kafkalog worker stopped by an unexpected error")
            self._spill_queued()
        finally:
            self._transport.close(max(0.0, min(1.0, self._stop_deadline - self._clock())))
            if self._spill is not None:
                self._spill.close()

    def _maybe_adopt(self) -> None:
        now = self._clock()
        if self._spill is not None and now >= self._next_adopt:
            self._next_adopt = now + ADOPT_INTERVAL_S
            if self._spill.adopt_orphans():
                log.info("adopted spill segments of a dead writer in %s", self._spill.directory)

    def _spill_queued(self) -> None:
        """Move everything queued behind the spill (or give it up, without a spill)."""
        while True:
            batch = self._queue.take(MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
            if not batch:
                return
            try:
                self._give_up(batch, TransportError("queued behind spilled records",
                                                    retriable=True, cause_name="Spill"))
            finally:
                self._batch_done()

    def _batch_done(self) -> None:
        """The batch taken from the queue is resolved: the spill slot kept for it is free."""
        self._queue.batch_done()
        if self._spill is not None:
            self._spill.release_slot()

    def _urgent(self) -> bool:
        return self._stopping.is_set() or self._flush_target > self._queue.removed

    def _wait_for_batch(self) -> bool:
        """Block until a batch is due. False when stopping and nothing is left to send."""
        queue = self._queue
        while True:
            queue.wakeup.clear()
            count, _ = queue.depth()
            if count:
                break
            if self._stopping.is_set():
                return False
            if self._spill is not None:
                self._spill.sync()  # going idle: make what was spilled durable now
            queue.wakeup.wait(IDLE_WAIT_S)
            self._maybe_adopt()
            if self._spill is not None and self._spill.has_pending():
                return True  # adopted segments: the main loop replays them
        if self._abort.is_set() or self._past_deadline():
            return True  # _deliver gives the batch up at once
        linger_end = self._clock() + self._linger_s
        while not self._urgent():
            queue.wakeup.clear()
            _, nbytes = queue.depth()
            remaining = linger_end - self._clock()
            if nbytes >= self._batch_bytes or remaining <= 0:
                break
            queue.wakeup.wait(remaining)
        return True

    def _past_deadline(self) -> bool:
        return self._abort.is_set() or self._clock() >= self._stop_deadline

    def _sleep(self, seconds: float) -> None:
        # Backoff waits on an Event so that close() interrupts it.
        self._abort.wait(min(seconds, max(0.0, self._stop_deadline - self._clock())))

    def _sleep_spilling(self, seconds: float) -> None:
        """Back off before the next replay, moving new records to the spill meanwhile."""
        end = self._clock() + min(seconds, max(0.0, self._stop_deadline - self._clock()))
        queue = self._queue
        while not self._abort.is_set():
            self._spill_queued()
            assert self._spill is not None
            self._spill.sync()  # keeps the fsync interval while appends pause
            remaining = end - self._clock()
            if remaining <= 0:
                return
            queue.wakeup.clear()
            if queue.depth()[0] == 0:
                queue.wakeup.wait(remaining)

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if exc is not None:
            self.last_error = str(exc)
            if isinstance(exc, SecurityError):
                # Not an outage: somebody has to fix a CA, a password or an ACL. Say what,
                # and that the records wait for it rather than being dropped.
                self._warnings.warn(
                    f"security:{exc.cause_name}",
                    "%s; records for topic %r are kept%s and sent once this is fixed",
                    exc,
                    self._config.topic,
                    " in the spill" if self._spill is not None else " (up to delivery_timeout_ms)",
                )
                return
            self._warnings.warn(
                f"retry:{getattr(exc, 'cause_name', type(exc).__name__)}",
                "cannot deliver to Kafka yet (%s); retrying with backoff",
                exc,
            )

    def _attempt_timeout(self, started: float) -> float:
        now = self._clock()
        limit = min(
            self._request_timeout_s,
            started + self._delivery_timeout_s - now,
            self._stop_deadline - now,
        )
        return max(0.05, limit)

    def _deliver(self, batch: list[Entry]) -> None:
        self.batches += 1
        if self._past_deadline():
            self._give_up(batch, TransportError("closed before delivery", retriable=True))
            return
        pending: list[Entry] = batch
        started = self._clock()

        def attempt() -> None:
            nonlocal pending
            results = self._send_confirmed(_records(pending), self._attempt_timeout(started))
            if results.count(None) == len(results):  # all delivered: no loop in Python
                self.delivered += len(pending)
                _release(pending)
                pending = []
                return
            retry: list[Entry] = []
            retry_error: TransportError | None = None
            delivered: list[Entry] = []
            for entry, err in zip(pending, results, strict=True):
                if err is None:
                    delivered.append(entry)
                elif err.retriable:
                    retry.append(entry)
                    retry_error = err
                else:
                    self._give_up([entry], err)
            self.delivered += len(delivered)
            _release(delivered)
            pending = retry
            if retry_error is not None:
                raise retry_error

        try:
            self._retrying(attempt)
        except TransportError as err:
            self._give_up(pending, err)
        except Exception as exc:  # a transport must not raise, but if it does, nothing is lost
            self._give_up(pending, TransportError(f"transport raised {exc!r}", retriable=True))

    def _replay(self) -> None:
        """Send the oldest spilled records; retry with backoff until they go or we stop."""
        spill = self._spill
        assert spill is not None
        batch = spill.read_batch(MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
        if batch is None:
            return

        def attempt() -> None:
            self._replay_attempt(spill, batch)

        try:
            self._replay_retrying(attempt)
        except TransportError:
            pass  # past the stop deadline: the rest stays on disk for the next process
        except Exception:
            log.exception("replaying spilled records failed; they stay on disk")
            self._abort.wait(self._config.retry_backoff_max_ms / 1000)

    def _replay_attempt(self, spill: SpillStore, batch: ReplayBatch) -> None:
        started = self._clock()
        records = batch.records
        results = self._send_confirmed(records, self._attempt_timeout(started))
        done = 0
        dead: list[SpillRecord] = []
        failure: TransportError | None = None
        for record, err in zip(records, results, strict=True):
            if err is not None and err.retriable:
                failure = err
                break
            if err is not None:
                dead.append(record)
            done += 1
        if dead:
            self._dead_letter(dead, TransportError("rejected on replay", retriable=False))
        self.delivered += done - len(dead)
        spill.ack(batch, done)
        if failure is not None:
            # Acknowledged records are off the spill; retry from the first one that was not.
            batch.records = batch.records[done:]
            batch.start += done
            raise failure

    def _send_confirmed(
        self, records: list[SpillRecord], timeout_s: float
    ) -> list[TransportError | None]:
        """Send ``records``; re-send each refused one alone to see if Kafka really refuses it.

        After one fatal error kafka-python fails the rest of the batch with the same error
        type, so a refusal of a record that shared a batch with the culprit proves nothing.
        The transport starts a new client after any failure, so each re-send here is clean.
        """
        started = self._clock()
        results = self._transport.send(records, timeout_s)
        self.send_latencies.observe(self._clock() - started)
        self.batch_sizes.observe(len(records))
        if results.count(None) == len(results):
            return results
        for i, err in enumerate(results):
            if err is not None and not err.retriable:
                results[i] = self._transport.send([records[i]], self._request_timeout_s)[0]
        return results

    def _give_up(self, entries: Sequence[Entry], err: TransportError) -> None:
        """Records that could not be delivered now: spill them, dead-letter them, or count."""
        if not entries:
            return
        self.last_error = str(err)
        if not err.retriable:
            self._dead_letter(_records(entries), err)
        elif self._spill is not None:
            # Into the slot the queue's overflow kept ahead of newer records, if it did.
            # (The store counts what it can not keep.)
            self._spill.append(_records(entries), into_slot=True)
        else:
            self._count_failed(len(entries), err)
        _release(entries)

    def _dead_letter(self, records: list[SpillRecord], err: TransportError) -> None:
        """Records the broker will never take (a fatal error): never dropped silently."""
        self._warnings.warn(
            f"dead:{err.cause_name}",
            "Kafka refused %d record(s) for topic %r (%s); sending them to the dead-letter %s",
            len(records),
            self._config.topic,
            err,
            self._dead_letter_topic or "segment",
        )
        self.dead_lettered += len(records)
        if self._dead_letter_topic is not None:
            results = self._transport.send(
                records, self._request_timeout_s, topic=self._dead_letter_topic
            )
            records = [r for r, e in zip(records, results, strict=True) if e is not None]
        if records and self._spill is not None:
            self._spill.append(records, dead_letter=True)  # the store counts its failures
        elif records:
            self._count_failed(len(records), err)

    def _count_failed(self, count: int, err: TransportError) -> None:
        if count <= 0:
            return
        self.failed += count
        self._warnings.warn(
            f"failed:{err.cause_name}",
            "lost %d record(s) for topic %r: %s",
            count,
            self._config.topic,
            err,
        )

    def counters(self) -> dict[str, Any]:
        """A snapshot of the worker's counters."""
        return {
            "delivered": self.delivered,
            "failed": self.failed,
            "dead_lettered": self.dead_lettered,
            "retries": self.retries,
            "batches": self.batches,
            "last_error": self.last_error,
            "batch_size": self.batch_sizes.snapshot(),
            "send_latency_s": self.send_latencies.snapshot(),
        }
