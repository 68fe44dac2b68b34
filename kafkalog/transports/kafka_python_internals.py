"""Whether the whole-batch hand-off may use this kafka-python's private API, and the switch that
keeps the kafka-python transport to the public ``KafkaProducer.send()`` instead.

The hand-off (:mod:`kafkalog.transports.bulk`) builds ``ProducerBatch`` and
``MemoryRecordsBuilder`` objects itself and queues them in the producer's ``_accumulator``
under its ``_tp_lock``, then wakes its ``_sender``. None of that is kafka-python's public API,
and a minor release may change it. So it is checked, not assumed:

- once per process, by doing with the installed kafka-python what the hand-off does: a batch
  filled by kafkalog must come out byte for byte as kafka-python's own ``append`` builds it,
  queue in a real accumulator, follow kafka-python's split of a batch the broker found too
  large, and be settled from kafka-python's own completion of the split batches;
- once per producer, that its accumulator, sender and metadata have what the hand-off uses,
  and that it has no partitioner, serializer or transaction of its own;
- while sending: an exception that is not one of kafka-python's errors turns the hand-off off
  in this process (see the transport's ``_send_bulk``).

Any of these failing makes the transport send record by record through the public
``send()``: the same delivery, at more CPU per record. It is said once per process, in a
warning that names what differed. ``$KAFKALOG_KAFKA_PYTHON_PUBLIC_API=1`` asks for the public
path from the start (to check a new kafka-python against it, or to rule the hand-off out).
"""

from __future__ import annotations

import os
import threading
from typing import Any

import kafka
import kafka.errors
from kafka.structs import TopicPartition

from kafkalog.diagnostics import log
from kafkalog.errors import TransportError
from kafkalog.transports import bulk
from kafkalog.transports.recordbatch import encode_chunks

try:
    from kafka.partitioner.default import DefaultPartitioner
    from kafka.producer.record_accumulator import RecordAccumulator
    from kafka.record.memory_records import MemoryRecordsBuilder

    _MISSING: ImportError | None = None
except ImportError as exc:  # reported by the self-check
    DefaultPartitioner = RecordAccumulator = MemoryRecordsBuilder = None
    _MISSING = exc

__all__ = [
    "PUBLIC_API_ENV",
    "TESTED_VERSIONS",
    "hand_off_broken",
    "hand_off_usable",
    "process_verdict",
    "public_api_forced",
]

#: The kafka-python versions CI runs, as pyproject.toml bounds them: raise both together.
TESTED_VERSIONS = ">=3.0.12,<3.1"
#: Set to 1 (or true, yes, on) to keep the kafka-python transport to the public ``send()``.
PUBLIC_API_ENV = "KAFKALOG_KAFKA_PYTHON_PUBLIC_API"
_ON = frozenset({"1", "true", "yes", "on"})
_OFF = frozenset({"", "0", "false", "no", "off"})

# What the hand-off reads or calls on a producer, by the attribute that holds it.
_PRODUCER_PARTS: dict[str, tuple[str, ...]] = {
    "_accumulator": ("config", "_tp_lock", "_batches", "_incomplete", "_appends_in_progress",
                     "_closed"),
    "_sender": ("wakeup",),
    "_metadata": ("available_partitions_for_topic",),
}
_ACCUMULATOR_SETTINGS = ("batch_size", "message_version", "compression_attrs")

_lock = threading.Lock()
# The process-wide verdict once found: None (the hand-off works here) or what differed.
_verdict: list[str | None] = []
_said: set[str] = set()  # which of the once-per-process lines were written


def public_api_forced() -> bool:
    """Whether ``$KAFKALOG_KAFKA_PYTHON_PUBLIC_API`` asks for the public ``send()`` path.

    Read when a transport is built; an unknown value is ignored, with a warning.
    """
    value = os.environ.get(PUBLIC_API_ENV, "").strip().lower()
    if value in _ON:
        _say_once("forced", "info", "kafka-python transport: sending record by record through "
                  "KafkaProducer.send(), as $%s asks", PUBLIC_API_ENV)
        return True
    if value not in _OFF:
        _say_once("bad-env", "warning", "$%s=%r is neither 1 nor 0: ignored",
                  PUBLIC_API_ENV, os.environ.get(PUBLIC_API_ENV))
    return False


def hand_off_usable(producer: Any) -> bool:
    """Whether batches may go to ``producer`` whole (see the module's docstring).

    False, with a warning once per process, if kafka-python's internals are not what the
    hand-off was written for; False, silently, if the producer has a partitioner, serializers
    or a transaction of its own (settings for which ``send()`` is the right path anyway).
    """
    differs = process_verdict() or _producer_lacks(producer)
    if differs is not None:
        hand_off_broken(differs)
        return False
    config = producer.config
    return (
        producer._accumulator.config["message_version"] == 2
        and type(config["partitioner"]) is DefaultPartitioner
        and config.get("transactional_id") is None
        and config.get("key_serializer") is None
        and config.get("value_serializer") is None
    )


def hand_off_broken(differs: str) -> None:
    """Turn the hand-off off in this process, saying why once."""
    with _lock:
        if not _verdict or _verdict[0] is None:
            _verdict[:] = [differs]
    _say_once(
        "broken", "warning",
        "kafka-python %s is not what kafkalog's whole-batch hand-off was written for (%s): "
        "sending record by record through KafkaProducer.send() instead (the same delivery, more "
        "CPU per record). kafkalog is tested with kafka-python%s; see 'Widening the "
        "kafka-python bound' in docs/transports.md", kafka.__version__, differs, TESTED_VERSIONS)


def process_verdict() -> str | None:
    """None if the hand-off works with the installed kafka-python, else what differed.

    Found once per process (:func:`_probe`), on the first producer's first batch.
    """
    with _lock:
        if not _verdict:
            _verdict.append(_probe())
        return _verdict[0]


def _say_once(key: str, level: str, message: str, *args: object) -> None:
    with _lock:
        if key in _said:
            return
        _said.add(key)
    getattr(log, level)(message, *args)


def _producer_lacks(producer: Any) -> str | None:
    """What the hand-off uses that ``producer`` does not have, or None."""
    for holder, names in _PRODUCER_PARTS.items():
        part = getattr(producer, holder, None)
        if part is None:
            return f"KafkaProducer has no {holder}"
        for name in names:
            if not hasattr(part, name):
                return f"KafkaProducer.{holder} has no {name}"
    settings = getattr(producer._accumulator, "config", None)
    if not isinstance(settings, dict):
        return "the accumulator's config is not a dict"
    missing = [name for name in _ACCUMULATOR_SETTINGS if name not in settings]
    if missing:
        return f"the accumulator's config has no {', '.join(missing)}"
    if not isinstance(getattr(producer, "config", None), dict):
        return "KafkaProducer.config is not a dict"
    return None


def _probe() -> str | None:
    """Do with the installed kafka-python what the hand-off does; None if all of it worked,
    else what did not. Never raises."""
    missing = bulk.MISSING or _MISSING
    if missing is not None:
        return f"{type(missing).__name__}: {missing}"
    try:
        return _same_bytes() or _queued_split_and_settled()
    except Exception as exc:
        log.debug("kafka-python's internals are not as expected", exc_info=True)
        return f"{type(exc).__name__}: {exc}"


_SAMPLE = [(b'{"m":"a"}', b"key"), (b"x" * 300, None), (b"", b""), (b"y" * 20000, b"k2")]
_TIME_MS = 1_700_000_000_000


def _same_bytes() -> str | None:
    """Whether a batch filled by :func:`~kafkalog.transports.bulk.fill` is byte for byte the
    batch kafka-python's own ``append`` builds of the same records."""
    builder = MemoryRecordsBuilder
    ours = builder(2, 0, 1 << 20)
    bulk.fill(ours, len(_SAMPLE), encode_chunks(_SAMPLE, 1 << 20)[0][1], _TIME_MS)
    theirs = builder(2, 0, 1 << 20)
    for value, key in _SAMPLE:
        theirs.append(_TIME_MS, key, value, [])
    ours.close()
    theirs.close()
    if bytes(ours.buffer()) != bytes(theirs.buffer()):
        return "a batch filled in one pass differs from MemoryRecordsBuilder.append's"
    return None


def _queued_split_and_settled() -> str | None:
    """Queue a batch in a real accumulator as the hand-off does, let kafka-python split it as
    it does a batch the broker finds too large, complete one half and abort the other, and
    check that every record's result is found."""
    acc = RecordAccumulator(batch_size=1 << 20, message_version=2, compression_attrs=0)
    tp = TopicPartition("kafkalog-self-check", 0)
    [chunk] = encode_chunks(_SAMPLE, 1 << 20)
    batch = bulk.append_batch(acc, tp, chunk, _TIME_MS)
    if list(acc._batches[tp]) != [batch] or batch not in acc._incomplete.all():
        return "a batch put in the accumulator is not queued there"
    if batch.record_count != len(_SAMPLE):
        return f"a filled batch counts {batch.record_count} records, not {len(_SAMPLE)}"
    positions = batch._record_futures
    acc._batches[tp].clear()  # as the sender's drain does before sending it
    batch.records.close()
    acc.split_and_reenqueue(batch)
    halves = list(acc._batches[tp])
    if len(positions.moved) != len(_SAMPLE) or len(halves) != 2:
        return "the records of a split batch were not moved to the new batches"
    refused = kafka.errors.MessageSizeTooLargeError("self-check")
    halves[0].complete(0, -1)
    halves[1].abort(refused)
    if not positions.done():
        return "the split batches' completion does not settle their records"
    results = positions.results(_as_error)
    if results is None or results.count(None) != len(halves[0]._record_futures):
        return "the records of a completed batch are not reported delivered"
    if [r is None for r in results] != sorted(r is None for r in results)[::-1]:
        return "a split batch's records are reported out of order"
    return None


def _as_error(exc: BaseException) -> TransportError:
    return TransportError(type(exc).__name__, retriable=False)
