"""``kafkalog sink --to opensearch`` against the real broker and a real OpenSearch 2.19:
end to end, bad records, a store outage, and a crash loop."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from conftest import ExternalBroker
from kafka import KafkaProducer
from kafka_read import consume
from ship_harness import append, log_file
from ship_harness import lines as ship_lines
from sink_harness import (
    Search,
    committed,
    kill,
    log_records,
    sink,
    stop,
    wait_for,
    wait_running,
)

from kafkalog.ship.registry import Registry

pytest.importorskip("opensearchpy")

N = 2000
KILLS = int(os.environ.get("KAFKALOG_SINK_KILLS", "5"))
# The store outage of the issue: 30 s (KAFKALOG_SINK_OUTAGE_S shortens it while iterating).
OUTAGE_S = float(os.environ.get("KAFKALOG_SINK_OUTAGE_S", "30"))


@pytest.fixture
def search(opensearch: Any) -> Iterator[Search]:
    """A client of the test's OpenSearch; the test's indices and the template go after."""
    client = Search(opensearch.url)
    client.delete("sinktest-*")
    yield client
    if opensearch.is_running:
        client.delete("sinktest-*")


def args(kafka_broker: ExternalBroker, topic: str, group: str, url: str, *extra: str) -> list:
    return ["--topic", topic, "--group", group, "--bootstrap-servers", kafka_broker.bootstrap,
            "--to", "opensearch", "--hosts", url, "--index", "sinktest-{app}-%Y.%m.%d",
            "--fallback-index", "sinktest-unrouted", *extra]


def test_every_record_is_one_document_with_the_right_content_and_mapping(
        kafka_broker: ExternalBroker, topic: str, opensearch: Any, search: Search) -> None:
    messages = log_records(kafka_broker.bootstrap, topic, N)
    group = f"g-{uuid.uuid4().hex[:8]}"
    process = sink(*args(kafka_broker, topic, group, opensearch.url))
    wait_for(lambda: search.count("sinktest-*") >= N, process=process, what=f"{N} documents")
    stop(process)
    docs = search.docs("sinktest-*")
    assert len(docs) == N
    assert sorted(d["_source"]["message"] for d in docs) == sorted(messages)
    assert all(d["_id"] == d["_source"]["id"] for d in docs)
    today = time.strftime("%Y.%m.%d", time.gmtime())
    assert {d["_index"] for d in docs} == {f"sinktest-shop-{today}"}
    one = next(d["_source"] for d in docs if d["_source"]["message"] == "record 000042")
    assert (one["n"], one["user"], one["level"], one["logger"].startswith("sink-app-")) == (
        42, "u0", "INFO", True)
    props = search.mapping("sinktest-shop-*")
    assert props["@timestamp"]["type"] == "date"
    assert props["level"]["type"] == "keyword"
    assert props["message"]["type"] == "text"
    assert props["line"]["type"] == "long"
    assert props["n"]["type"] == "long"  # an extra: the store's dynamic mapping


def test_a_mapping_conflict_and_a_non_json_record_are_dead_lettered_and_the_rest_indexed(
        kafka_broker: ExternalBroker, topic: str, opensearch: Any, search: Search) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    good = [orjson.dumps({"id": f"ok-{n}", "app": "shop", "order": n,
                          "@timestamp": "2026-01-02T03:04:05Z"}) for n in range(20)]
    for value in good[:10]:
        producer.send(topic, value, partition=0)
    producer.send(topic, orjson.dumps({"id": "conflict", "app": "shop", "order": "not a number",
                                       "@timestamp": "2026-01-02T03:04:05Z"}), partition=0)
    producer.send(topic, b"plain text, not JSON", partition=0)
    for value in good[10:]:
        producer.send(topic, value, partition=0)
    producer.flush()
    producer.close()
    group = f"g-{uuid.uuid4().hex[:8]}"
    process = sink(*args(kafka_broker, topic, group, opensearch.url, "--on-invalid",
                         "dead-letter"))
    dlq = consume(kafka_broker.bootstrap, f"{group}.dead-letters", 2, timeout_s=90)
    wait_for(lambda: search.count("sinktest-*") >= 20, process=process, what="20 documents")
    stop(process)
    letters = sorted((orjson.loads(r.value) for r in dlq), key=lambda d: d["offset"])
    assert [(d["topic"], d["partition"], d["offset"]) for d in letters] == [
        (topic, 0, 10), (topic, 0, 11)]
    assert "mapper_parsing_exception" in letters[0]["reason"]
    assert letters[0]["id"] == "conflict"
    assert letters[1]["reason"] == "not JSON"
    assert letters[1]["value"] == "plain text, not JSON"
    assert {d["_id"] for d in search.docs("sinktest-*")} == {f"ok-{n}" for n in range(20)}
    assert committed(kafka_broker.bootstrap, group, topic, [0]) == {0: 22}


def test_a_store_outage_ends_with_every_record_indexed_and_nothing_committed_meanwhile(
        kafka_broker: ExternalBroker, topic: str, opensearch: Any, search: Search) -> None:
    log_records(kafka_broker.bootstrap, topic, N // 2)
    group = f"g-{uuid.uuid4().hex[:8]}"
    process = sink(*args(kafka_broker, topic, group, opensearch.url),
                   "--bulk-max-records", "200")
    wait_for(lambda: search.count("sinktest-*") >= N // 2, process=process, what="first half")
    wait_for(lambda: sum(committed(kafka_broker.bootstrap, group, topic, [0, 1, 2]).values())
             >= N // 2, process=process, what="the first half committed")
    opensearch.stop()
    try:
        log_records(kafka_broker.bootstrap, topic, N // 2, first=N // 2)
        before = committed(kafka_broker.bootstrap, group, topic, [0, 1, 2])
        down_until = time.monotonic() + OUTAGE_S  # the outage, bounded
        while time.monotonic() < down_until:
            assert process.poll() is None, process.communicate()[0]
            time.sleep(0.5)  # the outage's length, not a synchronisation
        assert committed(kafka_broker.bootstrap, group, topic, [0, 1, 2]) == before
    finally:
        opensearch.start()
    wait_for(lambda: search.count("sinktest-*") >= N, process=process, timeout_s=120,
             what="every record after the outage")
    stop(process)
    assert search.count("sinktest-*") == N


def test_a_crash_loop_ends_with_every_record_once(
        kafka_broker: ExternalBroker, topic: str, opensearch: Any, search: Search,
        tmp_path: Path) -> None:
    group = f"g-{uuid.uuid4().hex[:8]}"
    config = tmp_path / "sink.toml"
    # A killed member holds its partitions until its session runs out (the broker's minimum).
    config.write_text("bulk_max_records = 100\ncommit_interval_ms = 200\n[consumer]\n"
                      "session_timeout_ms = 6000\nheartbeat_interval_ms = 1000\n")
    total = N * 2
    parts = 20
    logged = [0]
    done = threading.Event()

    def app() -> None:  # records flow while the sink is killed
        try:
            for part in range(parts):
                log_records(kafka_broker.bootstrap, topic, total // parts,
                            first=part * total // parts)
                logged[0] += total // parts
                time.sleep(0.3)  # pacing the flow, not a synchronisation
        finally:
            done.set()

    writer = threading.Thread(target=app)
    writer.start()
    rng = random.Random(11)
    try:
        for _ in range(KILLS):
            process = sink("--config", str(config),
                           *args(kafka_broker, topic, group, opensearch.url))
            seen = max(search.count("sinktest-*"), 0)
            wait_for(lambda s=seen: (search.count("sinktest-*") > s
                                     or search.count("sinktest-*") >= logged[0] > 0),
                     process=process, what="progress before the kill")
            time.sleep(rng.uniform(0, 1.0))  # a random point to kill at, not a synchronisation
            kill(process)
    finally:
        writer.join(120)
    assert done.is_set()
    process = sink("--config", str(config), *args(kafka_broker, topic, group, opensearch.url))
    wait_for(lambda: search.count("sinktest-*") >= total, process=process, timeout_s=180,
             what="every record after the kills")
    wait_running(process, kafka_broker.bootstrap, group)
    stop(process)
    docs = search.docs("sinktest-*")
    assert len(docs) == total
    assert len({d["_id"] for d in docs}) == total
    reprocessed = sum(d["_version"] - 1 for d in docs)
    print(f"{KILLS} kills: {reprocessed} records indexed again (overwrote themselves)")


def test_lines_that_kafkalog_ship_sent_twice_are_one_document_each(
        kafka_broker: ExternalBroker, topic: str, opensearch: Any, search: Search,
        tmp_path: Path) -> None:
    log = log_file(tmp_path)
    count = 300
    append(log, ship_lines(0, count))
    state = tmp_path / "state"
    ship_args = ["--path", str(log), "--topic", topic, "--state-dir", str(state),
                 "--bootstrap-servers", kafka_broker.bootstrap]

    def ship_all() -> None:
        agent = subprocess.Popen([sys.executable, "-m", "kafkalog.cli", "ship", *ship_args],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        wait_for(lambda: {s.path: s.offset for s in Registry(state).load()}.get(str(log))
                 == log.stat().st_size, process=agent, timeout_s=120,
                 what="the agent caught up")
        stop(agent)

    ship_all()
    # The agent's registry write lost (a crash after the send and before the write): it ships
    # every line again.
    for name in ("registry.json", "registry.json.bak"):
        (state / name).unlink(missing_ok=True)
    ship_all()
    assert len(consume(kafka_broker.bootstrap, topic, 2 * count)) == 2 * count
    group = f"g-{uuid.uuid4().hex[:8]}"
    process = sink(*args(kafka_broker, topic, group, opensearch.url), "--index",
                   "sinktest-ship-%Y.%m.%d")
    wait_for(lambda: sum(committed(kafka_broker.bootstrap, group, topic, [0, 1, 2]).values())
             >= 2 * count, process=process, timeout_s=120, what="both copies read and written")
    stop(process)
    docs = search.docs("sinktest-*")
    assert len(docs) == count
    assert all(d["_version"] == 2 for d in docs)  # each line written twice, over itself
