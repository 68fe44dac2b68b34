"""``kafkalog ship`` with inotify, against a real broker: the periodic scan is set far beyond
the test's length, so a new file and each rotation are found through inotify alone; rename
rotation still loses and repeats nothing."""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
from broker.kraft import KafkaBroker
from ship_harness import (
    append,
    check,
    config,
    lines,
    log_file,
    running,
    wait_for,
    write_while_rotating,
)

from kafkalog.ship.registry import Registry

ROTATION_ROUNDS = int(os.environ.get("KAFKALOG_SHIP_ROUNDS", "30"))
# Ten minutes (times ten with inotify): no periodic scan happens during a test.
NO_SCAN_MS = 600_000

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="inotify is Linux's")


def new_topic() -> str:
    return f"shipi-{uuid.uuid4().hex[:12]}"


def committed(tmp_path: Path) -> dict[str, int]:
    return {s.path: s.offset for s in Registry(tmp_path / "state").load()}


def test_a_new_file_in_a_watched_directory_is_shipped_without_a_scan(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    first = log_file(tmp_path, "a.log")
    append(first, lines(0, 10))
    topic = new_topic()
    cfg = config(tmp_path, topic, kafka_broker.bootstrap, scan_interval_ms=NO_SCAN_MS)
    with running(cfg) as agent:
        wait_for(lambda: agent.stats()["events"] == 10, what="the first file shipped")
        assert agent.stats()["inotify"]["active"]
        scans = agent.stats()["scans"]
        second = log_file(tmp_path, "b.log")
        append(second, lines(10, 20))
        wait_for(lambda: agent.stats()["events"] == 20, timeout_s=30,
                 what="the new file found and shipped")
        assert agent.stats()["scans"] == scans + 1, "one scan, asked for by inotify"
        wait_for(lambda: committed(tmp_path).get(str(second)) == second.stat().st_size,
                 what="the new file committed")
    got = check(kafka_broker.bootstrap, topic, 20)
    assert got.gaps == [] and got.duplicates == {}


def test_rename_rotation_with_inotify_loses_and_repeats_nothing(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    live = log_file(tmp_path)
    topic = new_topic()
    cfg = config(tmp_path, topic, kafka_broker.bootstrap, paths=[str(live)],
                 scan_interval_ms=NO_SCAN_MS)
    with running(cfg) as agent:
        wait_for(lambda: agent.stats()["scans"] >= 1, what="the first scan")
        assert agent.stats()["inotify"]["active"]
        total = write_while_rotating(live, ROTATION_ROUNDS)
        wait_for(lambda: agent.stats()["events"] == total, what="every line read")
        wait_for(lambda: committed(tmp_path).get(str(live), -1) == live.stat().st_size,
                 what="the live file committed")
        stats = agent.stats()
    got = check(kafka_broker.bootstrap, topic, total, timeout_s=90)
    assert got.gaps == [], f"{len(got.gaps)} gaps, first {got.gaps[:5]}"
    assert got.duplicates == {}, f"{len(got.duplicates)} duplicated lines"
    assert stats["inotify"]["overflows"] == 0
    print(f"rename rotation with inotify: {ROTATION_ROUNDS} rounds, {total} lines, "
          f"{stats['scans']} scans, {stats['inotify']['events']} events, 0 gaps, 0 duplicates")
