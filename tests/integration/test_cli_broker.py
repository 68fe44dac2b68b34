"""``kafkalog tail``, ``check``, ``spill-info`` and ``replay`` as subprocesses (``python -m
kafkalog``), against a real Kafka broker; and every such command the docs show."""

from __future__ import annotations

import logging
import os
import selectors
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from broker.kraft import KafkaBroker, free_port
from docs_commands import block_commands
from kafka import KafkaProducer
from kafka_read import consume
from spill_segments import dead_writer_segments, log_value

from kafkalog import KafkaHandler
from kafkalog.cli.common import (
    EXIT_AUTO_CREATE_DISABLED,
    EXIT_DNS,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_TOPIC_AUTO_CREATE,
    EXIT_TOPIC_MISSING,
)
from kafkalog.client.probe import ClusterProbe, ProbeError

RUN_TIMEOUT_S = 90


def kafkalog(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the command to its end (bounded); stdout is a pipe, so not a terminal."""
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "kafkalog", *argv],
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


def _follower(*argv: str) -> subprocess.Popen[bytes]:
    """``kafkalog tail ... --follow`` started in the background, stdout and stderr piped."""
    # A shell starts a background job (say, this suite run with `&`) with SIGINT ignored; the
    # child would inherit that, and `kafkalog tail` leaves an ignored SIGINT ignored, as a
    # background job should. A handler of our own while spawning gives the child the default.
    ignored = signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    if ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        # -X faulthandler: if it does not exit, SIGABRT makes it print every thread's stack.
        return subprocess.Popen(
            [sys.executable, "-X", "faulthandler", "-m", "kafkalog", "tail", "--follow", *argv],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
    finally:
        if ignored:
            signal.signal(signal.SIGINT, signal.SIG_IGN)


def _log_until_printed(proc: subprocess.Popen[bytes], logger: logging.Logger,
                       handler: KafkaHandler, message: str) -> bytes:
    """Log ``message`` until the follower prints a line (it may start reading after the first
    ones); that line."""
    logger.addHandler(handler)
    line = b""
    deadline = time.monotonic() + 60
    while not line and time.monotonic() < deadline:
        logger.info(message)
        assert handler.flush(30)
        line = _read_line(proc, 1.0)
    return line


def _stop(proc: subprocess.Popen[bytes], signum: int) -> tuple[bytes, bytes]:
    """Send ``signum`` and wait (bounded) for the follower to exit; its remaining output."""
    proc.send_signal(signum)
    try:
        return proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGABRT)
        _, err = proc.communicate(timeout=10)
        pytest.fail(f"tail still ran 30 s after the signal; its stacks:\n"
                    f"{err.decode(errors='replace')[-8000:]}")


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_tail_follow_prints_new_records_and_exits_cleanly_on_a_signal(
    kafka_broker: Any, topic: str, logger: logging.Logger, signum: int
) -> None:
    proc = _follower("--topic", topic, "--bootstrap-servers", kafka_broker.bootstrap,
                     "--group", f"f-{uuid.uuid4().hex[:8]}")
    try:
        handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                               linger_ms=5)
        line = _log_until_printed(proc, logger, handler, "live")
        assert orjson.loads(line)["message"] == "live"
        _, err = _stop(proc, signum)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == EXIT_INTERRUPTED
    assert b"Traceback" not in err


def test_tail_zero_lines_with_follow_prints_only_new_records(
    kafka_broker: Any, topic: str, logger: logging.Logger
) -> None:
    log_records(kafka_broker.bootstrap, topic, logger, 20, prefix="old")
    proc = _follower("--topic", topic, "--bootstrap-servers", kafka_broker.bootstrap,
                     "-n", "0")
    try:
        handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                               linger_ms=5)
        first = _log_until_printed(proc, logger, handler, "new")
        rest, err = _stop(proc, signal.SIGINT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.returncode == EXIT_INTERRUPTED, err
    messages = [orjson.loads(line)["message"] for line in (first + rest).splitlines()]
    assert messages and set(messages) == {"new"}  # none of the 20 logged before it started


@pytest.mark.parametrize(
    ("server", "code", "kind"),
    [(None, EXIT_REFUSED, "(refused)"), ("no-such-host.invalid:9092", EXIT_DNS, "(dns)")],
)
def test_tail_fails_at_once_with_checks_code_on_a_refused_port_or_an_unknown_name(
    server: str | None, code: int, kind: str
) -> None:
    bootstrap = server or f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    proc = kafkalog("tail", "--topic", "t", "--bootstrap-servers", bootstrap, "--timeout", "80")
    elapsed = time.monotonic() - started
    assert proc.returncode == code, proc.stderr
    assert kind in proc.stderr and "kafkalog check" in proc.stderr
    check = kafkalog("check", "--topic", "t", "--bootstrap-servers", bootstrap)
    assert check.returncode == code  # the same code as check's
    # It did not wait out --timeout (it used to, then exit 3): a functional bound, not a speed
    # target; the unit test shows that no consumer is even built.
    assert elapsed < 40


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


def test_check_warns_of_a_missing_topic_that_the_broker_would_create(kafka_broker: Any) -> None:
    missing = f"missing-{uuid.uuid4().hex}"
    proc = kafkalog("check", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", missing)
    assert proc.returncode == EXIT_TOPIC_AUTO_CREATE, proc.stdout
    assert proc.returncode != EXIT_TOPIC_MISSING
    assert "WARN topic" in proc.stdout and "FAIL" not in proc.stdout
    assert "will create it on the first write, with its defaults: 1 partition(s)" in proc.stdout
    assert "skipped: round trip" in proc.stdout
    # The check itself must not have created it.
    again = kafkalog("check", "--bootstrap-servers", kafka_broker.bootstrap, "--topic", missing)
    assert again.returncode == EXIT_TOPIC_AUTO_CREATE


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


# -- replay ----------------------------------------------------------------------------------------

def test_replay_sends_what_a_dead_writer_left_and_nothing_is_left(
    kafka_broker: Any, topic: str, tmp_path: Path
) -> None:
    values = [log_value(i) for i in range(5)]
    spill = tmp_path / "spill"
    dead_writer_segments(spill, topic, values)
    proc = kafkalog("replay", "--spill-dir", str(spill), "--bootstrap-servers",
                    kafka_broker.bootstrap)
    assert proc.returncode == EXIT_OK, proc.stderr
    assert "replayed 5 record(s)" in proc.stderr
    assert "left on disk" not in proc.stderr
    assert sorted(r.value for r in consume(kafka_broker.bootstrap, topic, 5)) == sorted(values)
    info = kafkalog("spill-info", str(spill), "--json")
    assert info.returncode == EXIT_OK
    assert sum(row["records"] for row in orjson.loads(info.stdout)) == 0


# -- the commands the docs show --------------------------------------------------------------------

# Not run here: ship and sink run until stopped (tests/integration/test_ship_*.py and
# test_sink_*.py run them), a follower runs until Ctrl-C, and the test broker has no TLS or
# SASL listener. The unit docs test parses those.
_NOT_RUN = {"ship", "sink", "-f", "--follow", "--security-protocol", "--ssl-cafile",
            "--sasl-mechanism"}


def _on_this_broker(argv: tuple[str, ...], bootstrap: str, topic: str,
                    spill_dir: Callable[[], str]) -> list[str]:
    """A documented command aimed at the test broker, the test's topic, a unique consumer
    group and a spill directory of a dead writer."""
    out = list(argv)
    for i, token in enumerate(out[:-1]):
        if token == "--bootstrap-servers":
            out[i + 1] = bootstrap
        elif token == "--topic":
            out[i + 1] = topic
        elif token == "--group":
            out[i + 1] = f"{out[i + 1]}-{uuid.uuid4().hex[:8]}"
        elif token == "--spill-dir":
            out[i + 1] = spill_dir()
    if out[0] == "spill-info":
        out[1] = spill_dir()
    return out


def test_the_commands_the_docs_show_run_against_a_broker(
    kafka_broker: Any, topic: str, logger: logging.Logger, tmp_path: Path
) -> None:
    log_records(kafka_broker.bootstrap, topic, logger, 10)
    warn = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap, linger_ms=5)
    logger.addHandler(warn)
    logger.warning("disk almost full")  # for `--level WARNING`
    assert warn.flush(30)
    logger.removeHandler(warn)
    warn.close()
    dirs = iter(range(1000))

    def spill_dir() -> str:
        path = tmp_path / f"spill-{next(dirs)}"
        dead_writer_segments(path, topic, [log_value(1), log_value(2)])
        return str(path)

    ran = []
    for command in block_commands():
        if _NOT_RUN & set(command.argv):
            continue
        argv = _on_this_broker(command.argv, kafka_broker.bootstrap, topic, spill_dir)
        proc = kafkalog(*argv, env={"KAFKALOG_BOOTSTRAP_SERVERS": kafka_broker.bootstrap})
        assert proc.returncode == EXIT_OK, (f"{command.where}: kafkalog {' '.join(argv)}\n"
                                            f"{proc.stdout}\n{proc.stderr}")
        if argv[0] == "tail":
            assert all(orjson.loads(line) for line in proc.stdout.splitlines())
        ran.append(argv[0])
    assert {"tail", "check", "spill-info", "replay"} <= set(ran)
