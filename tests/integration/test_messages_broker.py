"""What a user reads when records can not go, against real brokers: a missing topic (a broker
with auto.create.topics.enable=false), a topic Kafka refuses as invalid, why the bootstrap
servers do not answer, kafka-python's own log lines, and sync_level while the broker is down."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from broker.kraft import KafkaBroker, create_topic, free_port
from kafka_read import consume, values

from kafkalog import ConfigError, KafkaHandler

# The application: the console is the root logger's (basicConfig), as a user would set it up.
# It logs, waits (bounded) until everything is spilled, signals with a file, waits for the go
# file, then until the spill is replayed; stats on stdout.
_MISSING_TOPIC_APP = """
import json, logging, sys, time
from pathlib import Path
from kafkalog import KafkaHandler
bootstrap, topic, transport, work = sys.argv[1:5]
logging.basicConfig(level=logging.INFO)
handler = KafkaHandler(topic=topic, bootstrap_servers=bootstrap, transport=transport,
                       spill_dir=work + "/spill", close_timeout_ms=2000)
log = logging.getLogger("app")
log.addHandler(handler)
for i in range(20):
    log.info("waiting record %d", i)

def until(predicate, seconds=90):
    deadline = time.monotonic() + seconds
    while not predicate() and time.monotonic() < deadline:
        time.sleep(0.05)
    return predicate()

until(lambda: handler.stats()["spilled"] == 20 and handler.stats()["retries"] >= 2)
Path(work, "spilled").touch()
until(lambda: Path(work, "go").exists())
until(lambda: handler.stats()["spill_pending_records"] == 0)
print(json.dumps({k: v for k, v in handler.stats().items() if isinstance(v, (int, str))}))
handler.close()
"""


def _until(predicate: Callable[[], bool], timeout_s: float = 60.0) -> bool:
    """Poll ``predicate`` (bounded)."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            return False
        pause.wait(0.05)
    return True


def _client_lines(stderr: str) -> list[str]:
    """Lines kafka-python's loggers wrote to the console (basicConfig's format)."""
    return [line for line in stderr.splitlines()
            if line.split(":", 2)[1:2] and line.split(":", 2)[1].startswith("kafka")]


def test_a_missing_topic_is_named_once_and_its_records_arrive_once_it_is_created(
    no_auto_create_broker: KafkaBroker, transport_name: str, tmp_path: Path
) -> None:
    bootstrap = no_auto_create_broker.bootstrap
    topic = f"not-yet-{uuid.uuid4().hex[:8]}"
    app = subprocess.Popen(
        [sys.executable, "-c", _MISSING_TOPIC_APP, bootstrap, topic, transport_name,
         str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert _until(lambda: (tmp_path / "spilled").exists() or app.poll() is not None, 90)
        create_topic(bootstrap, topic, partitions=2)
        (tmp_path / "go").touch()
        out, err = app.communicate(timeout=120)
    finally:
        if app.poll() is None:
            app.kill()
    assert app.returncode == 0, err
    stats = orjson.loads(out.strip().splitlines()[-1])
    assert stats["spilled"] == 20 and stats["spill_pending_records"] == 0
    assert sorted(v["message"] for v in values(consume(bootstrap, topic, 20))) == sorted(
        f"waiting record {i}" for i in range(20)
    )
    named = [line for line in err.splitlines() if f"topic {topic!r} does not exist" in line]
    print("\n".join(named))  # for the report: the message as the user sees it
    assert len(named) == 1, err  # said once (rate-limited), not per retry
    assert f"on the cluster at {bootstrap}" in named[0]
    assert "create the topic" in named[0] and "auto.create.topics.enable" in named[0]
    assert "records are kept in the spill" in named[0]
    assert _client_lines(err) == []  # kafka-python's "Topic not found" lines stay off it


def test_a_topic_kafka_refuses_as_invalid_is_dead_lettered_with_the_reason(
    kafka_broker: Any, transport_name: str, tmp_path: Path, logger: logging.Logger,
    warnings_heard: list[str],
) -> None:
    # Names that break Kafka's rules never get this far: the topic option refuses them.
    for bad in ("bad topic!", "x" * 250):
        with pytest.raises(ConfigError, match="not a valid Kafka topic name"):
            KafkaHandler(topic=bad, bootstrap_servers=kafka_broker.bootstrap)
    # A legal name the brokers keep for themselves reaches the broker, which refuses it.
    handler = KafkaHandler(topic="__consumer_offsets", bootstrap_servers=kafka_broker.bootstrap,
                           transport=transport_name, spill_dir=str(tmp_path))
    logger.addHandler(handler)
    for i in range(3):
        logger.warning("to an internal topic %d", i)
    assert not handler.flush(60)  # True only if nothing was dead-lettered
    assert handler.stats()["dead_lettered"] == 3
    assert list(tmp_path.rglob("*.dead"))
    refused = [w for w in warnings_heard if "as invalid for writing" in w]
    print("\n".join(refused))
    assert refused and "Kafka refuses topic '__consumer_offsets' as invalid" in refused[0]
    assert "dead-letter" in refused[0]


@pytest.mark.parametrize(
    "case",
    [("refused", "connection refused (nothing listens on that port)"),
     ("dns", "the name does not resolve"),
     ("silent", "no answer")],
)
def test_the_message_names_why_the_bootstrap_servers_do_not_answer(
    case: tuple[str, str], transport_name: str, logger: logging.Logger,
    warnings_heard: list[str], request: pytest.FixtureRequest,
) -> None:
    where, says = case
    server = {"refused": lambda: f"127.0.0.1:{free_port()}",
              "dns": lambda: "no-such-host.invalid:9092",
              "silent": lambda: request.getfixturevalue("silent_address")}[where]()
    handler = KafkaHandler(topic="t", bootstrap_servers=server, transport=transport_name,
                           spill_dir=None, close_timeout_ms=500)
    logger.addHandler(handler)
    logger.warning("nobody there")
    assert _until(lambda: any("cannot deliver" in w for w in warnings_heard), 30)
    said = next(w for w in warnings_heard if "cannot deliver" in w)
    print(said)
    assert f"{server}: {says}" in said


_CLIENT_LOG_APP = """
import logging, sys, threading
from kafkalog import KafkaHandler
server, configured = sys.argv[1], sys.argv[2] == "1"
logging.basicConfig(level=logging.WARNING)
if configured:
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the application wants them
handler = KafkaHandler(topic="t", bootstrap_servers=server, close_timeout_ms=500)
log = logging.getLogger("app")
log.addHandler(handler)
log.propagate = False
log.warning("nobody there")
pause = threading.Event()
for _ in range(300):  # bounded: until the worker has retried a few times
    if handler.stats()["retries"] >= 3:
        break
    pause.wait(0.05)
handler.close()
"""


@pytest.mark.parametrize("configured", [False, True])
def test_kafka_python_log_lines_stay_off_the_console_unless_the_app_configured_them(
    configured: bool,
) -> None:
    server = f"127.0.0.1:{free_port()}"
    app = subprocess.run([sys.executable, "-c", _CLIENT_LOG_APP, server, str(int(configured))],
                         capture_output=True, text=True, timeout=120, check=True)
    lines = _client_lines(app.stderr)
    summary = [line for line in app.stderr.splitlines() if "kafka-python logged" in line]
    print(app.stderr)
    if configured:
        assert lines and not summary  # the application's own setting is kept
    else:
        # kafkalog's own warning names the cause; kafka-python's lines are summarised only
        # once they go on for CLIENT_LOG_PERSIST_S (a transient is not worth a warning).
        assert lines == [] and len(summary) <= 1
        assert "cannot deliver to Kafka yet" in app.stderr


def test_sync_level_records_are_spilled_at_once_while_the_broker_is_down(
    fresh_broker: KafkaBroker, transport_name: str, tmp_path: Path, logger: logging.Logger,
) -> None:
    topic = create_topic(fresh_broker.bootstrap, f"sync-{uuid.uuid4().hex[:8]}", partitions=1)
    # spill_after_ms and sync_timeout_ms are long: released early only by the spill.
    handler = KafkaHandler(topic=topic, bootstrap_servers=fresh_broker.bootstrap,
                           transport=transport_name, spill_dir=str(tmp_path),
                           sync_level="ERROR", sync_timeout_ms=30_000, spill_after_ms=60_000,
                           request_timeout_ms=5000)
    logger.addHandler(handler)
    logger.error("before the outage")
    assert handler.stats()["delivered"] == 1
    fresh_broker.stop()
    logger.info("finds the broker down")  # not a sync record: nobody waits for it
    assert _until(lambda: handler.stats()["retries"] >= 1, 60)  # known to be down now
    waits = []
    for i in range(5):
        started = time.monotonic()
        logger.error("during the outage %d", i)
        waits.append(time.monotonic() - started)
        stats = handler.stats()
        assert handler.pipeline.resolved() == handler.pipeline.accepted  # confirmed...
        assert stats["delivered"] == 1  # ...as spilled (fsynced), not delivered
    print(f"sync_level waits while down ({transport_name}): "
          + ", ".join(f"{w:.3f}s" for w in waits))
    fresh_broker.start()
    assert _until(lambda: handler.stats()["spill_pending_records"] == 0, 90)
    got = sorted(v["message"] for v in values(consume(fresh_broker.bootstrap, topic, 7)))
    assert got == sorted(["before the outage", "finds the broker down",
                          *(f"during the outage {i}" for i in range(5))])
