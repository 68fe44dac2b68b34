"""``kafkalog tail`` and ``kafkalog check`` as subprocesses, against a real Kafka broker."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from broker.kraft import KafkaBroker, free_port
from kafka import KafkaProducer
from kafka_read import consume

from kafkalog import KafkaHandler
from kafkalog.cli.common import (
    EXIT_AUTO_CREATE_DISABLED,
    EXIT_DNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TOPIC_MISSING,
)
from kafkalog.client.probe import ClusterProbe, ProbeError

RUN_TIMEOUT_S = 90


def kafkalog(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command to its end (bounded); stdout is a pipe, so not a terminal."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kafkalog.cli.main", *argv],
        capture_output=True, text=True, timeout=RUN_TIMEOUT_S, env=full_env, check=False,
    )


def tail(bootstrap: str, topic: str, *extra: str, env: dict[str, str] | None = None) -> list[str]:
    proc = kafkalog("tail", "--topic", topic, "--bootstrap-servers", bootstrap, *extra, env=env)
    assert proc.returncode == EXIT_OK, proc.stderr
    return proc.stdout.splitlines()


def log_records(bootstrap: str, topic: str, logger: logging.Logger, count: int,
                prefix: str = "record") -> KafkaHandler:
    handler = KafkaHandler(topic=topic, bootstrap_servers=bootstrap, linger_ms=5)
    logger.addHandler(handler)
    for i in range(count):
        logger.info("%s %d", prefix, i, extra={"n": i})
    assert handler.flush(30)
    logger.removeHandler(handler)
    handler.close()
    return handler


# -- tail ------------------------------------------------------------------------------------------

def test_tail_from_beginning_prints_every_record_as_logged(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    log_records(kafka_broker.bootstrap, topic, logger, 50)
    lines = tail(kafka_broker.bootstrap, topic, "--from-beginning")
    # Not a terminal: JSON lines, each exactly the value stored in Kafka.
    stored = {r.value.decode() for r in consume(kafka_broker.bootstrap, topic, 50)}
    assert len(lines) == 50
    assert set(lines) == stored
    assert sorted(orjson.loads(line)["n"] for line in lines) == list(range(50))


def test_tail_without_a_start_prints_the_last_lines_of_each_partition(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    log_records(kafka_broker.bootstrap, topic, logger, 30)
    by_partition: dict[int, list[str]] = {}
    for record in consume(kafka_broker.bootstrap, topic, 30):
        by_partition.setdefault(record.partition, []).append(record.value.decode())
    expected = {value for values in by_partition.values() for value in values[-2:]}
    lines = tail(kafka_broker.bootstrap, topic, "-n", "2")
    assert len(lines) == len(expected)
    assert set(lines) == expected  # the last 2 records of each partition


def test_tail_with_a_group_commits_so_the_next_run_prints_only_new_records(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    group = f"tail-{uuid.uuid4().hex[:8]}"
    log_records(kafka_broker.bootstrap, topic, logger, 20, prefix="first")
    first = tail(kafka_broker.bootstrap, topic, "--group", group, "--from-beginning")
    assert len(first) == 20
    again = tail(kafka_broker.bootstrap, topic, "--group", group, "--from-beginning")
    assert again == []
    log_records(kafka_broker.bootstrap, topic, logger, 5, prefix="second")
    third = tail(kafka_broker.bootstrap, topic, "--group", group, "--from-beginning")
    assert sorted(orjson.loads(line)["message"] for line in third) == [
        f"second {i}" for i in range(5)
    ]
    # Without a group nothing was committed: all 25 are there for anyone else.
    assert len(tail(kafka_broker.bootstrap, topic, "--from-beginning")) == 25


def test_tail_filters_by_level_logger_and_pattern(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
    db = logging.getLogger(f"{logger.name}.db")
    logger.addHandler(handler)
    logger.info("started")
    logger.warning("disk almost full")
    db.error("query failed")
    db.debug("query plan")
    try:
        raise KeyError("invoice-7")
    except KeyError:
        logger.exception("lookup failed")
    assert handler.flush(30)

    def messages(*extra: str) -> list[str]:
        start = () if "--since" in extra else ("--from-beginning",)
        lines = tail(kafka_broker.bootstrap, topic, *start, *extra)
        return sorted(orjson.loads(line)["message"] for line in lines)

    assert messages("--level", "WARNING") == ["disk almost full", "lookup failed",
                                              "query failed"]
    assert messages("--logger", db.name) == ["query failed", "query plan"]
    assert messages("--grep", "invoice-[0-9]") == ["lookup failed"]  # found in the traceback
    assert messages("--level", "error", "--logger", logger.name, "--grep", "lookup") == [
        "lookup failed"
    ]
    assert messages("--since", "10m") == messages()
    assert messages("--since", "2999-01-01T00:00:00Z") == []


def test_tail_json_passes_values_through_even_on_a_terminal_and_pretty_prints_otherwise(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
    logger.addHandler(handler)
    try:
        raise ZeroDivisionError("no")
    except ZeroDivisionError:
        logger.exception("divide failed")
    assert handler.flush(30)
    value = consume(kafka_broker.bootstrap, topic, 1)[0].value.decode()
    terminal = {"FORCE_COLOR": "1", "COLUMNS": "200"}  # rich then acts as on a terminal
    assert tail(kafka_broker.bootstrap, topic, "--from-beginning", "--json", env=terminal) == [
        value
    ]
    pretty = "\n".join(tail(kafka_broker.bootstrap, topic, "--from-beginning", env=terminal))
    assert "\x1b[" in pretty  # coloured
    assert "divide failed" in pretty
    assert "Traceback" in pretty and "ZeroDivisionError" in pretty
    assert value not in pretty


def test_tail_dedupe_prints_a_record_delivered_twice_once(
    kafka_broker: Any, topic: str
) -> None:
    producer = KafkaProducer(bootstrap_servers=kafka_broker.bootstrap)
    try:
        for value in (b'{"message":"a","id":"1"}', b'{"message":"b","id":"2"}',
                      b'{"message":"a","id":"1"}'):
            producer.send(topic, value=value, partition=0)
        producer.flush(30)
    finally:
        producer.close()
    assert len(tail(kafka_broker.bootstrap, topic, "--from-beginning")) == 3
    assert tail(kafka_broker.bootstrap, topic, "--from-beginning", "--dedupe") == [
        '{"message":"a","id":"1"}', '{"message":"b","id":"2"}'
    ]


def _read_line(proc: subprocess.Popen[bytes], timeout_s: float) -> bytes:
    """One line of the process's stdout, waiting at most ``timeout_s``."""
    assert proc.stdout is not None
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        if not sel.select(timeout_s):
            return b""
    return proc.stdout.readline()


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_tail_follow_prints_new_records_and_exits_cleanly_on_a_signal(
    kafka_broker: Any, topic: str, logger: logging.Logger, signum: int
) -> None:
    # A shell starts a background job (say, this suite run with `&`) with SIGINT ignored; the
    # child would inherit that, and `kafkalog tail` leaves an ignored SIGINT ignored, as a
    # background job should. A handler of our own while spawning gives the child the default.
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # -X faulthandler: if it does not exit, SIGABRT makes it print every thread's stack.
        proc = subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "kafkalog.cli.main", "tail", "--topic",
             topic, "--bootstrap-servers", kafka_broker.bootstrap, "--follow",
             "--group", f"f-{uuid.uuid4().hex[:8]}"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                               linger_ms=5)
        logger.addHandler(handler)
        # Log until the follower shows a record: it may join the group after the first ones.
        line = b""
        deadline = time.monotonic() + 60
        while not line and time.monotonic() < deadline:
            logger.info("live")
            assert handler.flush(30)
            line = _read_line(proc, 1.0)
        assert orjson.loads(line)["message"] == "live"
        proc.send_signal(signum)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGABRT)
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"tail still ran 30 s after the signal; its stacks:\n"
                        f"{err.decode(errors='replace')[-8000:]}")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == EXIT_INTERRUPTED
    assert b"Traceback" not in err


def test_tail_of_a_missing_topic_says_so(kafka_broker: Any) -> None:
    proc = kafkalog("tail", "--topic", f"missing-{uuid.uuid4().hex}", "--bootstrap-servers",
                    kafka_broker.bootstrap, "--timeout", "5")
    assert proc.returncode == EXIT_TOPIC_MISSING
    assert "does not exist" in proc.stderr


# -- check -----------------------------------------------------------------------------------------

def test_check_passes_and_round_trips_a_record(kafka_broker: Any, topic: str) -> None:
    proc = kafkalog("check", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", topic)
    assert proc.returncode == EXIT_OK, proc.stdout
    assert "3 partition(s)" in proc.stdout
    assert "read it back" in proc.stdout
    test_record = orjson.loads(consume(kafka_broker.bootstrap, topic, 1)[0].value)
    assert test_record["logger"] == "kafkalog.check"


def test_check_on_a_refused_port(kafka_broker: Any) -> None:
    proc = kafkalog("check", "--bootstrap-servers", f"127.0.0.1:{free_port()}", "--topic", "t")
    assert proc.returncode == EXIT_REFUSED
    assert "refused" in proc.stdout.lower()


def test_check_on_an_unresolvable_host() -> None:
    proc = kafkalog("check", "--bootstrap-servers", "no-such-host.invalid:9092", "--topic", "t")
    assert proc.returncode == EXIT_DNS
    assert "cannot resolve no-such-host.invalid" in proc.stdout


def test_check_on_a_missing_topic_that_the_broker_would_create(kafka_broker: Any) -> None:
    missing = f"missing-{uuid.uuid4().hex}"
    proc = kafkalog("check", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", missing)
    assert proc.returncode == EXIT_TOPIC_MISSING, proc.stdout
    assert "would create it" in proc.stdout
    # The check itself must not have created it.
    again = kafkalog("check", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", missing)
    assert again.returncode == EXIT_TOPIC_MISSING


@pytest.fixture
def strict_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A broker of the test's own that never creates topics on demand."""
    if os.environ.get("KAFKALOG_TEST_BOOTSTRAP"):
        pytest.skip("KAFKALOG_TEST_BOOTSTRAP is set: this test needs a broker of its own")
    broker = KafkaBroker(tmp_path / "strict", config={"auto.create.topics.enable": "false"})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(kill=True)


def test_check_on_a_missing_topic_with_auto_create_disabled(strict_broker: KafkaBroker) -> None:
    proc = kafkalog("check", "--bootstrap-servers", strict_broker.bootstrap, "--topic", "nope")
    assert proc.returncode == EXIT_AUTO_CREATE_DISABLED, proc.stdout
    assert "auto.create.topics.enable=false" in proc.stdout


@pytest.mark.parametrize(
    ("client_config", "kind"),
    [
        ({"security_protocol": "SSL"}, "tls"),
        ({"security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
          "sasl_plain_username": "u", "sasl_plain_password": "p"}, "sasl"),
    ],
)
def test_probe_tells_tls_and_sasl_failures_apart(
    kafka_broker: Any, client_config: dict[str, Any], kind: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A client speaking TLS (or SASL) to a plain listener fails its handshake; kafka-python
    # only logs the cause and then times out, and the probe must still name the cause, even
    # when kafka-python's loggers were disabled (as dictConfig does to loggers it does not name).
    disabled = logging.getLogger("kafka.net.manager")
    monkeypatch.setattr(disabled, "disabled", True)
    probe = ClusterProbe([kafka_broker.bootstrap], client_config=client_config, timeout_s=2)
    try:
        with pytest.raises(ProbeError) as exc:
            probe.connect()
    finally:
        probe.close()
    assert exc.value.kind == kind
    assert disabled.disabled  # left as it was
