"""Sending one batch through a transport, with what every caller needs around it.

Shared by the worker (fresh records and spill replay) and ``kafkalog replay``: the confirm
step for refused records, the per-request distributions, and keeping what Kafka refuses for
good (dead-letter topic, else dead-letter segment) instead of dropping it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Sequence

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.errors import TransportError
from kafkalog.pipeline.counters import WorkerCounters
from kafkalog.spill import SpillRecord, SpillStore
from kafkalog.transports import Transport


@dataclasses.dataclass(kw_only=True)
class ConfirmedSender:
    """Sends batches of records for ``topic`` and keeps their refusals."""

    transport: Transport
    counters: WorkerCounters
    topic: str
    request_timeout_s: float
    dead_letter_topic: str | None = None
    #: Where refused records go without a dead-letter topic (a dead-letter segment).
    spill: SpillStore | None = None
    warnings: RateLimitedWarnings = dataclasses.field(default_factory=RateLimitedWarnings)
    clock: Callable[[], float] = time.monotonic

    def send(
        self, records: Sequence[SpillRecord], timeout_s: float
    ) -> list[TransportError | None]:
        """Send ``records``; re-send each refused one alone to see if Kafka really refuses it.

        One result per record: None if acknowledged, else the error. After one fatal error
        kafka-python fails the rest of the batch with the same error type, so a refusal of a
        record that shared a batch with the culprit proves nothing. The transport starts a new
        client after any failure, so each re-send here is clean.
        """
        started = self.clock()
        results = self.transport.send(records, timeout_s)
        self.counters.send_latencies.observe(self.clock() - started)
        self.counters.batch_sizes.observe(len(records))
        if results.count(None) == len(results):
            return results
        for i, err in enumerate(results):
            if err is not None and not err.retriable:
                results[i] = self.transport.send([records[i]], self.request_timeout_s)[0]
        return results

    def dead_letter(self, records: list[SpillRecord], err: TransportError) -> list[bool]:
        """Records Kafka will never take (a fatal error): never dropped silently.

        They go to the dead-letter topic if there is one, else (and if that fails too) to a
        dead-letter segment beside the spill. Returns, per record, whether it was kept; the
        ones that were not are counted: in ``failed``, or by the spill store (``spill_dropped``).
        """
        self.warnings.warn(
            f"dead:{err.cause_name}",
            "Kafka refused %d record(s) for topic %r (%s); sending them to the dead-letter %s",
            len(records),
            self.topic,
            err,
            self.dead_letter_topic or "segment",
        )
        self.counters.dead_lettered += len(records)
        kept = [False] * len(records)
        left = list(range(len(records)))
        if self.dead_letter_topic is not None:
            results = self.transport.send(
                records, self.request_timeout_s, topic=self.dead_letter_topic
            )
            left = [i for i in left if results[i] is not None]
            for i, result in enumerate(results):
                kept[i] = result is None
        if left and self.spill is not None:
            # (The store counts what it cannot write, in spill_dropped.)
            if self.spill.append([records[i] for i in left], dead_letter=True) == len(left):
                for i in left:
                    kept[i] = True
            return kept
        self.count_failed(len(left), err)
        return kept

    def count_failed(self, count: int, err: TransportError) -> None:
        """``count`` records are lost for ``err``: count and report them."""
        if count <= 0:
            return
        self.counters.failed += count
        self.warnings.warn(
            f"failed:{err.cause_name}",
            "lost %d record(s) for topic %r: %s",
            count,
            self.topic,
            err,
        )
