"""The delivery pipeline on its own, against a real broker: submit and read back, each outcome,
an outage with spill and replay, and a fork."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import uuid
from pathlib import Path

import orjson
from broker.kraft import KafkaBroker, create_topic
from kafka_read import consume

from kafkalog.pipeline import Outcome, Pipeline


def new_topic() -> str:
    return f"pipe-{uuid.uuid4().hex[:12]}"


class Outcomes:
    """What the callback heard, by record number."""

    def __init__(self) -> None:
        self.final: dict[int, Outcome] = {}
        self.history: dict[int, list[Outcome]] = {}
        self._cond = threading.Condition()

    def __call__(self, outcome: Outcome, numbers: range) -> None:
        with self._cond:
            for n in numbers:
                self.final[n] = outcome
                self.history.setdefault(n, []).append(outcome)
            self._cond.notify_all()

    def wait_count(self, count: int, timeout_s: float = 30.0) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.final) >= count, timeout_s)


def test_submitted_records_arrive_with_their_keys_and_are_reported_delivered(
    kafka_broker: KafkaBroker, tmp_path: Path, transport_name: str
) -> None:
    topic = new_topic()
    outcomes = Outcomes()
    pipeline = Pipeline(topic, bootstrap_servers=kafka_broker.bootstrap, transport=transport_name,
                        spill_dir=str(tmp_path / "spill"), on_outcome=outcomes)
    for i in range(2000):
        number = pipeline.submit(orjson.dumps({"i": i}), b"key-%d" % (i % 5))
        assert number == i + 1
    assert pipeline.flush(30)
    assert pipeline.resolved() == 2000
    assert outcomes.wait_count(2000)
    assert set(outcomes.final.values()) == {Outcome.DELIVERED}
    records = consume(kafka_broker.bootstrap, topic, 2000)
    assert sorted(orjson.loads(r.value)["i"] for r in records) == list(range(2000))
    by_key: dict[bytes, set[int]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
    assert all(len(parts) == 1 for parts in by_key.values()), "a key stays on one partition"
    stats = pipeline.stats()
    assert stats["delivered"] == 2000 and stats["dropped"] == 0
    pipeline.close()


def test_an_outage_spills_durably_then_replays_in_order(
    fresh_broker: KafkaBroker, tmp_path: Path, transport_name: str
) -> None:
    topic = new_topic()
    fresh_broker.stop()
    outcomes = Outcomes()
    pipeline = Pipeline(topic, bootstrap_servers=fresh_broker.bootstrap,
                        transport=transport_name, spill_dir=str(tmp_path / "spill"),
                        spill_after_ms=200, request_timeout_ms=1000, on_outcome=outcomes)
    for i in range(1500):
        pipeline.submit(b'{"seq":%d}' % i, b"k")
    assert pipeline.wait(1500, 60), "every record resolved while the broker is down"
    assert outcomes.wait_count(1500)
    assert set(outcomes.final.values()) == {Outcome.SPILLED}
    assert pipeline.stats()["spilled"] == 1500
    assert list((tmp_path / "spill").glob("*.seg"))
    fresh_broker.start()
    after = pipeline.submit(b'{"seq":1500}', b"k")
    assert pipeline.flush(90)
    assert outcomes.wait_count(after)
    # Queued behind the spill while it replays, or sent directly once it is empty: either is
    # a final outcome (a spilled record is not reported again when it is replayed).
    assert outcomes.final[after] in (Outcome.SPILLED, Outcome.DELIVERED)
    seqs = [orjson.loads(r.value)["seq"]
            for r in consume(fresh_broker.bootstrap, topic, 1501, timeout_s=90)]
    # At least once: a replay batch whose acknowledgement came after request_timeout_ms (a
    # loaded machine) is sent again, so copies may follow; the first copies are in order.
    first_seen = list(dict.fromkeys(seqs))
    assert first_seen == list(range(1501)), "replayed oldest first, in order, before newer"
    if len(seqs) != len(first_seen):
        assert pipeline.stats()["retries"] > 0, "a record came twice without a retry"
    assert pipeline.stats()["replayed"] >= 1500
    pipeline.close()
    assert not list((tmp_path / "spill").glob("*.seg"))


def test_a_record_kafka_refuses_for_good_is_dead_lettered(
    kafka_broker: KafkaBroker, tmp_path: Path, transport_name: str
) -> None:
    topic = create_topic(kafka_broker.bootstrap, new_topic(), 1,
                         config={"max.message.bytes": 2000})
    dead_letters = new_topic()
    outcomes = Outcomes()
    pipeline = Pipeline(topic, bootstrap_servers=kafka_broker.bootstrap,
                        transport=transport_name, dead_letter_topic=dead_letters,
                        spill_dir=str(tmp_path / "spill"), on_outcome=outcomes)
    small = pipeline.submit(b'"small"')
    big = pipeline.submit(b'"' + b"x" * 5000 + b'"')
    assert not pipeline.flush(30), "flush() reports the dead letter"
    assert outcomes.wait_count(2)
    assert outcomes.final == {small: Outcome.DELIVERED, big: Outcome.DEAD_LETTERED}
    assert [r.value for r in consume(kafka_broker.bootstrap, dead_letters, 1)] == [
        b'"' + b"x" * 5000 + b'"'
    ]
    assert pipeline.stats()["dead_lettered"] == 1
    pipeline.close()


def test_a_forked_child_has_its_own_pipeline_and_the_parent_keeps_its_records(
    kafka_broker: KafkaBroker, tmp_path: Path
) -> None:
    topic = new_topic()
    pipeline = Pipeline(topic, bootstrap_servers=kafka_broker.bootstrap,
                        spill_dir=str(tmp_path / "spill"))
    pipeline.submit(b'"parent-before"')
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a fresh pipeline that numbers from 1 and delivers its own
        os.close(read)
        ok = pipeline.submit(b'"child"') == 1 and pipeline.flush(30)
        os.write(write, b"ok" if ok else b"no")
        os._exit(0)
    os.close(write)
    pipeline.submit(b'"parent-after"')
    assert pipeline.flush(30)
    with os.fdopen(read, "rb") as answer:
        assert answer.read() == b"ok"
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    got = sorted(orjson.loads(r.value) for r in consume(kafka_broker.bootstrap, topic, 3))
    assert got == ["child", "parent-after", "parent-before"], "each record exactly once"
    pipeline.close()


def test_the_pipeline_example_delivers_every_event(kafka_broker: KafkaBroker) -> None:
    topic = new_topic()
    example = Path(__file__).resolve().parents[2] / "examples" / "pipeline_app.py"
    env = {**os.environ, "KAFKALOG_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
           "KAFKALOG_TOPIC": topic}
    done = subprocess.run([sys.executable, str(example)], env=env, capture_output=True,
                          text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "{'delivered': 1000}" in done.stdout
    events = [orjson.loads(r.value) for r in consume(kafka_broker.bootstrap, topic, 1000)]
    assert sorted(e["n"] for e in events) == list(range(1000))
