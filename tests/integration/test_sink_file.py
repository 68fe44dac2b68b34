"""``kafkalog sink --to file:DIR`` against the real broker: every record in the files, rotation,
and a SIGKILL'd sink that loses nothing it committed."""

from __future__ import annotations

import random
import uuid
from collections import Counter
from pathlib import Path

import orjson
from broker.kraft import create_topic
from conftest import ExternalBroker
from kafka import KafkaConsumer, TopicPartition
from sink_harness import (
    committed,
    file_docs,
    file_lines,
    group_state,
    kill,
    log_records,
    records_below,
    sink,
    stop,
    wait_for,
    wait_running,
)

N = 3000


def config_file(tmp_path: Path, topic: str, group: str, bootstrap: str, out: Path) -> Path:
    path = tmp_path / f"sink-{uuid.uuid4().hex[:6]}.toml"
    path.write_text(
        f'topics = ["{topic}"]\ngroup = "{group}"\nbootstrap_servers = "{bootstrap}"\n'
        f'to = "file:{out}"\nfile_max_bytes = 65536\nbulk_max_records = 200\n'
        "commit_interval_ms = 100\nshutdown_timeout_ms = 5000\n"
        # A killed member holds its partitions until this runs out (the broker's minimum).
        "[consumer]\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n")
    return path


def test_every_record_logged_is_one_line_in_the_rotated_files(
        kafka_broker: ExternalBroker, topic: str, tmp_path: Path) -> None:
    messages = log_records(kafka_broker.bootstrap, topic, N)
    out = tmp_path / "archive"
    group = f"g-{uuid.uuid4().hex[:8]}"
    # The flags as the issue writes them; the sink starts after the app logged: from earliest.
    process = sink("--topic", topic, "--group", group, "--bootstrap-servers",
                   kafka_broker.bootstrap, "--to", f"file:{out}")
    wait_for(lambda: out.is_dir() and len(file_lines(out)) >= N, process=process,
             what=f"{N} lines")
    text = stop(process)
    assert f"{N:,} written" in text
    # It left the group on its way out: no wait for the session timeout at the next start.
    assert group_state(kafka_broker.bootstrap, group) == "Empty"
    docs = file_docs(out)
    assert sorted(d["message"] for d in docs) == sorted(messages)
    assert len({d["id"] for d in docs}) == N
    sample = next(d for d in docs if d["message"] == "record 000042")
    assert (sample["n"], sample["user"], sample["app"], sample["level"]) == (42, "u0", "shop",
                                                                              "INFO")
    assert not list(out.glob("*.open"))  # a clean stop finishes the open file
    assert committed(kafka_broker.bootstrap, group, topic, [0, 1, 2]) == \
        _end_offsets(kafka_broker.bootstrap, topic)


def test_files_rotate_by_size_and_are_compressed(
        kafka_broker: ExternalBroker, topic: str, tmp_path: Path) -> None:
    log_records(kafka_broker.bootstrap, topic, N)
    out = tmp_path / "archive"
    group = f"g-{uuid.uuid4().hex[:8]}"
    process = sink("--config", str(config_file(tmp_path, topic, group,
                                               kafka_broker.bootstrap, out)))
    wait_for(lambda: out.is_dir() and len(file_lines(out)) >= N, process=process,
             what=f"{N} lines")
    stop(process)
    finished = list(out.glob("*.ndjson.gz"))
    assert len(finished) >= 3  # about 900 KB of records in files of 64 KiB
    assert len(file_lines(out)) == N


def test_a_killed_sink_loses_nothing_it_committed(
        kafka_broker: ExternalBroker, tmp_path: Path) -> None:
    topic = create_topic(kafka_broker.bootstrap, f"sink-kill-{uuid.uuid4().hex[:8]}", 3)
    out = tmp_path / "archive"
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = config_file(tmp_path, topic, group, kafka_broker.bootstrap, out)
    rng = random.Random(5)
    total = 0
    for round_ in range(3):
        log_records(kafka_broker.bootstrap, topic, N // 3, first=total)
        total += N // 3
        process = sink("--config", str(config))
        target = rng.randint(1, total)
        wait_for(lambda t=target: out.is_dir() and len(file_lines(out)) >= t,
                 process=process, what=f"{target} lines (round {round_})")
        if round_ == 1:  # one kill at least with commits made: the case that can fail
            wait_for(lambda: bool(committed(kafka_broker.bootstrap, group, topic, [0, 1, 2])),
                     process=process, what="a commit")
        kill(process)
        # Everything below the committed offsets must be in the files.
        offsets = committed(kafka_broker.bootstrap, group, topic, [0, 1, 2])
        below = records_below(kafka_broker.bootstrap, topic, offsets)
        ids = {d["id"] for d in file_docs(out)}
        missing = [r.offset for r in below if _id(r.value) not in ids]
        assert not missing, f"committed but not in the files: {missing[:10]}"
    process = sink("--config", str(config))
    wait_for(lambda: len({d["id"] for d in file_docs(out)}) >= total, process=process,
             what="every record after the restarts")
    wait_running(process, kafka_broker.bootstrap, group)
    stop(process)
    counts = Counter(d["id"] for d in file_docs(out))
    assert len(counts) == total
    print(f"written twice after the kills: {sum(counts.values()) - total}")


def _id(value: bytes) -> str:
    return str(orjson.loads(value)["id"])


def _end_offsets(bootstrap: str, topic: str) -> dict[int, int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        tps = [TopicPartition(topic, p) for p in range(3)]
        return {tp.partition: int(n) for tp, n in consumer.end_offsets(tps).items()}
    finally:
        consumer.close()


def test_a_new_group_from_latest_skips_the_backlog(
        kafka_broker: ExternalBroker, topic: str, tmp_path: Path) -> None:
    backlog = set(log_records(kafka_broker.bootstrap, topic, 500))
    out = tmp_path / "archive"
    group = f"g-{uuid.uuid4().hex[:8]}"
    process = sink("--topic", topic, "--group", group, "--bootstrap-servers",
                   kafka_broker.bootstrap, "--to", f"file:{out}", "--from", "latest")
    wait_running(process, kafka_broker.bootstrap, group)
    # Its position is taken at its first fetch: new records are logged until some arrive.
    fresh: list[str] = []
    for batch in range(20):
        fresh += log_records(kafka_broker.bootstrap, topic, 50, first=500 + 50 * batch)
        if out.is_dir() and file_lines(out):
            break
    wait_for(lambda: out.is_dir() and len(file_lines(out)) > 0, process=process,
             what="new records")
    stop(process)
    messages = {d["message"] for d in file_docs(out)}
    assert messages and messages <= set(fresh)
    assert not messages & backlog
