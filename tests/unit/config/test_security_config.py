"""The security options: validation, what reaches kafka-python, error classes, no leaked secret.

The broker side (real TLS, SASL and ACLs) is tested in
tests/integration/test_security_broker.py; here the options, the classification of the
client's exceptions by type, and the worker's reaction to a refusal are checked without one.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kafka.errors
import pytest
from broker.kraft import wait_for
from broker.tls import Pki, make_pki

from kafkalog import KafkaHandler
from kafkalog.cli.common import client_config
from kafkalog.cli.main import build_parser
from kafkalog.cli.main import main as cli_main
from kafkalog.config import SASL_PASSWORD_ENV, HandlerConfig, Secret
from kafkalog.diagnostics import log as kafkalog_log
from kafkalog.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigError,
    SecurityError,
    TlsVerificationError,
    TransportError,
)
from kafkalog.testing import MemoryTransport
from kafkalog.transports.kafka_python import KafkaPythonTransport, check_producer_config, classify

PASSWORD = "Unit-Test-Secret-7f3a9c"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(autouse=True)
def _no_password_in_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SASL_PASSWORD_ENV, raising=False)


def _scram(pki: Pki, **extra: Any) -> dict[str, Any]:
    return {
        "topic": "logs",
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": "SCRAM-SHA-512",
        "sasl_username": "writer",
        "sasl_password": PASSWORD,
        "ssl_cafile": str(pki.ca_cert),
        **extra,
    }


def _settings(config: HandlerConfig) -> dict[str, Any]:
    return KafkaPythonTransport(config).producer_settings(1000)


def test_defaults_are_plaintext_with_hostname_checking_on() -> None:
    config = HandlerConfig.from_options({"topic": "logs"})
    assert config.security_protocol == "PLAINTEXT"
    assert config.ssl_check_hostname is True
    settings = _settings(config)
    assert settings["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in settings


def test_sasl_ssl_options_reach_kafka_python(pki: Pki) -> None:
    config = HandlerConfig.from_options(_scram(pki, security_protocol="sasl_ssl",
                                               sasl_mechanism="scram-sha-512"))
    settings = _settings(config)
    assert settings["security_protocol"] == "SASL_SSL"
    assert settings["sasl_mechanism"] == "SCRAM-SHA-512"
    assert settings["sasl_plain_username"] == "writer"
    assert settings["sasl_plain_password"] == PASSWORD
    assert settings["ssl_cafile"] == str(pki.ca_cert)
    assert settings["ssl_check_hostname"] is True


def test_mutual_tls_options_reach_kafka_python(pki: Pki) -> None:
    config = HandlerConfig.from_options({
        "topic": "logs", "security_protocol": "SSL", "ssl_cafile": str(pki.ca_cert),
        "ssl_certfile": str(pki.client_cert), "ssl_keyfile": str(pki.client_key),
        "ssl_check_hostname": "false",
    })  # fmt: skip
    check_producer_config(config)  # the files load
    settings = _settings(config)
    assert settings["ssl_certfile"] == str(pki.client_cert)
    assert settings["ssl_keyfile"] == str(pki.client_key)
    assert settings["ssl_check_hostname"] is False


def test_password_comes_from_the_environment(pki: Pki, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SASL_PASSWORD_ENV, "from-the-env")
    options = _scram(pki)
    del options["sasl_password"]
    config = HandlerConfig.from_options(options)
    assert config.sasl_password == Secret("from-the-env")
    # An explicit option wins over the environment.
    assert HandlerConfig.from_options(_scram(pki)).sasl_password == Secret(PASSWORD)


def test_environment_password_is_ignored_without_sasl(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SASL_PASSWORD_ENV, "from-the-env")
    config = HandlerConfig.from_options({"topic": "logs"})
    assert config.sasl_password is None
    assert "sasl_plain_password" not in _settings(config)


@pytest.mark.parametrize(
    ("change", "option", "words"),
    [
        ({"sasl_mechanism": None}, "sasl_mechanism", "is required"),
        ({"sasl_mechanism": "KERBEROS5"}, "sasl_mechanism", "must be one of"),
        ({"security_protocol": "TLS"}, "security_protocol", "must be one of"),
        ({"sasl_username": None}, "sasl_username", "is required"),
        ({"sasl_password": None}, "sasl_password", SASL_PASSWORD_ENV),
        ({"sasl_password": 12345}, "sasl_password", "must be a string"),
        ({"ssl_cafile": "/nonexistent/ca.pem"}, "ssl_cafile", "is not a file"),
        ({"ssl_keyfile": "KEY"}, "ssl_keyfile", "needs ssl_certfile"),
        ({"ssl_check_hostname": "perhaps"}, "ssl_check_hostname", "true or false"),
        ({"security_protocol": "SSL"}, "sasl_mechanism", "SASL_SSL"),
        ({"security_protocol": "PLAINTEXT", "sasl_mechanism": None, "sasl_username": None,
          "sasl_password": None}, "ssl_cafile", "SSL or SASL_SSL"),
        ({"sasl_mechanism": "OAUTHBEARER"}, "sasl_mechanism", "sasl_oauth_token_provider"),
    ],
)
def test_bad_security_options_are_refused_naming_the_option(
    pki: Pki, change: dict[str, Any], option: str, words: str
) -> None:
    options = _scram(pki)
    for name, value in change.items():
        options[name] = str(pki.client_key) if value == "KEY" else value
    with pytest.raises(ConfigError) as caught:
        HandlerConfig.from_options(options)
    assert caught.value.option == option
    assert words in str(caught.value)
    assert PASSWORD not in str(caught.value)


@pytest.mark.parametrize(
    ("setting", "option"),
    [
        ("security_protocol", "security_protocol"),
        ("sasl_plain_username", "sasl_username"),
        ("sasl_plain_password", "sasl_password"),
        ("ssl_cafile", "ssl_cafile"),
        ("ssl_check_hostname", "ssl_check_hostname"),
    ],
)
def test_producer_config_may_not_duplicate_a_security_option(
    pki: Pki, setting: str, option: str
) -> None:
    with pytest.raises(ConfigError) as caught:
        HandlerConfig.from_options(_scram(pki, producer_config={setting: PASSWORD}))
    assert caught.value.option == "producer_config"
    assert setting in str(caught.value)
    assert PASSWORD not in str(caught.value)


def test_a_file_that_is_not_a_certificate_is_refused_at_construction(
    pki: Pki, tmp_path: Path
) -> None:
    garbage = tmp_path / "ca.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError) as caught:
        KafkaHandler(**_scram(pki, ssl_cafile=str(garbage), spill_dir=None))
    assert caught.value.option == "ssl_cafile"
    # A key that does not belong to the certificate.
    config = HandlerConfig.from_options({
        "topic": "logs", "security_protocol": "SSL", "ssl_certfile": str(pki.client_cert),
        "ssl_keyfile": str(pki.broker_key),
    })  # fmt: skip
    with pytest.raises(ConfigError) as caught:
        check_producer_config(config)
    assert caught.value.option == "ssl_certfile/ssl_keyfile"


def test_the_password_is_never_shown(pki: Pki) -> None:
    config = HandlerConfig.from_options(_scram(pki))
    handler = KafkaHandler(config=config, transport_factory=MemoryTransport.factory())
    try:
        shown = [repr(config), str(config), repr(handler), str(handler.stats()),
                 repr(config.sasl_password), f"{config.sasl_password}"]
    finally:
        handler.close()
    for text in shown:
        assert PASSWORD not in text
    assert "Secret('***')" in repr(config)
    assert config.sasl_password is not None and config.sasl_password.reveal() == PASSWORD


# -- classification by type -------------------------------------------------------------------


def _wrapped_tls_failure() -> Exception:
    """What kafka-python raises for a failed handshake: its own error, raised from ssl's."""
    try:
        try:
            raise ssl.SSLCertVerificationError(1, "certificate verify failed")
        except ssl.SSLError as exc:
            raise kafka.errors.KafkaConnectionError(f"Handshake failed: {exc}")  # noqa: B904
    except kafka.errors.KafkaConnectionError as outer:
        return outer


@pytest.mark.parametrize(
    ("exc", "kind", "words"),
    [
        (kafka.errors.SaslAuthenticationFailedError("invalid credentials"),
         AuthenticationError, "authentication failed for SASL user 'writer'"),
        (kafka.errors.TopicAuthorizationFailedError({"logs"}),
         AuthorizationError, "not authorised to write topic logs"),
        (kafka.errors.ClusterAuthorizationFailedError(),
         AuthorizationError, "not authorised to write topic logs"),
        (_wrapped_tls_failure(), TlsVerificationError, "TLS verification failed"),
    ],
)  # fmt: skip
def test_refusals_are_classified_by_type_as_retriable_security_errors(
    exc: Exception, kind: type[SecurityError], words: str
) -> None:
    err = classify(exc, topic="logs", login="SASL user 'writer' (SCRAM-SHA-512)")
    assert type(err) is kind
    assert err.retriable is True
    assert words in str(err)


def test_other_errors_keep_their_classification() -> None:
    assert classify(kafka.errors.KafkaConnectionError("reset")).retriable is True
    assert not isinstance(classify(kafka.errors.KafkaConnectionError("x")), SecurityError)
    assert classify(kafka.errors.MessageSizeTooLargeError()).retriable is False


# -- the worker's reaction ----------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())  # handle() holds the handler's lock


@pytest.fixture
def warnings_seen() -> Iterator[_Capture]:
    capture = _Capture()
    kafkalog_log.addHandler(capture)
    yield capture
    kafkalog_log.removeHandler(capture)


def test_a_refused_client_spills_warns_once_and_loses_nothing(
    tmp_path: Path, warnings_seen: _Capture, logger: logging.Logger
) -> None:
    transport = MemoryTransport()
    refusal = AuthorizationError("not authorised to write topic logs (test)")
    transport.fail_next = [refusal] * 20
    handler = KafkaHandler(
        topic="logs", spill_dir=str(tmp_path), spill_after_ms=0, retry_backoff_ms=1,
        retry_backoff_max_ms=5, transport_factory=MemoryTransport.factory(transport),
    )  # fmt: skip
    logger.addHandler(handler)
    for i in range(30):
        logger.info("record %d", i)
    # The refusals end (the ACL was granted): the spill drains, in order.
    wait_for(lambda: len(transport.records) >= 30, timeout=20, description="the spill to drain")
    stats = handler.stats()
    assert stats["dead_lettered"] == 0 and stats["failed"] == 0 and stats["dropped"] == 0
    assert stats["spilled"] >= 1 and stats["replayed"] == stats["spilled"]
    assert [m["message"] for m in transport.messages()] == [f"record {i}" for i in range(30)]
    about = [m for m in warnings_seen.messages if "not authorised to write topic logs" in m]
    assert len(about) == 1, warnings_seen.messages
    assert "kept in the spill" in about[0]


def test_transport_errors_without_security_meaning_are_not_security_errors() -> None:
    err = TransportError("x", retriable=True)
    assert not isinstance(err, SecurityError)


# -- the kafkalog command -------------------------------------------------------------------------


def test_cli_security_flags_become_client_settings(
    pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SASL_PASSWORD_ENV, PASSWORD)
    args = build_parser().parse_args([
        "check", "--topic", "logs", "--security-protocol", "SASL_SSL",
        "--sasl-mechanism", "PLAIN", "--sasl-username", "writer",
        "--ssl-cafile", str(pki.ca_cert), "--no-ssl-check-hostname",
    ])  # fmt: skip
    settings = client_config(args)
    assert settings["sasl_plain_password"] == PASSWORD
    assert settings["ssl_check_hostname"] is False
    assert settings["sasl_mechanism"] == "PLAIN"


def test_cli_refuses_bad_security_flags_before_connecting(
    capsys: pytest.CaptureFixture[str],
) -> None:
    code = cli_main(["check", "--topic", "logs", "--bootstrap-servers", "127.0.0.1:1",
                     "--security-protocol", "SASL_SSL"])
    assert code == 2
    assert "sasl_mechanism" in capsys.readouterr().err
