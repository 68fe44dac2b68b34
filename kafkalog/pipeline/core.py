"""The public delivery pipeline: submit ready-made records, learn what became of each.

:class:`Pipeline` is what :class:`~kafkalog.KafkaHandler` sends through, and what any other
producer can use (the file agent, an application's own code): a bounded queue, a worker thread
that batches, sends and retries, the spill for what cannot be delivered yet (replayed in
order, adopted from dead processes), fork safety and exit ordering, and counters.
"""

from __future__ import annotations

import threading
import time
import weakref
from collections.abc import Callable, Sequence
from itertools import repeat
from typing import Any

from kafkalog.config import PipelineConfig
from kafkalog.config.spill import check_spill_path
from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.pipeline import lifecycle
from kafkalog.pipeline.counters import WorkerCounters
from kafkalog.pipeline.outcome import Outcome, OutcomeCallback, OutcomeLedger, runs
from kafkalog.pipeline.queue import Entry, RecordQueue
from kafkalog.pipeline.sender import ConfirmedSender
from kafkalog.pipeline.worker import BatchWorker
from kafkalog.spill import SpillStore
from kafkalog.transports import Transport, build_transport, check_transport_config

#: Builds the transport for a config; the second argument is called each time the transport
#: creates a Kafka client (it keeps kafkalog's exit hook ahead of the client's).
TransportFactory = Callable[[PipelineConfig, Callable[[], None]], Transport]


class Pipeline:
    """Delivers ready-made records (value bytes, optional key bytes) to one Kafka topic.

    Options are those of :class:`~kafkalog.KafkaHandler` that concern delivery (``topic``,
    ``bootstrap_servers``, ``acks``, ``linger_ms``, ``queue_max_records``,
    ``overflow_policy``, ``spill_dir``, security...; see
    :class:`~kafkalog.config.PipelineConfig`), with the same names, defaults and validation; a
    bad one raises :class:`~kafkalog.errors.ConfigError` naming it.

    :meth:`submit` never does network I/O, never raises for a full queue and waits only as
    the overflow policy says (``block``: at most ``block_timeout_ms``). It returns the record's
    number: records are numbered 1, 2, 3... in the order they are accepted, and
    :meth:`resolved` is the highest number up to which every record has an outcome
    (delivered, safely spilled, dead-lettered or dropped; see
    :mod:`kafkalog.pipeline.outcome`). ``on_outcome`` hears each outcome, once per run of
    records, on the worker thread.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        topic: str | None = None,
        *,
        config: PipelineConfig | None = None,
        transport_factory: TransportFactory | None = None,
        on_outcome: OutcomeCallback | None = None,
        on_fork: Callable[[], None] | None = None,
        **options: Any,
    ) -> None:
        config = PipelineConfig.given(config, topic, options)
        check_spill_path(config.spill_path())  # now, not when Kafka is down and it is too late
        if transport_factory is None:
            check_transport_config(config)  # codec packages, producer_config
        self.config = config
        self._transport_factory = transport_factory or build_transport
        self._on_outcome = on_outcome
        self._on_fork = _weak_callable(on_fork)
        self._close_timeout_s = config.close_timeout_ms / 1000
        self._build()
        lifecycle.register(self)

    def _build(self) -> None:
        """Create the queue, spill, transport and worker (again in a forked child)."""
        config = self.config
        self._state_lock = threading.Lock()
        self._warnings = RateLimitedWarnings()
        self._ledger = OutcomeLedger(self._on_outcome)
        spill_path = config.spill_path()
        self._spill = None if spill_path is None else SpillStore(
            spill_path,
            config.topic,
            fsync=config.spill_fsync,
            fsync_interval_s=config.spill_fsync_interval_ms / 1000,
            max_bytes=config.spill_max_bytes,
            segment_bytes=config.spill_segment_bytes,
            full_policy=config.spill_full_policy,
            warnings=self._warnings,
            listener=self,
        )
        self._queue = RecordQueue(
            max_records=config.queue_max_records,
            max_bytes=config.queue_max_bytes,
            batch_bytes=config.batch_size,
            policy=config.overflow_policy,
            block_timeout_s=config.block_timeout_ms / 1000,
            overflow_sink=self._overflow_to_spill if self._spill is not None else None,
            on_drop=self._dropped_oldest,
        )
        self._transport = self._transport_factory(config, lifecycle.keep_exit_hook_first)
        self._sender = ConfirmedSender(
            transport=self._transport,
            counters=WorkerCounters(),
            topic=config.topic,
            request_timeout_s=config.request_timeout_ms / 1000,
            dead_letter_topic=config.dead_letter_topic,
            spill=self._spill,
            warnings=self._warnings,
        )
        self._worker = self._new_worker()
        self._revived = 0
        self._started = False
        self._closed = False
        self._dropped_after_close = 0
        self._failures_reported = 0

    def _new_worker(self) -> BatchWorker:
        return BatchWorker(
            self._queue,
            self._sender,
            self.config,
            ledger=self._ledger,
            spill=self._spill,
            warnings=self._warnings,
            name=f"kafkalog-worker-{self.config.topic}",
        )

    # -- the producer's side -------------------------------------------------------------------

    def submit(self, value: bytes, key: bytes | None = None) -> int:
        """Queue one record; its number (from 1), or 0 if it was not accepted (queue full
        under ``drop_newest`` or ``block``, or the pipeline is closed: counted in ``dropped``).

        Raises ``TypeError`` if ``value`` or ``key`` is not ``bytes``: the record is refused
        here rather than failing on the worker thread, after the call returned.
        """
        if type(value) is not bytes or (key is not None and type(key) is not bytes):
            raise TypeError(
                f"Pipeline.submit takes bytes (value {type(value).__name__}, "
                f"key {type(key).__name__}); encode text first"
            )
        return self._enqueue(value, key)

    def _enqueue(self, value: bytes, key: bytes | None = None) -> int:
        """:meth:`submit` without its type check, for callers that pass bytes by construction."""
        if self._closed:
            self._dropped_after_close += 1
            return 0
        if not self._started:
            self._start_worker()
        number = self._queue.put((value, key))
        if not number:
            self._revive_worker()
        return number

    @property
    def accepted(self) -> int:
        """How many records were accepted (the number of the latest one)."""
        return self._queue.accepted

    def resolved(self) -> int:
        """Every record numbered up to this one has an outcome."""
        return self._ledger.resolved

    def wait(self, number: int, timeout_s: float | None = None) -> bool:
        """Wait (without lingering) until every record up to ``number`` has an outcome; at
        most ``timeout_s`` seconds (None: ``close_timeout_ms``). True if they all have."""
        if number <= 0:
            return True
        self._worker.request_flush(number)
        wait_s = self._close_timeout_s if timeout_s is None else max(0.0, timeout_s)
        if lifecycle.holding_logging_lock() or (self._closed and not self._worker.alive):
            wait_s = 0.0  # (after close: what the worker left unresolved stays so)
        return self._ledger.wait(number, wait_s)

    def flush(self, timeout: float | None = None) -> bool:
        """Wait until every record accepted before the call has an outcome.

        ``timeout`` is in seconds; None means ``close_timeout_ms``. Returns True only if every
        such record was acknowledged by Kafka or is durably in the spill, and no accepted
        record was lost, dropped or dead-lettered since the previous flush. (Records the full
        queue refused were never accepted; ``stats()["dropped_newest"]`` counts them.)
        """
        if not self._started:
            return True
        done = self.wait(self._queue.accepted, timeout)
        failures = self._failures()
        ok = done and failures == self._failures_reported
        if done:
            self._failures_reported = failures
        return ok

    def _failures(self) -> int:
        spill_dropped = self._spill.dropped if self._spill is not None else 0
        counters = self._sender.counters
        return counters.failed + counters.dead_lettered + self._queue.dropped_oldest + spill_dropped

    def close(self) -> None:
        """Deliver what is queued within ``close_timeout_ms``, then stop the worker; what is
        left goes to the spill. Idempotent.

        While Kafka is known to be unreachable, it does not wait: what is in memory goes to
        the spill at once, and stays there for the next process with the same ``spill_dir``.

        While logging's module lock is held (``dictConfig`` replacing a handler), it returns at
        once and the worker finishes in the background; an exit hook waits for it.
        """
        with self._state_lock:
            already, self._closed = self._closed, True
        self._queue.refuse_more()  # before the worker stops: what it does not take is refused
        if not already and self._started:
            worker = self._worker
            worker.request_flush(self._queue.accepted)
            worker.stop(time.monotonic() + self._close_timeout_s)
            if worker.spilling_while_unreachable:
                worker.abort()  # waiting would deliver nothing: spill what is left, now
            lifecycle.finish_later(worker)
            if not lifecycle.holding_logging_lock():
                lifecycle.finish(worker, self._close_timeout_s)
        lifecycle.unregister(self)

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    # -- the worker ----------------------------------------------------------------------------

    def _start_worker(self) -> None:
        with self._state_lock:
            if not self._started and not self._closed:
                self._worker.start()
                self._started = True
        if not self._started:  # close() came after the caller's check: refuse its put()
            self._queue.refuse_more()

    def _revive_worker(self) -> None:
        """The queue is full: if the worker thread died (a bug in it), start a new one.

        Checked only on overflow, so the common path pays nothing for it. The counters belong
        to the pipeline, so the new worker counts on where the old one stopped.
        """
        dead = self._worker
        if dead.alive or not self._started or self._closed:
            return
        with self._state_lock:
            if self._worker is not dead or self._closed:
                return
            self._worker = worker = self._new_worker()
            self._revived += 1
            worker.start()
        self._warnings.warn("revived", "the kafkalog worker thread had stopped; restarted it")

    def _overflow_to_spill(self, entries: list[Entry], first: int, batch_in_hand: bool) -> None:
        """Queue full, policy ``spill``: write its oldest records to disk on the caller's thread.

        An append is one ``os.write`` (no fsync here: the worker syncs, and then reports the
        records spilled), so the caller does not wait on the disk's flush. If the worker holds
        a batch taken from the queue, that batch is older still: a slot ahead of these records
        is kept for it, in case it ends up in the spill too.
        """
        spill = self._spill
        if spill is None:  # the queue is given this sink only with a spill store
            return
        if batch_in_hand:
            spill.reserve_slot()
        # The store resolves them: spilled once durable, dropped if it cannot keep them.
        spill.append(entries, sync=False, tag=range(first, first + len(entries)))
        self._worker.request_flush(0)  # wake the worker: it must replay behind these
        self._revive_worker()

    def _dropped_oldest(self, numbers: range) -> None:
        self._ledger.resolve(numbers, Outcome.DROPPED)

    # -- the spill store's listener ------------------------------------------------------------

    def spill_durable(self, tag: Sequence[int]) -> None:
        """Spilled records are fsynced: now they count as spilled."""
        for run in runs(tag):
            self._ledger.resolve(run, Outcome.SPILLED)

    def spill_lost(self, tag: Sequence[int] | None, count: int, *, after_durable: bool) -> None:
        """Records are gone from the spill: dropped, even if reported spilled before."""
        if tag is None:
            self._ledger.dropped_later(None, count)
            return
        for run in runs(tag):
            if after_durable:
                self._ledger.dropped_later(run, len(run))
            else:
                self._ledger.resolve(run, Outcome.DROPPED)

    # -- counters, fork ------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters since the pipeline was built (or since fork, in a child process).

        Keys: ``enqueued``, ``delivered``, ``failed``, ``dropped``, ``spilled`` (durably),
        ``replayed``, ``queue_depth``, ``queue_bytes``, ``resolved``, and more detailed ones
        (see ``docs/operations.md``). ``batch_size`` and ``send_latency_s`` are distributions
        over the requests sent to Kafka: ``bounds``, ``counts`` per bucket (the last one above
        every bound), ``count`` and ``sum``.
        """
        q = self._queue.counters()
        w = self._sender.counters.snapshot()
        s = self._spill.counters() if self._spill is not None else {}
        dropped = (q["dropped_newest"] + q["dropped_oldest"] + self._dropped_after_close
                   + s.get("spill_dropped", 0))
        return {
            "enqueued": q["enqueued"],
            "delivered": w["delivered"],
            "failed": w["failed"],
            "dropped": dropped,
            "spilled": s.get("spilled", 0),
            "replayed": s.get("replayed", 0),
            "queue_depth": q["queue_depth"],
            "queue_bytes": q["queue_bytes"],
            "resolved": self._ledger.resolved,
            "dropped_newest": q["dropped_newest"],
            "dropped_oldest": q["dropped_oldest"],
            "dropped_after_close": self._dropped_after_close,
            "dropped_after_spilled": self._ledger.dropped_after_spilled,
            "blocked": q["blocked"],
            "worker_restarts": self._revived,
            "dead_lettered": w["dead_lettered"],
            "retries": w["retries"],
            "batches": w["batches"],
            "last_error": w["last_error"],
            "batch_size": w["batch_size"],
            "send_latency_s": w["send_latency_s"],
            "overflowed_to_spill": q["overflowed"],
            **s,
        }

    def reset_after_fork(self) -> None:
        """In a forked child: forget the parent's queue, worker and connections; start clean.

        The parent delivers the records it had queued; the child must not send them again.
        """
        self._transport.disown()
        if self._spill is not None:
            self._spill.forget_after_fork()
        self._build()
        on_fork = self._on_fork() if self._on_fork is not None else None
        if on_fork is not None:
            on_fork()

    def __repr__(self) -> str:
        servers = ",".join(self.config.bootstrap_servers)
        return f"<Pipeline topic={self.config.topic!r} servers={servers!r}>"

    def submit_many(
        self, values: Sequence[bytes], keys: Sequence[bytes | None] | None = None
    ) -> tuple[int, int]:
        """Queue records in order, as :meth:`submit` would one by one, stopping at the first
        one not accepted; cheaper than a call per record (one lock for whatever fits).

        ``keys``: one per value, or None for none. Returns ``(count, last)``: how many were
        accepted (the first ``count``) and the number of the last one (0 if none); the
        numbers are consecutive unless another thread submits at the same time. Raises
        ``TypeError``, accepting none, if a value or a key is not ``bytes``.

        .. versionadded:: 0.1.0
        """
        if keys is not None and len(keys) != len(values):
            raise ValueError(f"{len(values)} values but {len(keys)} keys")
        if not set(map(type, values)) <= _BYTES or (
            keys is not None and not set(map(type, keys)) <= _BYTES_OR_NONE
        ):
            raise TypeError("submit_many takes bytes values and bytes (or None) keys")
        if not values:
            return 0, 0
        if self._closed:
            self._dropped_after_close += len(values)
            return 0, 0
        if not self._started:
            self._start_worker()
        count, last = self._queue.put_many(list(zip(values, keys or repeat(None), strict=False)))
        if count < len(values):
            self._revive_worker()
        return count, last


_BYTES = frozenset((bytes,))
_BYTES_OR_NONE = frozenset((bytes, type(None)))


def _weak_callable(
    func: Callable[[], None] | None,
) -> Callable[[], Callable[[], None] | None] | None:
    """A weak reference to ``func`` (a bound method's object is not kept alive by it)."""
    if func is None:
        return None
    if hasattr(func, "__self__"):
        return weakref.WeakMethod(func)
    return lambda: func
