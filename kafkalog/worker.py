"""The background thread: wait for a batch, send it, retry with backoff, give up per record.

One batch is in flight at a time, so records leave in the order they were accepted and the
queue's watermark tells ``flush()`` exactly what has been resolved. The thread wakes when a
batch fills, when ``linger_ms`` has passed since the first record arrived, or when someone asks
for a flush or a stop; it never spins while idle.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
    wait_exponential_jitter,
)

from kafkalog.config import HandlerConfig
from kafkalog.diagnostics import RateLimitedWarnings, log
from kafkalog.errors import TransportError
from kafkalog.queue import Entry, RecordQueue
from kafkalog.transport import Transport

# The most the worker hands to the transport at once. Bounds the memory a batch pins while it
# is retried, and the work lost to a crash of a single attempt.
MAX_BATCH_RECORDS = 20000
MAX_BATCH_BYTES = 16 * 1024 * 1024
# How long an idle worker sleeps before re-checking for a stop nobody woke it for.
IDLE_WAIT_S = 1.0

GiveUp = Callable[[Sequence[Entry], TransportError], None]


def _is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and exc.retriable


class BatchWorker:
    """Moves records from a :class:`RecordQueue` to a :class:`Transport`, on its own thread."""

    def __init__(
        self,
        queue: RecordQueue,
        transport: Transport,
        config: HandlerConfig,
        *,
        on_give_up: GiveUp,
        warnings: RateLimitedWarnings,
        clock: Callable[[], float] = time.monotonic,
        name: str = "kafkalog-worker",
    ) -> None:
        self._queue = queue
        self._transport = transport
        self._config = config
        self._on_give_up = on_give_up
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
        self.delivered = 0
        self.retries = 0
        self.batches = 0
        self.last_error: str | None = None
        self._retrying = Retrying(
            retry=retry_if_exception(_is_retriable),
            stop=stop_any(stop_after_delay(self._delivery_timeout_s), self._past_deadline),
            wait=wait_exponential_jitter(
                multiplier=config.retry_backoff_ms / 1000,
                max=config.retry_backoff_max_ms / 1000,
                jitter=config.retry_backoff_ms / 1000,
            ),
            sleep=self._sleep,
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
        """Deliver what is queued, then exit; give up on what is left at ``deadline``."""
        self._stop_deadline = min(self._stop_deadline, deadline)
        self._stopping.set()
        self._queue.wakeup.set()

    @property
    def stop_deadline(self) -> float:
        """When a stopping worker gives up what it has not delivered (monotonic clock)."""
        return self._stop_deadline

    def abort(self) -> None:
        """Stop retrying now; what is not delivered is given up (spilled or counted failed)."""
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
            while self._wait_for_batch():
                batch = queue.take(MAX_BATCH_RECORDS, MAX_BATCH_BYTES)
                if not batch:
                    continue
                try:
                    self._deliver(batch)
                finally:
                    queue.batch_done()
            leftover = queue.drain_all()
            if leftover:
                self._give_up(leftover, TransportError("closed before delivery", retriable=True))
        except BaseException:  # the thread must report, not vanish silently
            log.exception("kafkalog worker stopped by an unexpected error")
            leftover = queue.drain_all()
            if leftover:
                self._give_up(leftover, TransportError("worker crashed", retriable=True))
        finally:
            self._transport.close(max(0.0, min(1.0, self._stop_deadline - self._clock())))

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
            queue.wakeup.wait(IDLE_WAIT_S)
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

    def _past_deadline(self, _state: RetryCallState | None = None) -> bool:
        return self._abort.is_set() or self._clock() >= self._stop_deadline

    def _sleep(self, seconds: float) -> None:
        # Backoff waits on an Event so that close() interrupts it.
        self._abort.wait(min(seconds, max(0.0, self._stop_deadline - self._clock())))

    def _count_retry(self, state: RetryCallState) -> None:
        self.retries += 1
        outcome = state.outcome
        exc = outcome.exception() if outcome is not None else None
        if exc is not None:
            self.last_error = str(exc)
            self._warnings.warn(
                f"retry:{type(exc).__name__}:{getattr(exc, 'cause_name', '')}",
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
            results = self._transport.send(
                [(e[0], e[1]) for e in pending], self._attempt_timeout(started)
            )
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
            self._resolve(delivered)
            pending = retry
            if retry_error is not None:
                raise retry_error

        try:
            self._retrying(attempt)
        except TransportError as err:
            self._give_up(pending, err)
        except Exception as exc:  # a transport must not raise, but if it does, nothing is lost
            self._give_up(pending, TransportError(f"transport raised {exc!r}", retriable=True))

    def _resolve(self, entries: Sequence[Entry]) -> None:
        self.delivered += len(entries)
        for entry in entries:
            waiter = entry[2]
            if waiter is not None:
                waiter.set()

    def _give_up(self, entries: Sequence[Entry], err: TransportError) -> None:
        if not entries:
            return
        self.last_error = str(err)
        self._on_give_up(entries, err)
        for entry in entries:
            waiter = entry[2]
            if waiter is not None:
                waiter.set()

    def counters(self) -> dict[str, Any]:
        """A snapshot of the worker's counters."""
        return {
            "delivered": self.delivered,
            "retries": self.retries,
            "batches": self.batches,
            "last_error": self.last_error,
        }
