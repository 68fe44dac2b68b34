"""Helpers for the file agent's tests: a numbered-line writer, an agent run in a thread or as a
``kafkalog ship`` process, and a checker that reads the topic back and reports gaps and
duplicates."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka_read import consume

from kafkalog.ship.agent import ShipAgent
from kafkalog.ship.config import ShipConfig, ship_config


def numbered(n: int, width: int = 60) -> bytes:
    """Line ``n`` (with its newline): ``line 000042 ....``; the checker reads the number."""
    return b"line %06d " % n + b"." * width + b"\n"


def lines(first: int, stop: int) -> bytes:
    """Lines ``first`` to ``stop - 1``, numbered."""
    return b"".join(numbered(n) for n in range(first, stop))


def log_file(tmp_path: Path, name: str = "app.log") -> Path:
    """``tmp_path/logs/name`` (the directory made, the file not yet)."""
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    return logs / name


def number_of(message: str) -> int | None:
    parts = message.split(" ", 2)
    if len(parts) >= 2 and parts[0] == "line" and parts[1].isdigit():
        return int(parts[1])
    return None


@dataclasses.dataclass
class Check:
    """What came back: how many, which numbers are missing, which came more than once."""

    received: int
    gaps: list[int]
    duplicates: dict[int, int]
    records: list[dict[str, Any]]


def read_all(bootstrap: str, topic: str, timeout_s: float = 60.0) -> list[Any]:
    """Every record of ``topic`` up to its end offsets now (duplicates included)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None, max_partition_fetch_bytes=16 * 1024 * 1024)
    try:
        deadline = time.monotonic() + timeout_s
        partitions = consumer.partitions_for_topic(topic)
        while not partitions and time.monotonic() < deadline:
            time.sleep(0.1)  # metadata of a new topic; polled, bounded
            partitions = consumer.partitions_for_topic(topic)
        assert partitions, f"topic {topic} has no partitions"
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        records: list[Any] = []
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "timed out reading the topic to its end"
            for batch in consumer.poll(timeout_ms=500, max_records=100_000).values():
                records.extend(batch)
        return records
    finally:
        consumer.close()


def check(bootstrap: str, topic: str, expected: int, timeout_s: float = 60.0) -> Check:
    """Read ``topic`` and compare the line numbers with 0..expected-1 (after waiting, bounded,
    for at least ``expected`` records to be there)."""
    consume(bootstrap, topic, expected, timeout_s)
    records = [orjson.loads(r.value) for r in read_all(bootstrap, topic, timeout_s)]
    counts = Counter(n for n in (number_of(r["message"]) for r in records) if n is not None)
    gaps = [n for n in range(expected) if n not in counts]
    duplicates = {n: c for n, c in counts.items() if c > 1}
    return Check(len(records), gaps, duplicates, records)


def config(tmp_path: Path, topic: str, bootstrap: str, *, paths: list[str] | None = None,
           **options: Any) -> ShipConfig:
    """A one-input agent config following ``tmp_path/logs/*.log`` (or ``paths``)."""
    one: dict[str, Any] = {"name": "test", "paths": paths or [str(tmp_path / "logs" / "*.log")],
                           "topic": topic}
    for name in ("format", "multiline", "key", "read_from", "schema", "static_fields"):
        if name in options:
            one[name] = options.pop(name)
    top = {"state_dir": str(tmp_path / "state"), "bootstrap_servers": bootstrap,
           "scan_interval_ms": 100, "commit_interval_ms": 100, "linger_ms": 5, **options}
    return ship_config(top, [one])


@contextmanager
def running(cfg: ShipConfig | ShipAgent) -> Iterator[ShipAgent]:
    """An agent (or one made from ``cfg``) running in a thread; stopped (cleanly) on exit."""
    agent = cfg if isinstance(cfg, ShipAgent) else ShipAgent(cfg)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    thread.start()
    try:
        yield agent
    finally:
        stop.set()
        thread.join(60)
        assert not thread.is_alive(), "the agent did not stop within 60 s"


def wait_for(predicate: Any, timeout_s: float = 60.0, what: str = "condition") -> None:
    """Poll ``predicate`` (bounded) until it is true."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def write_while_rotating(live: Path, rounds: int) -> int:
    """Append numbered lines to ``live`` (50 at a time) while it is renamed away
    (``NAME.0``, ``NAME.1``...) every half second for ``rounds`` rounds, each append after a
    rename creating it anew; then 50 more. How many lines were written."""
    written = 0
    stop_writing = threading.Event()

    def writer() -> None:
        nonlocal written
        while not stop_writing.is_set():
            append(live, lines(written, written + 50))
            written += 50
            time.sleep(0.01)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        for round_ in range(rounds):
            time.sleep(0.5)  # the rotation's pace
            live.rename(live.with_name(f"{live.name}.{round_}"))
    finally:
        stop_writing.set()
        thread.join()
    append(live, lines(written, written + 50))
    return written + 50


def append(path: Path, data: bytes) -> None:
    with open(path, "ab") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def ship(*args: str) -> subprocess.Popen[str]:
    """``kafkalog ship ARGS`` as a process, its output (both streams) captured as text."""
    return subprocess.Popen([sys.executable, "-m", "kafkalog.cli", "ship", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
