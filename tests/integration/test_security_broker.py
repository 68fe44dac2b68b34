"""A real secured broker: TLS, SASL (SCRAM-SHA-512 and PLAIN), mutual TLS and ACLs.

One broker serves the whole module (see ``secured``). Every failure test checks the same
contract: one warning naming the cause, the records in the spill, nothing delivered wrong,
nothing lost once the cause is fixed, and the password nowhere in what kafkalog shows.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broker.kraft import SecuredKafkaBroker, create_topic, grant, wait_for
from broker.tls import Pki, make_pki
from kafka_read import consume, values

from kafkalog import KafkaHandler
from kafkalog.config import SASL_PASSWORD_ENV
from kafkalog.diagnostics import log as kafkalog_log

APP = Path(__file__).with_name("security_app.py")
WRITER = "writer"  # WRITE on every topic starting with "kafkalog." (prefixed ACL)
NOBODY = "nobody"  # no ACL at all
# Distinctive, so that a search for them can not match anything by accident.
PASSWORDS = {WRITER: f"wr1ter-{secrets.token_hex(8)}", NOBODY: f"n0body-{secrets.token_hex(8)}"}
# The application restarted with the right settings: one record, then close (which replays
# the spill it adopted from the failed run, within close_timeout_ms).
_FIXED_APP = """
import logging, sys
from kafkalog import KafkaHandler
topic, spill, bootstrap, cafile = sys.argv[1:5]
handler = KafkaHandler(topic=topic, spill_dir=spill, bootstrap_servers=bootstrap,
                       security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                       sasl_username="writer", ssl_cafile=cafile, close_timeout_ms=60000)
log = logging.getLogger("fixed")
log.propagate = False
log.setLevel(logging.INFO)
log.addHandler(handler)
log.info("fixed 0")
handler.close()
print("pending", handler.stats()["spill_pending_records"])
"""


@pytest.fixture(scope="module")
def secured(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecuredKafkaBroker]:
    """The module's secured broker, with its CA and users."""
    if os.environ.get("KAFKALOG_TEST_BOOTSTRAP"):
        pytest.skip("KAFKALOG_TEST_BOOTSTRAP is set: these tests start a secured broker")
    work = tmp_path_factory.mktemp("secured-broker")
    pki = make_pki(work / "pki")
    broker = SecuredKafkaBroker(work / "broker", pki=pki, users=PASSWORDS)
    broker.start()
    try:
        broker.grant(f"User:{WRITER}", "kafkalog.", prefixed=True)
        broker.grant(f"User:{WRITER}", "kafkalog.", "READ", prefixed=True)  # `kafkalog check`
        broker.grant(f"User:{pki.client_principal}", "kafkalog.", prefixed=True)
        yield broker
    finally:
        broker.stop(kill=True)


@pytest.fixture
def pki(secured: SecuredKafkaBroker) -> Pki:
    result: Pki = secured.pki
    return result


@pytest.fixture
def secured_topic(secured: SecuredKafkaBroker, request: pytest.FixtureRequest) -> str:
    """A fresh 3-partition topic, created through the broker's (super user) plain listener."""
    name = f"kafkalog.sec.{request.node.name[:60]}.{uuid.uuid4().hex[:8]}"
    return create_topic(secured.bootstrap, name.replace("[", "-").replace("]", ""), 3)


class _Warnings(logging.Handler):
    """Collects what kafkalog's own logger says."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def about(self, words: str) -> list[str]:
        return [m for m in self.messages if words in m]


@pytest.fixture
def warnings_seen() -> Iterator[_Warnings]:
    capture = _Warnings()
    kafkalog_log.addHandler(capture)
    yield capture
    kafkalog_log.removeHandler(capture)


def _sasl(secured: SecuredKafkaBroker, user: str, mechanism: str = "SCRAM-SHA-512",
          **extra: Any) -> dict[str, Any]:
    return {
        "bootstrap_servers": secured.sasl_bootstrap,
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_username": user,
        "sasl_password": PASSWORDS[user],
        "ssl_cafile": str(secured.pki.ca_cert),
        "request_timeout_ms": 3000,
        "retry_backoff_max_ms": 300,
        "spill_after_ms": 200,
        **extra,
    }


def _log(logger: logging.Logger, handler: KafkaHandler, count: int, tag: str) -> list[str]:
    logger.addHandler(handler)
    messages = [f"{tag} {i}" for i in range(count)]
    for message in messages:
        logger.info(message)
    return messages


def _spill_bytes(directory: Path) -> bytes:
    return b"".join(p.read_bytes() for p in directory.rglob("*") if p.is_file())


def _assert_no_secret(*outputs: object) -> None:
    for output in outputs:
        text = output.decode("utf-8", "replace") if isinstance(output, bytes) else str(output)
        for password in PASSWORDS.values():
            assert password not in text


def _read(secured: SecuredKafkaBroker, topic: str, expected: int) -> list[str]:
    records = consume(secured.bootstrap, topic, expected, timeout_s=30)
    return sorted(str(v["message"]) for v in values(records))


# -- round trips --------------------------------------------------------------------------------


TRANSPORTS = ["kafka-python", "confluent"]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-512", "PLAIN"])
def test_sasl_ssl_round_trip(  # noqa: PLR0917
    secured: SecuredKafkaBroker, secured_topic: str, logger: logging.Logger, tmp_path: Path,
    mechanism: str, transport: str,
) -> None:
    handler = KafkaHandler(topic=secured_topic, spill_dir=str(tmp_path / "spill"),
                           **_sasl(secured, WRITER, mechanism, transport=transport))
    sent = _log(logger, handler, 20, f"{transport} {mechanism}")
    assert handler.flush(timeout=30)
    assert handler.stats()["delivered"] == 20
    handler.close()
    assert _read(secured, secured_topic, 20) == sorted(sent)


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_mutual_tls_round_trip_with_hostname_checking(
    secured: SecuredKafkaBroker, secured_topic: str, logger: logging.Logger, pki: Pki,
    transport: str,
) -> None:
    handler = KafkaHandler(
        topic=secured_topic, bootstrap_servers=secured.ssl_bootstrap, security_protocol="SSL",
        ssl_cafile=str(pki.ca_cert), ssl_certfile=str(pki.client_cert),
        ssl_keyfile=str(pki.client_key), spill_dir=None, transport=transport,
    )  # fmt: skip
    assert handler.config.ssl_check_hostname is True  # the default, and it passes
    sent = _log(logger, handler, 10, f"{transport} mtls")
    assert handler.flush(timeout=30)
    handler.close()
    assert _read(secured, secured_topic, 10) == sorted(sent)


# -- refusals: warn once, spill, lose nothing ---------------------------------------------------


def _refused(handler: KafkaHandler, warnings_seen: _Warnings, cause: str, count: int) -> str:
    """Wait until every record is spilled and the cause was warned about; return the warning."""
    wait_for(lambda: handler.stats()["spilled"] >= count and bool(warnings_seen.about(cause)),
             timeout=30, description=f"{count} records spilled and a warning about {cause!r}")
    stats = handler.stats()
    assert stats["delivered"] == 0
    assert stats["dead_lettered"] == 0 and stats["failed"] == 0 and stats["dropped"] == 0
    (warning,) = warnings_seen.about(cause)  # once, however many retries
    return warning


def _app(secured: SecuredKafkaBroker, topic: str, spill: Path, *args: str,
         password: str, cafile: Path | None = None) -> subprocess.CompletedProcess[str]:
    cafile = cafile or secured.pki.ca_cert
    return subprocess.run(
        [sys.executable, str(APP), secured.sasl_bootstrap, topic, str(spill), str(cafile), *args],
        env={**os.environ, SASL_PASSWORD_ENV: password},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.mark.parametrize("failure", ["wrong password", "unknown CA"])
def test_refused_connection_warns_once_spills_and_the_fixed_app_delivers_it(
    secured: SecuredKafkaBroker, secured_topic: str, tmp_path: Path, failure: str
) -> None:
    spill = tmp_path / "spill"
    if failure == "wrong password":
        password, cafile = "not-" + PASSWORDS[WRITER][::-1], secured.pki.ca_cert
        cause = "authentication failed for SASL user 'writer'"
    else:
        password, cafile = PASSWORDS[WRITER], secured.pki.other_ca_cert
        cause = "TLS verification failed"
    refused = _app(secured, secured_topic, spill, "30", failure, "refused", cause,
                   password=password, cafile=cafile)
    assert refused.returncode == 0, refused.stderr[-3000:]
    warnings = [line for line in refused.stderr.splitlines() if line.startswith("kafkalog: ")]
    about = [line for line in warnings if cause in line]
    assert len(about) == 1, warnings  # once, however many retries
    assert "kept in the spill" in about[0]
    stats = json.loads(refused.stdout.splitlines()[1])
    assert stats["spilled"] == 30 and stats["delivered"] == 0
    assert stats["dead_lettered"] == 0 and stats["failed"] == 0 and stats["dropped"] == 0
    assert cause in stats["last_error"]
    assert consume(secured.bootstrap, secured_topic, 1, timeout_s=3) == []
    spilled = _spill_bytes(spill)
    assert b'"message":"' + failure.encode() + b' 29"' in spilled  # the records wait on disk

    # Restarted with the right settings, the application adopts the spill and delivers it.
    fixed = _app(secured, secured_topic, spill, "1", "fixed", "fixed", password=PASSWORDS[WRITER])
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert fixed.stdout.split() == ["pending", "0"]
    sent = [f"{failure} {i}" for i in range(30)] + ["fixed 0"]
    assert _read(secured, secured_topic, 31) == sorted(sent)
    _assert_no_secret(refused.stdout, refused.stderr, spilled, fixed.stdout, fixed.stderr)


def test_missing_write_acl_holds_records_until_it_is_granted_at_runtime(  # noqa: PLR0917
    secured: SecuredKafkaBroker, secured_topic: str, logger: logging.Logger, tmp_path: Path,
    warnings_seen: _Warnings, capfd: pytest.CaptureFixture[str], caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="kafka")  # kafka-python's own logs are searched too
    spill = tmp_path / "spill"
    handler = KafkaHandler(topic=secured_topic, spill_dir=str(spill),
                           **_sasl(secured, NOBODY, "PLAIN"))
    sent = _log(logger, handler, 40, "acl")
    warning = _refused(handler, warnings_seen, f"not authorised to write topic {secured_topic}",
                       40)
    assert "SASL user 'nobody'" in warning
    spilled = _spill_bytes(spill)
    assert consume(secured.bootstrap, secured_topic, 1, timeout_s=3) == []

    # The operator grants the ACL while the application runs: delivery resumes by itself.
    grant(secured.bootstrap, f"User:{NOBODY}", secured_topic)
    wait_for(lambda: handler.stats()["delivered"] >= 40, timeout=60,
             description="the spill to drain after the grant")
    sent += _log(logger, handler, 5, "after")
    assert handler.flush(timeout=30)
    stats = handler.stats()
    assert stats["delivered"] == 45 and stats["replayed"] == stats["spilled"]
    assert stats["dead_lettered"] == 0 and stats["failed"] == 0 and stats["dropped"] == 0
    assert _read(secured, secured_topic, 45) == sorted(sent)
    shown = [repr(handler), stats, warnings_seen.messages]
    handler.close()
    captured = capfd.readouterr()
    assert caplog.records  # kafka-python did log (its refused requests): the search saw them
    _assert_no_secret(*shown, spilled, captured.out, captured.err, caplog.text)


# -- the kafkalog command -------------------------------------------------------------------------


@pytest.mark.parametrize(("password", "exit_code"), [("right", 0), ("wrong", 8)])
def test_kafkalog_check_on_a_secured_cluster_never_prints_the_password(
    secured: SecuredKafkaBroker, secured_topic: str, password: str, exit_code: int
) -> None:
    secret = PASSWORDS[WRITER] if password == "right" else PASSWORDS[NOBODY][::-1]
    result = subprocess.run(
        [sys.executable, "-m", "kafkalog.cli.main", "check", "--topic", secured_topic,
         "--bootstrap-servers", secured.sasl_bootstrap, "--security-protocol", "SASL_SSL",
         "--sasl-mechanism", "SCRAM-SHA-512", "--sasl-username", WRITER,
         "--ssl-cafile", str(secured.pki.ca_cert), "--timeout", "10"],
        env={**os.environ, SASL_PASSWORD_ENV: secret},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == exit_code, result.stdout + result.stderr
    assert secret not in result.stdout + result.stderr
    _assert_no_secret(result.stdout, result.stderr)


# -- the confluent transport: the same refusals over librdkafka ---------------------------------


def _confluent(secured: SecuredKafkaBroker, user: str, mechanism: str = "SCRAM-SHA-512",
               **extra: Any) -> dict[str, Any]:
    return _sasl(secured, user, mechanism, transport="confluent", **extra)


# failure -> (what is wrong in the settings, what the one warning must say)
_CONFLUENT_REFUSALS = {
    "wrong password": ("password", "authentication failed for SASL user 'writer'"),
    "unknown CA": ("cafile", "TLS verification failed"),
}


@pytest.mark.parametrize("failure", sorted(_CONFLUENT_REFUSALS))
def test_confluent_refusal_is_named_once_spilled_and_delivered_once_fixed(  # noqa: PLR0917
    secured: SecuredKafkaBroker, secured_topic: str, logger: logging.Logger, tmp_path: Path,
    warnings_seen: _Warnings, capfd: pytest.CaptureFixture[str], failure: str,
) -> None:
    spill = tmp_path / "spill"
    wrong, cause = _CONFLUENT_REFUSALS[failure]
    settings = _confluent(secured, WRITER)
    if wrong == "password":
        settings["sasl_password"] = "not-" + PASSWORDS[WRITER][::-1]
    else:
        settings["ssl_cafile"] = str(secured.pki.other_ca_cert)
    handler = KafkaHandler(topic=secured_topic, spill_dir=str(spill), close_timeout_ms=1000,
                           **settings)
    sent = _log(logger, handler, 25, f"confluent {failure}")
    warning = _refused(handler, warnings_seen, cause, 25)
    assert "kept in the spill" in warning
    assert cause in handler.stats()["last_error"]
    shown = [repr(handler), handler.stats(), warnings_seen.messages]
    handler.close()
    logger.removeHandler(handler)
    spilled = _spill_bytes(spill)
    assert f'"message":"confluent {failure} 24"'.encode() in spilled  # waiting on disk
    assert consume(secured.bootstrap, secured_topic, 1, timeout_s=3) == []

    # The application restarted with the right settings adopts the spill and delivers it.
    fixed = KafkaHandler(topic=secured_topic, spill_dir=str(spill), close_timeout_ms=60000,
                         **_confluent(secured, WRITER))
    sent += _log(logger, fixed, 1, "confluent fixed")
    fixed.close()
    assert fixed.stats()["spill_pending_records"] == 0
    assert _read(secured, secured_topic, 26) == sorted(sent)
    captured = capfd.readouterr()
    _assert_no_secret(*shown, spilled, captured.out, captured.err)


def test_confluent_missing_write_acl_is_named_and_delivered_once_granted(
    secured: SecuredKafkaBroker, secured_topic: str, logger: logging.Logger, tmp_path: Path,
    warnings_seen: _Warnings,
) -> None:
    handler = KafkaHandler(topic=secured_topic, spill_dir=str(tmp_path / "spill"),
                           **_confluent(secured, NOBODY, "PLAIN"))
    sent = _log(logger, handler, 30, "confluent acl")
    warning = _refused(handler, warnings_seen,
                       f"not authorised to write topic {secured_topic}", 30)
    assert "SASL user 'nobody'" in warning
    grant(secured.bootstrap, f"User:{NOBODY}", secured_topic)
    wait_for(lambda: handler.stats()["delivered"] >= 30, timeout=60,
             description="the spill to drain after the grant")
    stats = handler.stats()
    assert stats["dead_lettered"] == 0 and stats["failed"] == 0 and stats["dropped"] == 0
    handler.close()
    assert _read(secured, secured_topic, 30) == sorted(sent)
    _assert_no_secret(warnings_seen.messages, stats)
