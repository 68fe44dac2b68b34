"""The agent drops the registry entries of files deleted for good, and keeps those of files
that are still somewhere (a rotated copy outside the globs)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from kafkalog.ship.agent import ShipAgent
from kafkalog.ship.config import ship_config
from kafkalog.ship.pruning import PRUNE_GRACE_S
from kafkalog.ship.registry import Registry
from kafkalog.testing import MemoryTransport


class SteppedClock:
    """Monotonic time plus a jump the test adds to (the grace passes without sleeping)."""

    def __init__(self) -> None:
        self.jump = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.jump


def entries(tmp_path: Path) -> dict[str, int]:
    return {Path(s.path).name: s.offset for s in Registry(tmp_path / "state").load()}


def wait_for(predicate: object, what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)  # polled, bounded: the agent works on its own thread


def test_a_deleted_files_entry_goes_and_a_rotated_files_entry_stays(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"one\ntwo\n")
    (logs / "b.log").write_bytes(b"three\n")
    cfg = ship_config({"state_dir": str(tmp_path / "state"), "scan_interval_ms": 20,
                       "commit_interval_ms": 20, "linger_ms": 0, "close_inactive_ms": 100},
                      [{"name": "t", "paths": [str(logs / "*.log")], "topic": "t"}])
    clock = SteppedClock()
    transport = MemoryTransport()
    agent = ShipAgent(cfg, transport_factory=MemoryTransport.factory(transport), clock=clock)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        wait_for(lambda: agent.stats()["files_closed"] == 2, "both files closed as inactive")
        wait_for(lambda: entries(tmp_path) == {"a.log": 8, "b.log": 6}, "both offsets saved")
        (logs / "a.log").unlink()
        (logs / "b.log").rename(logs / "b.log.1")  # rotated out of the glob

        def grace_passed() -> bool:
            clock.jump += 20  # one prune check per step
            return "a.log" not in entries(tmp_path)

        wait_for(grace_passed, "the deleted file's entry dropped")
        assert clock.jump >= PRUNE_GRACE_S
        assert entries(tmp_path) == {"b.log": 6}, "the rotated file keeps its offset"
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()
    assert entries(tmp_path) == {"b.log": 6}
    assert len(transport.records) == 3
