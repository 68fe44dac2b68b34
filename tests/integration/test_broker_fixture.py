"""Prove the real-broker test infrastructure itself (tests/broker/kraft.py, conftest)."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterable

import pytest
from broker.kraft import KafkaBroker, KafkaCluster, consume, create_topic
from kafka import KafkaProducer


def _produce(bootstrap: str, topic: str, values: Iterable[bytes], *, partition: int = 0) -> None:
    """Send ``values`` with acks=all and wait for every acknowledgement."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap.split(","),
        acks="all",
        # Long enough to ride out a leader election, short enough to fail a test.
        request_timeout_ms=10_000,
        delivery_timeout_ms=60_000,
        max_block_ms=30_000,
    )
    try:
        futures = [producer.send(topic, value=v, partition=partition) for v in values]
        producer.flush(timeout=60)
        for future in futures:
            future.get(timeout=60)
    finally:
        producer.close(timeout=10)


def test_round_trip_on_session_broker(kafka_broker: KafkaBroker, topic: str) -> None:
    _produce(kafka_broker.bootstrap, topic, [b"hello", b"world"])

    records = consume(kafka_broker.bootstrap, topic, min_messages=2)

    assert [r.value for r in records] == [b"hello", b"world"]
    assert {r.partition for r in records} == {0}


def test_topic_fixture_creates_three_partitions(kafka_broker: KafkaBroker, topic: str) -> None:
    for partition in range(3):
        _produce(kafka_broker.bootstrap, topic, [f"p{partition}".encode()], partition=partition)

    records = consume(kafka_broker.bootstrap, topic, min_messages=3)

    assert sorted((r.partition, r.value) for r in records) == [(0, b"p0"), (1, b"p1"), (2, b"p2")]


def test_sigkilled_broker_restarts_on_same_port_with_its_data(fresh_broker: KafkaBroker) -> None:
    name = create_topic(fresh_broker.bootstrap, "survives-kill", partitions=1)
    _produce(fresh_broker.bootstrap, name, [b"before-kill"])
    bootstrap = fresh_broker.bootstrap

    fresh_broker.stop(kill=True)
    assert not fresh_broker.is_running
    assert fresh_broker.returncode == -signal.SIGKILL

    fresh_broker.restart()

    assert fresh_broker.is_running
    assert fresh_broker.bootstrap == bootstrap
    records = consume(fresh_broker.bootstrap, name, min_messages=1)
    assert [r.value for r in records] == [b"before-kill"]


def test_sigterm_stop_is_graceful_and_quick(fresh_broker: KafkaBroker) -> None:
    started = time.monotonic()
    fresh_broker.stop(timeout=30)
    elapsed = time.monotonic() - started

    assert not fresh_broker.is_running
    # 143 = 128 + SIGTERM: the JVM ran its shutdown hooks; -9 would mean stop() had to
    # escalate to SIGKILL.
    assert fresh_broker.returncode == 128 + signal.SIGTERM
    assert elapsed < 15, f"graceful stop took {elapsed:.1f}s"


def test_cluster_survives_leader_kill_with_acks_all(kafka_cluster: KafkaCluster) -> None:
    name = create_topic(
        kafka_cluster.bootstrap,
        "failover",
        partitions=1,
        replication_factor=3,
        config={"min.insync.replicas": 2},
    )
    _produce(kafka_cluster.bootstrap, name, [b"before-failover"])
    old_leader = kafka_cluster.leader_of(name, 0)

    kafka_cluster.broker(old_leader).stop(kill=True)
    # Two of three replicas remain, so acks=all with min.insync.replicas=2 must succeed
    # once the controller has moved leadership.
    _produce(kafka_cluster.bootstrap, name, [b"after-failover"])

    new_leader = kafka_cluster.leader_of(name, 0, exclude={old_leader})
    assert new_leader != old_leader
    records = consume(kafka_cluster.running_bootstrap, name, min_messages=2)
    assert [r.value for r in records] == [b"before-failover", b"after-failover"]

    # The killed node can rejoin on its old ports with its old data.
    kafka_cluster.broker(old_leader).restart()
    assert kafka_cluster.broker(old_leader).is_running


def test_external_stub_is_not_managed(kafka_broker: KafkaBroker) -> None:
    # Tests that kill or restart the session broker must check this first.
    if not kafka_broker.managed:
        pytest.skip("session broker is external (KAFKALOG_TEST_BOOTSTRAP)")
    assert kafka_broker.is_running
    assert kafka_broker.bootstrap.startswith("127.0.0.1:")
