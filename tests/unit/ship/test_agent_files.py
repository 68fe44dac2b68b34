"""The file agent with an in-memory transport: inactive files are closed and reopened when they
grow, max_open_files is a bound, and multi-line events are committed only once complete."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from kafkalog.ship.agent import ShipAgent
from kafkalog.ship.config import ship_config
from kafkalog.ship.registry import Registry
from kafkalog.testing import MemoryTransport


def make(tmp_path: Path, **options: Any) -> tuple[ShipAgent, MemoryTransport]:
    one: dict[str, Any] = {"name": "t", "paths": [str(tmp_path / "logs" / "*.log")],
                           "topic": "t"}
    for name in ("multiline", "multiline_timeout_ms"):
        if name in options:
            one[name] = options.pop(name)
    cfg = ship_config({"state_dir": str(tmp_path / "state"), "scan_interval_ms": 20,
                       "commit_interval_ms": 20, "linger_ms": 0, **options}, [one])
    transport = MemoryTransport()
    return ShipAgent(cfg, transport_factory=MemoryTransport.factory(transport)), transport


@contextmanager
def running(agent: ShipAgent) -> Iterator[None]:
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(30)
    assert not thread.is_alive()


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)  # polled, bounded: the agent works on its own thread


def messages(transport: MemoryTransport) -> list[str]:
    return [orjson.loads(value)["message"] for value, _ in transport.records]


def offsets(tmp_path: Path) -> dict[str, int]:
    return {Path(s.path).name: s.offset for s in Registry(tmp_path / "state").load()}


def test_an_inactive_file_is_closed_and_reopened_where_it_stopped(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "a.log"
    log.write_bytes(b"one\ntwo\n")
    agent, transport = make(tmp_path, close_inactive_ms=100)
    with running(agent):
        wait_for(lambda: agent.stats()["files_closed"] == 1, "the quiet file closed")
        assert agent.stats()["files"] == 0
        # Saved within commit_interval_ms of the commit, which may come just after the close.
        wait_for(lambda: offsets(tmp_path).get("a.log") == 8, "its offset kept")
        with open(log, "ab") as f:
            f.write(b"three\n")
        wait_for(lambda: len(transport.records) == 3, "the grown file read again")
    assert messages(transport) == ["one", "two", "three"], "from where it stopped, once each"
    assert agent.stats()["files_opened"] == 2


def test_max_open_files_bounds_what_is_open(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    for name in ("a", "b", "c"):
        (tmp_path / "logs" / f"{name}.log").write_bytes(f"{name}1\n".encode())
    agent, transport = make(tmp_path, max_open_files=1, close_inactive_ms=100)
    with running(agent):
        # One at a time: each closes once it is drained and quiet, and the next one opens.
        wait_for(lambda: len(transport.records) == 3, "every file read in turn")
        assert agent.stats()["files"] <= 1
    assert sorted(messages(transport)) == ["a1", "b1", "c1"]


def test_an_unfinished_multiline_event_is_not_committed_past(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "a.log"
    head = b"ERROR boom\n"
    log.write_bytes(b"INFO ok\n" + head + b"Traceback (most recent call last):\n")
    agent, transport = make(tmp_path, multiline="python", multiline_timeout_ms=60_000)
    with running(agent):
        wait_for(lambda: len(transport.records) == 1, "the first, complete event")
        wait_for(lambda: offsets(tmp_path).get("a.log") == len(b"INFO ok\n"),
                 "the offset committed up to the unfinished event")
        with open(log, "ab") as f:
            f.write(b'  File "x.py", line 1, in <module>\nValueError: bad\nINFO next\n')
        wait_for(lambda: len(transport.records) == 2, "the traceback joined to its line")
    first, second = messages(transport)
    assert first == "INFO ok"
    assert second.startswith("ERROR boom\nTraceback") and second.endswith("ValueError: bad")
    assert offsets(tmp_path)["a.log"] == log.stat().st_size - len(b"INFO next\n")


def test_a_queue_smaller_than_a_chunk_holds_reading_back_and_loses_nothing(
        tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "a.log"
    lines = [f"line {n:05d} {'x' * (n % 40)}" for n in range(3000)]
    log.write_bytes("".join(f"{line}\n" for line in lines).encode())
    # 25 records at most in the queue, refused at once when full: a chunk of lines is accepted
    # a prefix at a time, the rest waiting in the file's backlog.
    agent, transport = make(tmp_path, queue_max_records=25, overflow_policy="drop_newest")
    with running(agent):
        wait_for(lambda: offsets(tmp_path).get("a.log") == log.stat().st_size,
                 "every line committed")
    assert agent.stats()["refused"] > 0, "the backlog was used"
    assert messages(transport) == lines, "each line once, in order"
    records = [orjson.loads(value) for value, _ in transport.records]
    starts = [0]
    for line in lines[:-1]:
        starts.append(starts[-1] + len(line) + 1)
    assert [r["offset"] for r in records] == starts
    assert len({r["id"] for r in records}) == len(lines)
    assert all(r["id"].endswith(f"-{r['offset']:x}") for r in records)


def test_raw_records_of_one_chunk_share_its_read_time(tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "a.log").write_bytes(b"one\ntwo\nthree\n")
    agent, transport = make(tmp_path)
    with running(agent):
        wait_for(lambda: len(transport.records) == 3, "the three lines")
    stamps = {orjson.loads(value)["@timestamp"] for value, _ in transport.records}
    assert len(stamps) == 1, "one read time for the chunk they were read in"
