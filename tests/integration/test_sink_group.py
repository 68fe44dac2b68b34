"""Two ``kafkalog sink`` processes in one group against the real broker: they share the
partitions, and when one is killed the other takes its partitions over."""

from __future__ import annotations

import uuid
from pathlib import Path

from conftest import ExternalBroker
from sink_harness import file_docs, group_members, kill, log_records, sink, stop, wait_for

N = 6000


def test_two_sinks_share_the_partitions_and_one_takes_over_from_a_killed_one(
        kafka_broker: ExternalBroker, topic: str, tmp_path: Path) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    first, second = tmp_path / "a", tmp_path / "b"

    def start(out: Path):
        config = tmp_path / f"{out.name}.toml"
        config.write_text(
            f'topics = ["{topic}"]\ngroup = "{group}"\n'
            f'bootstrap_servers = "{kafka_broker.bootstrap}"\nto = "file:{out}"\n'
            "bulk_max_records = 100\ncommit_interval_ms = 100\n"
            "[consumer]\nsession_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n"
            "max_poll_records = 100\n")
        return sink("--config", str(config))

    a = start(first)
    b = start(second)

    def ids() -> set[str]:
        return {d["id"] for out in (first, second) if out.is_dir() for d in file_docs(out)}

    wait_for(lambda: len(group_members(kafka_broker.bootstrap, group)) == 2, process=b,
             what="both sinks in the group")
    log_records(kafka_broker.bootstrap, topic, N // 2)
    wait_for(lambda: len(ids()) >= N // 2, process=b, what="the first half")
    assert file_docs(first) and file_docs(second)  # both members got partitions
    kill(a)
    log_records(kafka_broker.bootstrap, topic, N // 2, first=N // 2)
    wait_for(lambda: len(ids()) >= N, process=b, what="every record, after the kill")
    stop(b)
    assert len(ids()) == N
