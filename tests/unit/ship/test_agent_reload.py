"""Reloads asked for by SIGHUP: one that arrives while the previous one is being applied is
applied too, at the next turn (forced deterministically: it is asked for at that point)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kafkalog.ship.agent import ShipAgent
from kafkalog.ship.config import ShipConfig, ship_config
from kafkalog.testing import MemoryTransport


def config(tmp_path: Path, scan_interval_ms: int) -> ShipConfig:
    one = {"name": "t", "paths": [str(tmp_path / "logs" / "*.log")], "topic": "t"}
    return ship_config({"state_dir": str(tmp_path / "state"), "linger_ms": 0,
                        "scan_interval_ms": scan_interval_ms, "commit_interval_ms": 20}, [one])


def test_a_reload_asked_for_while_the_previous_is_applied_is_not_lost(tmp_path: Path) -> None:
    # The loop took the first config, the second SIGHUP stored its own, and the reload then
    # cleared it unseen: the agent ran on with the older config.
    (tmp_path / "logs").mkdir()
    agent = ShipAgent(config(tmp_path, 20),
                      transport_factory=MemoryTransport.factory(MemoryTransport()))
    first, second = config(tmp_path, 30), config(tmp_path, 40)
    apply = agent._reload

    def second_sighup_as_the_first_is_applied(new: ShipConfig) -> None:
        del agent._reload  # once: the method itself from now on
        agent.request_reload(second)
        apply(new)

    agent._reload = second_sighup_as_the_first_is_applied  # type: ignore[method-assign]
    agent.request_reload(first)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while agent.stats()["reloads"] < 2:
            assert time.monotonic() < deadline, "the second reload was lost"
            time.sleep(0.01)  # polled, bounded: the agent works on its own thread
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert agent._config.scan_interval_ms == 40
