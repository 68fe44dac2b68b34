"""The spill store against a real broker: outages, crashes, shared directories, dead letters."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest
from broker.kraft import KafkaBroker, create_topic
from kafka_read import consume, values

from kafkalog import KafkaHandler
from kafkalog.cli.main import main as cli_main
from kafkalog.cli.spill_info import spill_info

APP = Path(__file__).with_name("spill_app.py")


def new_topic() -> str:
    return f"spill-{uuid.uuid4().hex[:12]}"


def run_app(broker: KafkaBroker, topic: str, spill: Path, count: int, prefix: str, *,
            mode: str, transport: str = "kafka-python") -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APP), broker.bootstrap, topic, str(spill), str(count), prefix, mode,
         transport],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def assert_per_key_order(got: list[dict[str, Any]]) -> None:
    by_key: dict[str, list[int]] = defaultdict(list)
    for v in got:
        by_key[v["k"]].append(v["seq"])
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"key {key} out of order"


def test_broker_down_from_the_start_then_everything_arrives_in_key_order(
    fresh_broker: KafkaBroker, tmp_path: Path, logger: logging.Logger, transport_name: str
) -> None:
    topic = new_topic()
    fresh_broker.stop()
    handler = KafkaHandler(topic=topic, bootstrap_servers=fresh_broker.bootstrap,
                           spill_dir=str(tmp_path / "spill"), key="k", request_timeout_ms=2000,
                           transport=transport_name)
    logger.addHandler(handler)
    worst = 0.0
    for i in range(5000):
        started = time.perf_counter()
        logger.info("down %d", i, extra={"k": f"k{i % 7}", "seq": i})
        worst = max(worst, time.perf_counter() - started)
    assert worst < 0.5, f"a log call took {worst:.3f}s while the broker was down"
    fresh_broker.start()
    assert handler.flush(60)
    records = consume(fresh_broker.bootstrap, topic, 5000, timeout_s=90)
    got = values(records)
    assert sorted(v["seq"] for v in got) == list(range(5000))
    assert_per_key_order(got)
    stats = handler.stats()
    assert stats["spilled"] > 0
    assert stats["failed"] == stats["dropped"] == 0
    handler.close()
    assert not list((tmp_path / "spill").glob("*.seg"))  # replayed segments are deleted


def test_records_of_a_killed_process_are_replayed_by_the_next(
    fresh_broker: KafkaBroker, tmp_path: Path, transport_name: str
) -> None:
    topic = new_topic()
    spill = tmp_path / "spill"
    fresh_broker.stop()
    crashed = run_app(fresh_broker, topic, spill, 2000, "a", mode="kill", transport=transport_name)
    out, _ = crashed.communicate(timeout=90)
    assert crashed.returncode == -signal.SIGKILL
    assert "spilled 2000" in out
    assert any(spill.glob("*.seg"))
    fresh_broker.start()
    nxt = run_app(fresh_broker, topic, spill, 100, "b", mode="close", transport=transport_name)
    out, _ = nxt.communicate(timeout=90)
    assert nxt.returncode == 0, out
    got = values(consume(fresh_broker.bootstrap, topic, 2100, timeout_s=90))
    assert sorted(v["message"] for v in got) == sorted(
        [f"a-{i}" for i in range(2000)] + [f"b-{i}" for i in range(100)]
    )
    assert_per_key_order(got)
    assert not list(spill.glob("*.seg"))


def test_shared_spill_dir_dead_writer_is_adopted_once(
    fresh_broker: KafkaBroker, tmp_path: Path
) -> None:
    topic = new_topic()
    spill = tmp_path / "shared"
    fresh_broker.stop()
    alive = [run_app(fresh_broker, topic, spill, 500, p, mode="wait") for p in ("a", "b")]
    victim = run_app(fresh_broker, topic, spill, 500, "c", mode="kill")
    victim.communicate(timeout=90)
    assert victim.returncode == -signal.SIGKILL
    for proc in alive:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
    fresh_broker.start()
    adopter = run_app(fresh_broker, topic, spill, 10, "d", mode="close")
    adopter.communicate(timeout=90)
    assert adopter.returncode == 0
    # The live writers replay their own spill once the broker answers. (close() would not
    # wait for it while their last attempt had failed: Kafka looked unreachable then.)
    deadline = time.monotonic() + 90
    while any(spill.glob("*.seg")) and time.monotonic() < deadline:
        time.sleep(0.2)  # other processes' progress, polled; bounded
    assert not list(spill.glob("*.seg")), "the live writers did not replay their spill"
    for proc in alive:
        out, _ = proc.communicate("go\n", timeout=90)
        assert proc.returncode == 0
        # "stats delivered replayed pending": a live writer replays its own spill before exit.
        assert out.split()[-1] == "0", f"records left on disk: {out!r}"
    got = values(consume(fresh_broker.bootstrap, topic, 1510, timeout_s=90))
    messages = [v["message"] for v in got]
    expected = {f"{p}-{i}" for p in "abc" for i in range(500)} | {f"d-{i}" for i in range(10)}
    assert set(messages) == expected
    assert len(messages) == len(expected), "a record was delivered twice"
    assert not list(spill.glob("*.seg"))


def test_queue_overflow_goes_to_the_spill_and_is_delivered(
    fresh_broker: KafkaBroker, tmp_path: Path, logger: logging.Logger
) -> None:
    topic = new_topic()
    fresh_broker.stop()
    handler = KafkaHandler(topic=topic, bootstrap_servers=fresh_broker.bootstrap,
                           spill_dir=str(tmp_path / "spill"), queue_max_records=50,
                           spill_after_ms=60000, request_timeout_ms=2000)
    logger.addHandler(handler)
    for i in range(3000):
        logger.info("burst %d", i)
    assert handler.stats()["overflowed_to_spill"] > 0
    fresh_broker.start()
    assert handler.flush(60)
    got = values(consume(fresh_broker.bootstrap, topic, 3000, timeout_s=90))
    assert sorted(int(v["message"].split()[1]) for v in got) == list(range(3000))


def test_records_kafka_refuses_go_to_the_dead_letter_topic(
    kafka_broker: Any, tmp_path: Path, logger: logging.Logger, transport_name: str
) -> None:
    topic = create_topic(kafka_broker.bootstrap, new_topic(), 1,
                         config={"max.message.bytes": 2000})
    dlq = new_topic()
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                           spill_dir=str(tmp_path / "spill"), dead_letter_topic=dlq,
                           transport=transport_name)
    logger.addHandler(handler)
    logger.info("small")
    logger.info("big %s", "x" * 5000)
    assert handler.flush(30) is False  # one record did not reach its topic
    assert [v["message"] for v in values(consume(kafka_broker.bootstrap, topic, 1))] == ["small"]
    dead = values(consume(kafka_broker.bootstrap, dlq, 1))
    assert [v["message"][:5] for v in dead] == ["big x"]
    assert handler.stats()["dead_lettered"] == 1


def test_without_a_dead_letter_topic_refused_records_stay_on_disk(
    kafka_broker: Any, tmp_path: Path, logger: logging.Logger
) -> None:
    topic = create_topic(kafka_broker.bootstrap, new_topic(), 1,
                         config={"max.message.bytes": 2000})
    spill = tmp_path / "spill"
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                           spill_dir=str(spill))
    logger.addHandler(handler)
    logger.info("big %s", "y" * 5000)
    assert handler.flush(30) is False
    rows = [r for r in spill_info(spill) if r["kind"] == "dead"]
    assert [r["records"] for r in rows] == [1]
    assert handler.stats()["dead_lettered"] == 1


def test_cli_replay_drains_a_dead_writers_spill(
    fresh_broker: KafkaBroker, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    transport_name: str,
) -> None:
    topic = new_topic()
    spill = tmp_path / "spill"
    fresh_broker.stop()
    crashed = run_app(fresh_broker, topic, spill, 300, "z", mode="kill")
    crashed.communicate(timeout=90)
    info = spill_info(spill)
    assert sum(r["records"] for r in info if r["kind"] == "spill") == 300
    assert all(r["writer_alive"] is False for r in info)

    # Broker still down: a clear error, non-zero exit, nothing deleted.
    code = cli_main(["replay", "--spill-dir", str(spill), "--bootstrap-servers",
                     fresh_broker.bootstrap, "--timeout", "2", "--transport", transport_name])
    assert code != 0
    assert "cannot deliver to Kafka" in capsys.readouterr().err
    assert sum(r["records"] for r in spill_info(spill) if r["kind"] == "spill") == 300

    fresh_broker.start()
    code = cli_main(["replay", "--spill-dir", str(spill), "--bootstrap-servers",
                     fresh_broker.bootstrap, "--transport", transport_name])
    assert code == 0
    got = values(consume(fresh_broker.bootstrap, topic, 300))
    assert sorted(v["seq"] for v in got) == list(range(300))
    assert not list(spill.glob("*.seg"))
    assert cli_main(["spill-info", str(spill), "--json"]) == 0
    assert orjson.loads(capsys.readouterr().out) == []
