"""The kafka-python producer's bootstrap thread against the transport's close: a close that
lands while the bootstrap hands its producer over must still close that producer (forced
deterministically: the close runs at the exact point of the hand-over)."""

from __future__ import annotations

import threading
from typing import Any, ClassVar

import pytest
from race_hooks import NoticingLock, run_aside

from kafkalog.transports import connect
from kafkalog.transports.connect import ConnectAttempt


class FakeProducer:
    """Built once ``gate`` is set (the test's set-up is done by then); counts its closes."""

    gate: ClassVar[threading.Event] = threading.Event()
    built: ClassVar[list[FakeProducer]] = []

    def __init__(self, **_settings: Any) -> None:
        assert FakeProducer.gate.wait(30.0)
        self.closes = 0
        FakeProducer.built.append(self)

    def close(self, timeout: float | None = None) -> None:
        self.closes += 1


class HandOverAttempt(ConnectAttempt):
    """Runs ``on_check`` when the bootstrap thread reads the abandoned flag, as it decides
    whether to hand its producer over; the read value is the one from before the hook."""

    on_check: Any = None

    @property  # type: ignore[override]
    def _abandoned(self) -> bool:
        value = self._flag
        hook, HandOverAttempt.on_check = HandOverAttempt.on_check, None
        if hook is not None and threading.current_thread().name == "kafkalog-connect":
            hook()
        return value

    @_abandoned.setter
    def _abandoned(self, value: bool) -> None:
        self._flag = value


def test_a_close_during_the_hand_over_of_a_new_producer_still_closes_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The bootstrap thread saw "not abandoned", the transport's close() then set the flag and
    # found no producer yet, and the thread handed the producer over to nobody: its I/O
    # thread and sockets lived on.
    monkeypatch.setattr(connect.kafka, "KafkaProducer", FakeProducer)
    FakeProducer.gate.clear()
    FakeProducer.built.clear()
    settled = threading.Event()  # the close is done, or waits for the hand-over's lock
    closers: list[threading.Thread] = []
    attempt = HandOverAttempt({"bootstrap_servers": []}, lambda exc: False)
    attempt._lock = NoticingLock(settled)  # type: ignore[assignment]
    HandOverAttempt.on_check = lambda: closers.append(run_aside(attempt.abandon, settled))
    FakeProducer.gate.set()
    assert attempt.done.wait(30.0)
    assert len(closers) == 1, "the hand-over did not check the flag"
    closers[0].join(30.0)
    assert not closers[0].is_alive()
    assert [p.closes for p in FakeProducer.built] == [1]
