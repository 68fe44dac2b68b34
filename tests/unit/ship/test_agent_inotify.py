"""The file agent with inotify: with its clock stopped (no timer ever comes due again after
the first turn), a new file, an append and a rename rotation are still noticed, through
inotify alone; a deletion is, long before the periodic scan; without inotify the agent falls
back to scanning."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from ship_harness import running, wait_for

from kafkalog.ship import watch
from kafkalog.ship.agent import ShipAgent
from kafkalog.ship.config import ship_config
from kafkalog.testing import MemoryTransport

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def make(tmp_path: Path, clock: Callable[[], float], pattern: str = "*.log",
         **options: Any) -> tuple[ShipAgent, MemoryTransport]:
    (tmp_path / "logs").mkdir(exist_ok=True)
    one = {"name": "t", "paths": [str(tmp_path / "logs" / pattern)], "topic": "t"}
    cfg = ship_config({"state_dir": str(tmp_path / "state"), "scan_interval_ms": 20,
                       "commit_interval_ms": 20, "linger_ms": 0, **options}, [one])
    transport = MemoryTransport()
    agent = ShipAgent(cfg, transport_factory=MemoryTransport.factory(transport), clock=clock)
    return agent, transport


def messages(transport: MemoryTransport) -> list[str]:
    return [orjson.loads(value)["message"] for value, _ in transport.records]


def stopped() -> float:
    return 0.0


@linux_only
def test_with_the_clock_stopped_new_files_and_appends_are_shipped_through_inotify(
        tmp_path: Path) -> None:
    agent, transport = make(tmp_path, stopped)
    with running(agent):
        wait_for(lambda: agent.stats()["scans"] == 1, what="the first scan")
        assert agent.stats()["inotify"]["active"]
        (tmp_path / "logs" / "a.log").write_bytes(b"one\n")
        (tmp_path / "logs" / "ignored.txt").write_bytes(b"not ours\n")
        wait_for(lambda: messages(transport) == ["one"], what="the new file shipped")
        with open(tmp_path / "logs" / "a.log", "ab") as f:
            f.write(b"two\n")
        wait_for(lambda: messages(transport) == ["one", "two"], what="the append shipped")
        scans = agent.stats()["scans"]
    assert scans == 2, "one scan at start, one for a.log; none for a name no glob matches"


@linux_only
def test_with_the_clock_stopped_a_rename_rotation_loses_and_repeats_nothing(
        tmp_path: Path) -> None:
    agent, transport = make(tmp_path, stopped, pattern="app.log")
    log = tmp_path / "logs" / "app.log"
    log.write_bytes(b"0\n")
    with running(agent):
        wait_for(lambda: messages(transport) == ["0"], what="the first line")
        for n in range(1, 6):
            with open(log, "ab") as f:
                f.write(b"%d\n" % (2 * n - 1))
            log.rename(tmp_path / "logs" / f"app.log.{n}")
            with open(tmp_path / "logs" / f"app.log.{n}", "ab") as f:
                f.write(b"%d\n" % (2 * n))  # written to the old file after its rename
            log.write_bytes(b"")
            wait_for(lambda n=n: len(transport.records) == 2 * n + 1, what=f"rotation {n}")
    assert sorted(map(int, messages(transport))) == list(range(11))


@linux_only
def test_a_deleted_file_is_noticed_without_waiting_for_the_periodic_scan(
        tmp_path: Path) -> None:
    # A real clock, and a scan interval that no test waits for: only inotify tells of the
    # deletion in time. The file is closed on the next look at every file (100 ms).
    agent, _ = make(tmp_path, time.monotonic, scan_interval_ms=600_000)
    (tmp_path / "logs" / "a.log").write_bytes(b"one\n")
    with running(agent):
        wait_for(lambda: agent.stats()["files"] == 1, what="the file opened")
        (tmp_path / "logs" / "a.log").unlink()
        wait_for(lambda: agent.stats()["files_closed"] == 1, what="the deleted file closed")


def test_without_inotify_the_agent_scans_and_polls(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify() -> Any:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(watch, "open_inotify", no_inotify)
    agent, transport = make(tmp_path, time.monotonic)
    with running(agent):
        (tmp_path / "logs" / "a.log").write_bytes(b"one\n")
        wait_for(lambda: messages(transport) == ["one"], what="the new file found by a scan")
        with open(tmp_path / "logs" / "a.log", "ab") as f:
            f.write(b"two\n")
        wait_for(lambda: messages(transport) == ["one", "two"], what="the append found by a poll")
        assert not agent.stats()["inotify"]["active"]


def test_inotify_false_in_the_config_turns_it_off(tmp_path: Path) -> None:
    agent, transport = make(tmp_path, time.monotonic, inotify=False)
    (tmp_path / "logs" / "a.log").write_bytes(b"one\n")
    with running(agent):
        wait_for(lambda: messages(transport) == ["one"], what="the file shipped by scanning")
        assert not agent.stats()["inotify"]["active"]
