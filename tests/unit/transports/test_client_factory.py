"""The kafka-python client kafkalog builds its producer with: connection refusals reach the
transport, and the event loop's slow-step warning is off (in an application's process a
step's wall time is mostly the wait for the GIL, not kafka-python's own work)."""

from __future__ import annotations

import collections
import logging
from typing import Any

import pytest

from kafkalog.transports.connect import watching_client_factory


def test_the_client_does_not_warn_about_slow_event_loop_steps() -> None:
    factory = watching_client_factory(collections.deque(), lambda exc: True)
    assert factory is not None, "kafka-python 3's connection manager is there"
    client = factory(bootstrap_servers=["127.0.0.1:1"], slow_task_threshold_secs=0.1)
    try:
        assert client._net.config["slow_task_threshold_secs"] == 0
    finally:
        client.close()


def test_a_slow_step_of_the_clients_event_loop_logs_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    factory = watching_client_factory(collections.deque(), lambda exc: True)
    assert factory is not None
    client: Any = factory(bootstrap_servers=["127.0.0.1:1"])
    clock = iter([0.0, 5.0] * 8)  # every step seems to take 5 s of wall time

    def slow_step() -> None:
        return None

    try:
        caplog.set_level(logging.WARNING, logger="kafka")
        net = client._net
        monkey = pytest.MonkeyPatch()
        monkey.setattr("kafka.net.selector.time.monotonic", lambda: next(clock, 10.0))
        try:
            net.call_soon(slow_step)
            net.poll(timeout_ms=0)
        finally:
            monkey.undo()
        assert not [r for r in caplog.records if "ran for" in r.getMessage()]
    finally:
        client.close()
