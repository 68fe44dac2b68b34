"""The kafka-python transport on its fallback path, the public ``KafkaProducer.send()`` per
record, against a real broker: the integration suite's core cases with the whole-batch hand-off
turned off by ``$KAFKALOG_KAFKA_PYTHON_PUBLIC_API``.

This is the path every record takes when a kafka-python release changes the private API the
hand-off uses; run this file (and the rest of the suite) before widening kafka-python's bound
(docs/transports.md, "Widening the kafka-python bound")."""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from broker.kraft import KafkaBroker, create_topic
from kafka_read import consume, values
from murmur2_reference import java_partition

from kafkalog import KafkaHandler
from kafkalog.pipeline import Outcome, Pipeline
from kafkalog.transports import kafka_python_internals as internals


@pytest.fixture(autouse=True)
def public_send_only(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every transport built in the test keeps to the public send(); its line is heard anew."""
    monkeypatch.setenv(internals.PUBLIC_API_ENV, "1")
    monkeypatch.setattr(internals, "_said", set())
    yield


def new_topic() -> str:
    return f"public-send-{uuid.uuid4().hex[:12]}"


def took_public_path(transport: Any) -> bool:
    """Whether the transport's last batch went through send() per record, and only could."""
    return transport._public_only and not transport.bulk


def test_keyed_records_round_trip_on_the_java_partitions(
    kafka_broker: Any, topic: str, logger: logging.Logger, warnings_heard: list[str]
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, key="uid")
    logger.addHandler(handler)
    keys = [f"user-{i}" for i in range(60)] + ["ü-ñicode", "21", "foobar"]
    for i, uid in enumerate(keys):
        logger.info("paid %d", i, extra={"uid": uid, "n": i})
    logger.info("no key")
    assert handler.flush(30)
    assert took_public_path(handler.pipeline._transport)
    records = consume(kafka_broker.bootstrap, topic, len(keys) + 1)
    assert len(records) == len(keys) + 1
    keyed = [r for r in records if r.key is not None]
    assert sorted(r.key.decode() for r in keyed) == sorted(keys)
    for r in keyed:
        assert r.partition == java_partition(r.key, 3), r.key
        assert orjson.loads(r.value)["uid"] == r.key.decode()
    assert {r.partition for r in keyed} == {0, 1, 2}
    assert any("KafkaProducer.send()" in w and internals.PUBLIC_API_ENV in w
               for w in warnings_heard)
    stats = handler.stats()
    assert stats["delivered"] == len(keys) + 1
    assert stats["failed"] == stats["dropped"] == 0


def test_each_key_keeps_its_order_and_every_record_arrives_once(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, key="k",
                           acks="all", batch_size=4096)
    logger.addHandler(handler)
    total = 5000
    for i in range(total):
        logger.info("r", extra={"k": f"key-{i % 7}", "seq": i})
    assert handler.flush(60)
    assert took_public_path(handler.pipeline._transport)
    got = values(consume(kafka_broker.bootstrap, topic, total, timeout_s=90))
    assert sorted(v["seq"] for v in got) == list(range(total))  # each exactly once
    by_key: dict[str, list[int]] = defaultdict(list)
    for v in got:  # records come back partition by partition, each in offset order
        by_key[v["k"]].append(v["seq"])
    assert len(by_key) == 7
    for key, seqs in by_key.items():
        assert seqs == sorted(seqs), f"{key} out of order"


def test_an_outage_spills_then_replays_in_key_order_when_the_broker_returns(
    fresh_broker: KafkaBroker, tmp_path: Path, logger: logging.Logger
) -> None:
    topic = create_topic(fresh_broker.bootstrap, new_topic(), 3)
    spill = tmp_path / "spill"
    handler = KafkaHandler(topic=topic, bootstrap_servers=fresh_broker.bootstrap, key="k",
                           spill_dir=str(spill), spill_after_ms=200, request_timeout_ms=1000)
    logger.addHandler(handler)
    seq = 0

    def log_some(count: int) -> None:
        nonlocal seq
        for _ in range(count):
            logger.info("r", extra={"k": f"k{seq % 5}", "seq": seq})
            seq += 1

    log_some(300)
    assert handler.flush(30)
    assert took_public_path(handler.pipeline._transport)
    fresh_broker.stop()
    log_some(1500)
    assert handler.pipeline.wait(seq, 60), "every record resolved while the broker is down"
    assert handler.stats()["spilled"] == 1500
    assert list(spill.glob("*.seg"))
    fresh_broker.start()
    log_some(200)
    assert handler.flush(90)
    assert took_public_path(handler.pipeline._transport)
    got = values(consume(fresh_broker.bootstrap, topic, seq, timeout_s=90))
    by_key: dict[str, list[int]] = defaultdict(list)
    for v in got:
        by_key[v["k"]].append(v["seq"])
    # At least once: a batch acknowledged after request_timeout_ms on a loaded machine is sent
    # again, so copies may follow; the first copies are all there, in order per key.
    assert sorted(s for seqs in by_key.values() for s in dict.fromkeys(seqs)) == list(range(seq))
    for key, seqs in by_key.items():
        first_seen = list(dict.fromkeys(seqs))
        assert first_seen == sorted(first_seen), f"{key} out of order"
    stats = handler.stats()
    assert stats["replayed"] >= 1500
    assert stats["failed"] == stats["dropped"] == 0
    logger.removeHandler(handler)
    handler.close()
    assert not list(spill.glob("*.seg"))  # replayed segments are deleted


class Outcomes:
    """What the pipeline's callback reported, by record number."""

    def __init__(self) -> None:
        self.final: dict[int, Outcome] = {}

    def __call__(self, outcome: Outcome, numbers: range) -> None:
        for n in numbers:
            self.final[n] = outcome


def test_a_record_kafka_refuses_for_good_is_dead_lettered_and_the_rest_delivered(
    kafka_broker: Any, tmp_path: Path
) -> None:
    topic = create_topic(kafka_broker.bootstrap, new_topic(), 1,
                         config={"max.message.bytes": 2000})
    dead_letters = new_topic()
    outcomes = Outcomes()
    pipeline = Pipeline(topic, bootstrap_servers=kafka_broker.bootstrap,
                        dead_letter_topic=dead_letters, spill_dir=str(tmp_path / "spill"),
                        on_outcome=outcomes)
    big = b'"' + b"x" * 5000 + b'"'
    numbers = [pipeline.submit(b'"small-%d"' % i) for i in range(3)]
    refused = pipeline.submit(big)
    numbers.append(pipeline.submit(b'"after"'))
    assert not pipeline.flush(30), "flush() reports the dead letter"
    assert pipeline.wait(numbers[-1], 10)
    assert took_public_path(pipeline._transport)
    assert outcomes.final[refused] is Outcome.DEAD_LETTERED
    assert all(outcomes.final[n] is Outcome.DELIVERED for n in numbers)
    assert [r.value for r in consume(kafka_broker.bootstrap, dead_letters, 1)] == [big]
    delivered = [r.value for r in consume(kafka_broker.bootstrap, topic, 4)]
    assert delivered == [b'"small-0"', b'"small-1"', b'"small-2"', b'"after"']
    assert pipeline.stats()["dead_lettered"] == 1
    pipeline.close()


def test_close_delivers_everything_still_queued(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    # A linger far longer than the test: only flush() and close() send these.
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                           linger_ms=60000, batch_size=1 << 24)
    logger.addHandler(handler)
    for i in range(1000):
        logger.info("flushed %d", i)
    assert handler.flush(30)
    assert handler.stats()["delivered"] == 1000
    for i in range(1000):
        logger.info("closed %d", i)
    transport = handler.pipeline._transport
    logger.removeHandler(handler)
    handler.close()  # no flush first: close() delivers what is queued
    assert took_public_path(transport)
    got = [v["message"] for v in values(consume(kafka_broker.bootstrap, topic, 2000))]
    assert sorted(got) == sorted([f"flushed {i}" for i in range(1000)]
                                 + [f"closed {i}" for i in range(1000)])
    stats = handler.stats()
    assert stats["delivered"] == 2000
    assert stats["failed"] == stats["dropped"] == stats["spilled"] == 0
