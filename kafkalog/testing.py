"""Test doubles for users' own tests: an in-memory transport that records what it was sent.

Build a handler with ``KafkaHandler(topic="t", transport_factory=MemoryTransport.factory(store))``
and look at ``store.records`` after ``handler.flush()``; no broker needed.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

import orjson

from kafkalog.config import PipelineConfig
from kafkalog.errors import TransportError
from kafkalog.transports.base import OutRecord, Transport


class MemoryTransport:
    """A :class:`~kafkalog.transports.base.Transport` that keeps every record it acknowledges.

    ``fail_next`` makes the next calls to :meth:`send` fail: each item is a TransportError that
    every record of that call gets (use ``retriable=True`` to exercise retries).
    """

    def __init__(self) -> None:
        self.records: list[tuple[bytes, bytes | None]] = []
        self.topics: list[str | None] = []
        self.fail_next: list[TransportError] = []
        self.calls = 0
        self.closed = False
        self.disowned = False
        self.interrupted = False
        self.gate: threading.Event | None = None
        self._lock = threading.Lock()

    @classmethod
    def factory(
        cls, instance: MemoryTransport | None = None
    ) -> Callable[[PipelineConfig, Callable[[], None]], Transport]:
        """A ``transport_factory`` for :class:`~kafkalog.KafkaHandler` returning ``instance``."""
        shared = instance if instance is not None else cls()

        def build(_config: PipelineConfig, _on_new_client: Callable[[], None]) -> Transport:
            return shared

        return build

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        """Acknowledge ``records`` (or fail them, see ``fail_next``); ``topics`` notes where."""
        gate = self.gate
        if gate is not None and not self._wait_at(gate, timeout_s):
            err = TransportError("gate closed", retriable=True, cause_name="Gate")
            return [err] * len(records)
        with self._lock:
            self.calls += 1
            if self.fail_next:
                err = self.fail_next.pop(0)
                return [err] * len(records)
            self.records.extend(records)
            self.topics.extend([topic] * len(records))
        return [None] * len(records)

    def _wait_at(self, gate: threading.Event, timeout_s: float) -> bool:
        # In slices, so that interrupt() ends the wait promptly, as a real transport's does.
        deadline = time.monotonic() + timeout_s
        while not gate.is_set():
            remaining = deadline - time.monotonic()
            if self.interrupted or remaining <= 0:
                return False
            gate.wait(min(remaining, 0.02))
        return True

    def close(self, timeout_s: float) -> None:
        """Mark closed."""
        self.closed = True

    def interrupt(self) -> None:
        """Fail the send waiting at the gate, if any, and every later one that would wait."""
        self.interrupted = True

    def disown(self) -> None:
        """Mark disowned (called in a forked child)."""
        self.disowned = True

    def messages(self) -> list[dict[str, Any]]:
        """The acknowledged record values, decoded from JSON."""
        with self._lock:
            return [orjson.loads(value) for value, _key in self.records]
