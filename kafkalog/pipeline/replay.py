"""The one replay engine: send a spill store's records, oldest first, and acknowledge them.

The worker replays its spill with it (retrying with backoff), and so does ``kafkalog replay``
(stopping at the first batch Kafka does not take), with any transport. A record Kafka refuses
for good goes to the dead letters; a segment is deleted only once every record in it is done.
"""

from __future__ import annotations

import dataclasses

from kafkalog.errors import TransportError
from kafkalog.pipeline.counters import MAX_BATCH_BYTES, MAX_BATCH_RECORDS
from kafkalog.pipeline.sender import ConfirmedSender
from kafkalog.spill import SpillRecord, SpillStore


@dataclasses.dataclass(frozen=True)
class ReplayStep:
    """What one :func:`replay_once` did."""

    #: Records done with: acknowledged, or refused for good and dead-lettered.
    done: int
    #: Of those, the ones Kafka refused for good.
    refused: int
    #: Bytes of the values done with.
    value_bytes: int
    #: The retriable error that stopped the batch early, if one did.
    error: TransportError | None


def replay_once(
    spill: SpillStore,
    sender: ConfirmedSender,
    timeout_s: float,
    *,
    max_records: int = MAX_BATCH_RECORDS,
    max_bytes: int = MAX_BATCH_BYTES,
) -> ReplayStep | None:
    """Send the oldest batch of spilled records; None if nothing is left to replay.

    Records are acknowledged in the store up to the first one that failed with a retriable
    error; that error is in the result, and the next call starts from that record.
    """
    batch = spill.read_batch(max_records, max_bytes)
    if batch is None:
        return None
    records = batch.records
    results = sender.send(records, timeout_s)
    done = 0
    refused: list[SpillRecord] = []
    error: TransportError | None = None
    fatal: TransportError | None = None
    for record, err in zip(records, results, strict=True):
        if err is not None and err.retriable:
            error = err
            break
        if err is not None:
            refused.append(record)
            fatal = err
        done += 1
    if fatal is not None:
        sender.dead_letter(refused, fatal)
    sender.counters.delivered += done - len(refused)
    spill.ack(batch, done)
    value_bytes = sum(len(value) for value, _ in records[:done])
    return ReplayStep(done=done, refused=len(refused), value_bytes=value_bytes, error=error)
