"""Queue overflow into the spill never lets a record overtake an older one (per-key order).

When the queue is full (policy ``spill``) the application's thread writes the *oldest* queued
records to the spill, and keeps a slot ahead of them for the batch the worker holds, in case
that batch ends up in the spill too. Found by the reliability suite's long-outage scenario.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from kafkalog import KafkaHandler
from kafkalog.spill import SEGMENT_SUFFIX, SpillRecord, SpillStore, read_segment
from kafkalog.spill import segments as spill
from kafkalog.testing import MemoryTransport

LOOP_BOUND = 10_000


def rec(i: int) -> SpillRecord:
    return (b"%06d" % i, b"k")


def drain(store: SpillStore) -> list[SpillRecord]:
    out: list[SpillRecord] = []
    for _ in range(LOOP_BOUND):
        batch = store.read_batch(7, 4096)
        if batch is None:
            return out
        out.extend(batch.records)
        store.ack(batch, len(batch.records))
    raise AssertionError("replay never ended")


def test_records_written_into_the_reserved_slot_replay_before_later_appends(
    tmp_path: Path,
) -> None:
    store = SpillStore(tmp_path, "t", fsync="interval", segment_bytes=4096)
    store.append([rec(0), rec(1)])
    store.reserve_slot()
    store.reserve_slot()  # a second reservation for the same batch changes nothing
    store.append([rec(4), rec(5)], sync=False)
    store.append([rec(2), rec(3)], into_slot=True)
    store.append([rec(6)], into_slot=True)  # the slot is used up: this goes to the tail
    names = sorted(p.name for p in tmp_path.glob("*" + SEGMENT_SUFFIX))
    on_disk = [r for name in names for r in _records(tmp_path / name)]
    assert on_disk == [rec(i) for i in range(7)], "file name order (adoption) is record order"
    assert drain(store) == [rec(i) for i in range(7)]
    store.close()


def test_an_unused_slot_is_only_a_gap(tmp_path: Path) -> None:
    store = SpillStore(tmp_path, "t", fsync="always", segment_bytes=4096)
    store.append([rec(0)])
    store.reserve_slot()  # seals the segment without waiting for its fsync
    store.append([rec(1)], sync=False)
    store.release_slot()
    store.append([rec(2)], into_slot=True)
    store.sync()
    assert drain(store) == [rec(0), rec(1), rec(2)]
    store.close()
    assert not list(tmp_path.glob("*" + SEGMENT_SUFFIX))


def _records(path: Path) -> list[SpillRecord]:
    return read_segment(path)[1]


def _handler(tmp_path: Path, transport: MemoryTransport, **options: object) -> KafkaHandler:
    return KafkaHandler(topic="t", transport_factory=MemoryTransport.factory(transport),
                        spill_dir=str(tmp_path / "spill"), key="k", queue_max_records=20,
                        batch_size=200, **options)


def _wait(condition: object, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return
        time.sleep(0.01)  # polling another thread's progress; bounded
    raise AssertionError("condition not reached in time")


def _log_while_the_worker_holds_a_batch(handler: KafkaHandler, logger: logging.Logger,
                                        count: int) -> None:
    logger.addHandler(handler)
    logger.info("0", extra={"k": "key", "seq": 0})
    _wait(lambda: handler.stats()["queue_depth"] == 0)  # taken: the worker waits at the gate
    for i in range(1, count):
        logger.info("%d", i, extra={"k": "key", "seq": i})
    assert handler.stats()["overflowed_to_spill"] > 0


def _seqs(transport: MemoryTransport) -> list[int]:
    return [orjson.loads(value)["seq"] for value, _key in transport.records]


def test_overflow_while_the_batch_in_hand_is_delivered_keeps_the_order(
    tmp_path: Path, logger: logging.Logger
) -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()
    handler = _handler(tmp_path, transport, spill_after_ms=60_000)
    _log_while_the_worker_holds_a_batch(handler, logger, 300)
    transport.gate.set()
    assert handler.flush(20)
    _wait(lambda: len(transport.records) >= 300)
    assert _seqs(transport) == list(range(300))
    handler.close()


def test_overflow_while_the_batch_in_hand_is_spilled_keeps_the_order(
    tmp_path: Path, logger: logging.Logger
) -> None:
    transport = MemoryTransport()
    transport.gate = threading.Event()
    handler = _handler(tmp_path, transport, spill_after_ms=0, request_timeout_ms=300)
    _log_while_the_worker_holds_a_batch(handler, logger, 300)
    # The batch in hand fails and goes to the spill, into the slot kept ahead of the rest.
    _wait(lambda: handler.stats()["spilled"] == 300)
    transport.gate.set()
    assert handler.flush(20)
    _wait(lambda: len(transport.records) >= 300)
    assert _seqs(transport) == list(range(300))
    assert os.path.isdir(tmp_path / "spill")
    handler.close()


def test_an_overflow_append_does_not_wait_while_replay_reads_a_segment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The application thread that overflows holds the queue's lock while it appends: if it
    # waited for the worker reading a 16 MiB segment, every logging thread would wait too.
    store = SpillStore(tmp_path, "t", fsync="never", segment_bytes=4096)
    store.append([rec(0)])
    reading, release = threading.Event(), threading.Event()
    real_read = spill.read_segment

    def slow_read(path: Path) -> Any:
        reading.set()
        release.wait(60)
        return real_read(path)

    monkeypatch.setattr(spill, "read_segment", slow_read)
    batches: list[Any] = []
    reader = threading.Thread(target=lambda: batches.append(store.read_batch(10, 4096)))
    reader.start()
    assert reading.wait(30)
    started = time.monotonic()
    assert store.append([rec(1)], sync=False) == 1
    waited = time.monotonic() - started
    release.set()
    reader.join(10)
    assert waited < 30.0  # not until the read is released (60 s)
    assert batches[0].records == [rec(0)]
    store.ack(batches[0], 1)
    assert drain(store) == [rec(1)]
    store.close()
