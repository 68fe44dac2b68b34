"""The background thread: wait for a batch, send it, retry with backoff, spill what can't go.

One batch is in flight at a time, so records leave in the order they were accepted. The thread
wakes when a batch fills, when ``linger_ms`` has passed since the first record arrived, or when
someone asks for a flush or a stop; it never spins while idle.

With a spill store, a batch that keeps failing for ``spill_after_ms`` goes to disk, and from
then on the worker is in replay mode: new records are appended behind the spilled ones and the
spill is replayed oldest first (:mod:`kafkalog.pipeline.replay`), so the order of records
survives an outage. Every record taken from the queue is resolved in the
:class:`~kafkalog.pipeline.outcome.OutcomeLedger`, spilled ones once their fsync is done.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence

from tenacity import RetryCallState

from kafkalog.config import PipelineConfig
from kafkalog.diagnostics import RateLimitedWarnings, log
from kafkalog.errors import TransportError
from kafkalog.pipeline.counters import MAX_BATCH_BYTES, MAX_BATCH_RECORDS
from kafkalog.pipeline.outage import Outage
from kafkalog.pipeline.outcome import Outcome, OutcomeLedger, runs
from kafkalog.pipeline.queue import Entry, RecordQueue
from kafkalog.pipeline.replay import replay_once
from kafkalog.pipeline.retry import retry_policies
from kafkalog.pipeline.sender import ConfirmedSender
from kafkalog.spill import SpillStore

# How long an idle worker sleeps before re-checking for a stop nobody woke it for.
IDLE_WAIT_S = 1.0
# How often a worker with a spill store looks for segments of dead writers to adopt.
ADOPT_INTERVAL_S = 30.0


class BatchWorker:
    """Moves records from a :class:`RecordQueue` through a :class:`ConfirmedSender`, on its
    own thread, and resolves each one in the ledger."""

    def __init__(
        self,
        queue: RecordQueue,
        sender: ConfirmedSender,
        config: PipelineConfig,
        *,
        ledger: OutcomeLedger,
        spill: SpillStore | None,
        warnings: RateLimitedWarnings,
        clock: Callable[[], float] = time.monotonic,
        name: str = "kafkalog-worker",
    ) -> None:
        self._queue = queue
        self._sender = sender
        self._transport = sender.transport
        self.counters = sender.counters
        self._config = config
        self._ledger = ledger
        self._spill = spill
        self._warnings = warnings
        self._clock = clock
        self._name = name
        self._linger_s = config.linger_ms / 1000
        self._batch_bytes = config.batch_size
        self._request_timeout_s = config.request_timeout_ms / 1000
        self._delivery_timeout_s = config.delivery_timeout_ms / 1000
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._abort = threading.Event()
        self._stop_deadline = float("inf")
        self._flush_target = 0
        self._flush_lock = threading.Lock()
        self._next_adopt = 0.0
        # Whether Kafka is known to be down (see _spill_now()).
        self._outage = Outage(self._transport, warnings, topic=config.topic,
                              spill=spill is not None)
        self._retrying, self._replay_retrying = retry_policies(
            config,
            with_spill=spill is not None,
            past_deadline=self._past_deadline,
            give_up_now=self._spill_now,
            sleep=self._sleep,
            sleep_replaying=self._sleep_spilling,
            before_sleep=self._count_retry,
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
        """Resolve the first ``upto`` accepted records without waiting for ``linger_ms`` (or
        for the spill's fsync interval)."""
        with self._flush_lock:  # from several threads: a larger target is never written over
            self._flush_target = max(self._flush_target, upto)
        self._queue.wakeup.set()
        if self._spill_now():
            self._outage.caller_waits()

    def stop(self, deadline: float) -> None:
        """Deliver what is queued, then exit; spill (or give up) what is left at ``deadline``."""
        self._stop_deadline = min(self._stop_deadline, deadline)
        self._stopping.set()
        self._queue.wakeup.set()

    @property
    def spilling_while_unreachable(self) -> bool:
        """True while Kafka is known to be down and records go to the spill: waiting at close
        would deliver nothing (see :meth:`Pipeline.close`)."""
        return self._spill is not None and self._outage.down is not None

    @property
    def stop_deadline(self) -> float:
        """When a stopping worker stops trying to deliver (monotonic clock)."""
        return self._stop_deadline

    def abort(self) -> None:
        """Stop sending now; what is not delivered is spilled (or counted failed)."""
        self._abort.set()
        self._outage.nudge.set()
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
                self._housekeeping()
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
                    first = (queue.inflight_start or 0) + 1
                    try:
                        self._deliver(batch, first)
                    finally:
                        self._batch_done()
            self._spill_queued()
        except BaseException:  # the thread must report, not vanish silently
            log.exception("kafkalog worker stopped by an unexpected error")
            self._spill_queued()
        finally:
            self._transport.close(max(0.0, min(1.0, self._stop_deadline - self._clock())))
            if self._spill is not None:
                self._spill.close()  # syncs: the last spilled records are resolved here
            self._ledger.deliver_reports()

    def _housekeeping(self) -> None:
        """Between batches: adopt dead writers' segments, make spilled records durable when
        the fsync policy (or a flush) asks for it, and hand outcomes to the callback."""
        self._maybe_adopt()
        spill = self._spill
        if spill is not None:
            if self._flush_target > self._ledger.resolved:
                spill.sync()
            else:
                spill.maybe_sync()
        self._ledger.deliver_reports()

    def _maybe_adopt(self) -> None:
        now = self._clock()
        if self._spill is not None and now >= self._next_adopt:
            self._next_adopt = now + ADOPT_INTERVAL_S
            if self._spill.adopt_orphans():
                log.info("adopted spill segments of a dead writer in %s", self._spill.directory)

    def _spill_queued(self) -> None:
        """Move everything queued behind the spill (or give it up, without a spill)."""
        queue = self._queue
        while True:
            batch = queue.take(MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
            if not batch:
                return
            first = (queue.inflight_start or 0) + 1
            try:
                self._give_up(batch, range(first, first + len(batch)),
                              TransportError("queued behind spilled records", retriable=True,
                                             cause_name="Spill"))
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
            queue.wakeup.clear()  # before every check: a set after it ends the wait below
            count, _ = queue.depth()
            if count:
                break
            if self._stopping.is_set():
                return False
            self._maybe_adopt()
            if self._spill is not None:
                if self._spill.has_pending():  # adopted, or a queue overflow spilled: replay
                    return True
                self._spill.sync()  # going idle: make what was spilled durable now
            self._ledger.deliver_reports()
            queue.wakeup.wait(IDLE_WAIT_S)
        if self._abort.is_set() or self._past_deadline():
            return True  # _deliver gives the batch up at once
        linger_end = self._clock() + self._linger_s
        while True:
            queue.wakeup.clear()  # before the checks: a stop() or flush after them wakes us
            if self._urgent():
                break
            _, nbytes = queue.depth()
            remaining = linger_end - self._clock()
            if nbytes >= self._batch_bytes or remaining <= 0:
                break
            queue.wakeup.wait(remaining)
        return True

    def _past_deadline(self) -> bool:
        return self._abort.is_set() or self._clock() >= self._stop_deadline

    def _spill_now(self) -> bool:
        """Kafka is known to be down and a caller waits for records still in memory: they go
        to the spill (fsynced) at once rather than after ``spill_after_ms`` of retries."""
        return (self._outage.down is not None and self._spill is not None
                and self._flush_target > self._ledger.resolved)

    def _sleep(self, seconds: float) -> None:
        # On an Event: close(), and a caller waiting while Kafka is down, cut the backoff short.
        end = self._clock() + min(seconds, max(0.0, self._stop_deadline - self._clock()))
        while not self._abort.is_set() and not self._spill_now():
            remaining = end - self._clock()
            if remaining <= 0:
                return
            self._outage.nudge.wait(remaining)
            self._outage.nudge.clear()

    def _sleep_spilling(self, seconds: float) -> None:
        """Back off before the next replay, moving new records to the spill meanwhile."""
        if self._stopping.is_set() and self._outage.down is not None:
            self.abort()  # closing, and Kafka took none of the replay: waiting delivers nothing
            return
        end = self._clock() + min(seconds, max(0.0, self._stop_deadline - self._clock()))
        while True:
            # Cleared before the checks: a set by abort(), a flush or put() after it ends the wait.
            self._queue.wakeup.clear()
            if self._abort.is_set():
                return
            self._spill_queued()
            self._housekeeping()  # keeps the fsync interval; syncs at once for a waiting flush
            remaining = end - self._clock()
            if remaining <= 0:
                return
            self._queue.wakeup.wait(remaining)

    def _count_retry(self, state: RetryCallState) -> None:
        self.counters.retries += 1
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if exc is None:
            return
        self.counters.last_error = str(exc)
        self._outage.warn(exc)

    def _attempt_timeout(self, started: float) -> float:
        now = self._clock()
        limit = min(
            self._request_timeout_s,
            started + self._delivery_timeout_s - now,
            self._stop_deadline - now,
        )
        return max(0.05, limit)

    def _deliver(self, batch: list[Entry], first: int) -> None:
        self.counters.batches += 1
        numbers: Sequence[int] = range(first, first + len(batch))
        if self._past_deadline():
            self._give_up(batch, numbers, TransportError("closed before delivery",
                                                         retriable=True))
            return
        pending: list[Entry] = batch
        started = self._clock()

        def attempt() -> None:
            nonlocal pending, numbers
            self._outage.attempt_starts(self._spill_now)
            results = self._sender.send(pending, self._attempt_timeout(started))
            if results.count(None) == len(results):  # all delivered: no loop in Python
                self._outage.down = None
                self.counters.delivered += len(pending)
                for run in runs(numbers):
                    self._ledger.resolve(run, Outcome.DELIVERED)
                pending, numbers = [], ()
                return
            retry: list[Entry] = []
            retry_numbers: list[int] = []
            retry_error: TransportError | None = None
            delivered: list[int] = []
            for entry, number, err in zip(pending, numbers, results, strict=True):
                if err is None:
                    delivered.append(number)
                elif err.retriable:
                    retry.append(entry)
                    retry_numbers.append(number)
                    retry_error = err
                else:
                    self._give_up([entry], (number,), err)
            self.counters.delivered += len(delivered)
            for run in runs(delivered):
                self._ledger.resolve(run, Outcome.DELIVERED)
            self._outage.attempt_ended(len(delivered), retry_error)
            pending, numbers = retry, retry_numbers
            if retry_error is not None:
                raise retry_error

        try:
            self._retrying(attempt)
        except TransportError as err:
            if err.retriable:  # retries ended without one: the warning must still say why
                self._outage.warn(err)
            self._give_up(pending, numbers, err)
        except Exception as exc:  # a transport must not raise, but if it does, nothing is lost
            self._give_up(pending, numbers,
                          TransportError(f"transport raised {exc!r}", retriable=True))

    def _replay(self) -> None:
        """Send the oldest spilled records; retry with backoff until they go or we stop."""
        spill = self._spill
        if spill is None:
            return

        def attempt() -> None:
            self._outage.attempt_starts(self._spill_now)
            step = replay_once(spill, self._sender, self._attempt_timeout(self._clock()))
            if step is not None:
                self._outage.attempt_ended(step.done, step.error)
            if step is not None and step.error is not None:
                raise step.error  # what was done is acknowledged; the rest is retried

        try:
            self._replay_retrying(attempt)
        except TransportError:
            pass  # past the stop deadline: the rest stays on disk for the next process
        except Exception:
            log.exception("replaying spilled records failed; they stay on disk")
            self._abort.wait(self._config.retry_backoff_max_ms / 1000)

    def _give_up(self, entries: Sequence[Entry], numbers: Sequence[int],
                 err: TransportError) -> None:
        """Records that could not be delivered now: spill them, dead-letter them, or count
        them lost; and resolve each one truthfully."""
        if not entries:
            return
        self.counters.last_error = str(err)
        if not err.retriable:
            kept = self._sender.dead_letter(list(entries), err)
            for outcome in (Outcome.DEAD_LETTERED, Outcome.DROPPED):
                wanted = outcome is Outcome.DEAD_LETTERED
                for run in runs(n for n, k in zip(numbers, kept, strict=True) if k is wanted):
                    self._ledger.resolve(run, outcome)
        elif self._spill is not None:
            # Into the slot the queue's overflow kept ahead of newer records, if it did. The
            # store resolves them: spilled once durable, dropped if it cannot keep them.
            self._spill.append(entries, into_slot=True, tag=numbers)
        else:
            self._sender.count_failed(len(entries), err)
            for run in runs(numbers):
                self._ledger.resolve(run, Outcome.DROPPED)
