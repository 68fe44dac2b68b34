"""``kafkalog ship`` against a real broker: every line once, through rotation, truncation,
deletion, inode reuse and outages; offsets committed only after the records are resolved."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path

import orjson
from broker.kraft import KafkaBroker
from kafka_read import consume
from ship_harness import (
    append,
    check,
    config,
    lines,
    log_file,
    numbered,
    running,
    wait_for,
    write_while_rotating,
)

from kafkalog.ship.registry import Registry

ROTATION_ROUNDS = int(os.environ.get("KAFKALOG_SHIP_ROUNDS", "30"))


def new_topic() -> str:
    return f"ship-{uuid.uuid4().hex[:12]}"


def committed(tmp_path: Path) -> dict[str, int]:
    return {s.path: s.offset for s in Registry(tmp_path / "state").load()}


def caught_up(tmp_path: Path, log: Path) -> bool:
    """Whether the registry holds ``log``'s whole length as committed."""
    return committed(tmp_path).get(str(log)) == log.stat().st_size


def test_every_line_arrives_once_and_the_offset_is_committed(
    kafka_broker: KafkaBroker, tmp_path: Path, transport_name: str
) -> None:
    log = log_file(tmp_path)
    append(log, lines(0, 3000))
    topic = new_topic()
    cfg = config(tmp_path, topic, kafka_broker.bootstrap, transport=transport_name)
    with running(cfg) as agent:
        wait_for(lambda: committed(tmp_path).get(str(log)) == log.stat().st_size,
                 what="the whole file committed")
        append(log, lines(3000, 3500) + b"line 003500 partial")
        wait_for(lambda: committed(tmp_path).get(str(log)) == 3500 * len(numbered(0)),
                 what="the appended lines committed, not the partial one")
        stats = agent.stats()
    got = check(kafka_broker.bootstrap, topic, 3500)
    assert got.gaps == [] and got.duplicates == {}, (got.gaps[:10], got.duplicates)
    assert got.received == 3500, "the partial last line is not shipped"
    first = next(r for r in got.records if r["message"].startswith("line 000000"))
    assert first["file"] == str(log) and first["offset"] == 0 and first["inode"] > 0
    assert first["id"].endswith("-0")
    assert stats["events"] == 3500


def test_rename_rotation_loses_and_repeats_nothing(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    live = log_file(tmp_path)
    topic = new_topic()
    # The agent follows the live name only: a rotated file must be read to its end anyway.
    cfg = config(tmp_path, topic, kafka_broker.bootstrap, paths=[str(live)])
    with running(cfg) as agent:
        total = write_while_rotating(live, ROTATION_ROUNDS)
        wait_for(lambda: agent.stats()["events"] == total, what="every line read")
        wait_for(lambda: committed(tmp_path).get(str(live), -1) == live.stat().st_size,
                 what="the live file committed")
    got = check(kafka_broker.bootstrap, topic, total, timeout_s=90)
    assert got.gaps == [], f"{len(got.gaps)} gaps, first {got.gaps[:5]}"
    assert got.duplicates == {}, f"{len(got.duplicates)} duplicated lines"
    print(f"rename rotation: {ROTATION_ROUNDS} rounds, {total} lines, 0 gaps, 0 duplicates")


def test_copytruncate_is_detected_and_the_file_read_again(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    log = log_file(tmp_path)
    topic = new_topic()
    append(log, lines(0, 1000))
    with running(config(tmp_path, topic, kafka_broker.bootstrap)) as agent:
        wait_for(lambda: caught_up(tmp_path, log))
        os.truncate(log, 0)  # what logrotate's copytruncate does after copying
        append(log, lines(1000, 1200))
        wait_for(lambda: agent.stats()["truncations"] == 1, what="the truncation noticed")
        wait_for(lambda: caught_up(tmp_path, log))
    got = check(kafka_broker.bootstrap, topic, 1200)
    assert got.gaps == [] and got.duplicates == {}


def test_a_deleted_file_is_drained_and_closed(
    fresh_broker: KafkaBroker, tmp_path: Path
) -> None:
    log = log_file(tmp_path)
    topic = new_topic()
    append(log, lines(0, 200))
    with running(config(tmp_path, topic, fresh_broker.bootstrap)) as agent:
        wait_for(lambda: caught_up(tmp_path, log))
        fresh_broker.stop()  # the broker stalls while the file is written and deleted
        append(log, lines(200, 700))
        wait_for(lambda: agent.stats()["events"] == 700, what="the new lines read")
        log.unlink()
        fresh_broker.start()
        wait_for(lambda: agent.stats()["files"] == 0, timeout_s=90,
                 what="the deleted file drained and closed")
        open_fds = [os.readlink(f"/proc/self/fd/{fd}") for fd in os.listdir("/proc/self/fd")
                    if os.path.exists(f"/proc/self/fd/{fd}")]
        assert not [p for p in open_fds if "app.log" in p], "a descriptor is left open"
    got = check(fresh_broker.bootstrap, topic, 700, timeout_s=90)
    assert got.gaps == [] and got.duplicates == {}


def test_a_reused_inode_is_read_from_its_start(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    log = log_file(tmp_path)
    topic = new_topic()
    append(log, lines(0, 100))
    cfg = config(tmp_path, topic, kafka_broker.bootstrap)
    with running(cfg):
        wait_for(lambda: caught_up(tmp_path, log))
    # While the agent is away the file is replaced by a shorter one in the same inode.
    with open(log, "r+b") as f:
        f.truncate(0)
        f.write(lines(100, 150))
    with running(cfg):
        wait_for(lambda: caught_up(tmp_path, log))
    got = check(kafka_broker.bootstrap, topic, 150)
    assert got.gaps == [] and got.duplicates == {}


def test_an_outage_spills_and_offsets_advance_only_after_the_spill_write(
    fresh_broker: KafkaBroker, tmp_path: Path
) -> None:
    log = log_file(tmp_path)
    topic = new_topic()
    down_s = float(os.environ.get("KAFKALOG_SHIP_OUTAGE_S", "10"))
    fresh_broker.stop()
    cfg = config(tmp_path, topic, fresh_broker.bootstrap, spill_after_ms=200,
                 request_timeout_ms=1000)
    with running(cfg) as agent:
        append(log, lines(0, 2000))
        wait_for(lambda: committed(tmp_path).get(str(log)) == log.stat().st_size,
                 what="offsets committed while the broker is down")
        stats = agent.stats()["pipelines"][topic]
        assert stats["spilled"] == 2000, "committed only once the records are durably spilled"
        assert stats["delivered"] == 0
        time.sleep(max(0.0, down_s - 1))  # the outage goes on (bounded by the test's setting)
        fresh_broker.start()
        wait_for(lambda: agent.stats()["pipelines"][topic]["replayed"] == 2000, timeout_s=90,
                 what="the spill drained")
    got = check(fresh_broker.bootstrap, topic, 2000, timeout_s=90)
    assert got.gaps == [] and got.duplicates == {}


def test_a_corrupt_registry_recovers_from_its_backup(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    log = log_file(tmp_path)
    topic = new_topic()
    append(log, lines(0, 300))
    cfg = config(tmp_path, topic, kafka_broker.bootstrap)
    with running(cfg):
        wait_for(lambda: caught_up(tmp_path, log))
        append(log, lines(300, 310))
        wait_for(lambda: caught_up(tmp_path, log))
    registry = tmp_path / "state" / "registry.json"
    registry.write_bytes(b"\0" * registry.stat().st_size)  # a crash mid-write, say
    with running(cfg):
        append(log, lines(310, 320))
        wait_for(lambda: caught_up(tmp_path, log))
    got = check(kafka_broker.bootstrap, topic, 320)
    assert got.gaps == []
    # The backup was one save behind: at most the lines of that save come again.
    assert sum(got.duplicates.values()) - len(got.duplicates) <= 10


def test_nginx_lines_become_typed_fields_in_ecs(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    log = log_file(tmp_path, "access.log")
    topic = new_topic()
    append(log, b'203.0.113.7 - - [04/Dec/2026:16:38:29 +0000] "GET /cart/?id=7 HTTP/1.1" 200 '
                b'5120 "https://shop.example/" "Mozilla/5.0 (X11; Linux x86_64)"\n')
    cfg = config(tmp_path, topic, kafka_broker.bootstrap, format="nginx", schema="ecs",
                 key="path")
    with running(cfg):
        wait_for(lambda: caught_up(tmp_path, log))
    (record,) = consume(kafka_broker.bootstrap, topic, 1)
    doc = orjson.loads(record.value)
    assert record.key == str(log).encode()
    assert doc["@timestamp"] == "2026-12-04T16:38:29.000000Z"
    assert doc["http"]["response"]["status_code"] == 200
    assert doc["http"]["response"]["body"]["bytes"] == 5120
    assert doc["http"]["request"]["method"] == "GET"
    assert doc["url"]["original"] == "/cart/?id=7"
    assert doc["log"]["file"]["path"] == str(log) and doc["log"]["offset"] == 0
