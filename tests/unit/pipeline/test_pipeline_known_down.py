"""Once Kafka is known to be down, a caller waiting for its records (``sync_level``,
``flush()``) has them spilled, fsynced, at once: it does not wait out retries or an attempt
that is still waiting to connect."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

from kafkalog import TransportError
from kafkalog.pipeline import Outcome, Pipeline
from kafkalog.transports import OutRecord, Transport


class DownTransport:
    """Fails every send. ``slow``: each send first waits its whole timeout for a connection,
    as kafka-python's does, unless ``hurried`` is set. ``up``: acknowledges everything."""

    def __init__(self) -> None:
        self.hurried = threading.Event()
        self.slow = False
        self.up = False
        self.sent: list[OutRecord] = []
        self.calls = 0
        self.interrupted = threading.Event()

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        self.calls += 1
        if self.up:
            self.sent.extend(records)
            return [None] * len(records)
        if self.slow:
            self.hurried.wait(timeout_s)
        err = TransportError("still connecting", retriable=True, cause_name="ConnectionRefused")
        return [err] * len(records)

    def close(self, timeout_s: float) -> None:
        pass

    def interrupt(self) -> None:
        self.interrupted.set()
        self.hurried.set()

    def disown(self) -> None:
        pass


class Heard:
    def __init__(self) -> None:
        self.outcomes: dict[int, Outcome] = {}

    def __call__(self, outcome: Outcome, numbers: range) -> None:
        for n in numbers:
            self.outcomes[n] = outcome


def make(tmp_path: Path, transport: DownTransport, heard: Heard) -> Pipeline:
    def factory(_config: object, _hook: object) -> Transport:
        return transport

    return Pipeline(
        "t", transport_factory=factory, on_outcome=heard, spill_dir=str(tmp_path),
        linger_ms=0, spill_after_ms=60_000, request_timeout_ms=60_000, retry_backoff_ms=1,
        retry_backoff_max_ms=50, close_timeout_ms=2000,
    )  # fmt: skip


def test_a_waiting_caller_gets_its_records_spilled_once_kafka_is_known_down(
    tmp_path: Path,
) -> None:
    transport, heard = DownTransport(), Heard()
    pipeline = make(tmp_path, transport, heard)
    try:
        first = pipeline.submit(b"first")
        # Nobody waits: the first record is retried in memory (spill_after_ms is a minute).
        assert _eventually(lambda: transport.calls >= 2)  # Kafka is known to be down
        assert pipeline.resolved() == 0
        # A caller starts waiting: the retries end and the record is spilled, fsynced.
        assert pipeline.wait(first, timeout_s=20)
        assert heard.outcomes[first] is Outcome.SPILLED

        # Now every attempt waits its whole timeout (a minute) to connect, unless hurried.
        transport.slow = True
        for i in range(3):
            number = pipeline.submit(b"sync %d" % i)
            assert pipeline.wait(number, timeout_s=20), "released by the spill, not a timeout"
            assert heard.outcomes[number] is Outcome.SPILLED
        assert pipeline.stats()["spilled"] == 4

        transport.slow, transport.up = False, True  # Kafka is back: the spill is replayed
        transport.hurried.set()
        assert _eventually(lambda: pipeline.stats()["spill_pending_records"] == 0)
        assert [value for value, _ in transport.sent] == [b"first", b"sync 0", b"sync 1",
                                                          b"sync 2"]
    finally:
        pipeline.close()


def test_without_a_waiting_caller_records_are_retried_in_memory_first(tmp_path: Path) -> None:
    transport, heard = DownTransport(), Heard()
    pipeline = make(tmp_path, transport, heard)
    try:
        number = pipeline.submit(b"r")
        assert _eventually(lambda: transport.calls >= 3)  # retried, and still in memory
        assert number not in heard.outcomes
        assert pipeline.stats()["spilled"] == 0
    finally:
        pipeline.close()


def _eventually(predicate: object, timeout_s: float = 20.0) -> bool:
    done = threading.Event()
    for _ in range(int(timeout_s / 0.02)):
        if predicate():  # type: ignore[operator]
            return True
        done.wait(0.02)
    return bool(predicate())  # type: ignore[operator]
