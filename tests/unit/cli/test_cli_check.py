"""What ``kafkalog check`` (and ``tail``) report as the problem: by exception type, never text."""

from __future__ import annotations

import socket
import ssl

import kafka.errors
import pytest

from kafkalog.client.probe import connection_problem, split_server

# -- connection problems, by exception type --------------------------------------------------------

def _raised_from(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:
        return exc

@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (socket.gaierror(-2, "Name or service not known"), "dns"),
        (ssl.SSLCertVerificationError(1, "certificate verify failed"), "tls"),
        (ssl.SSLError(1, "wrong version number"), "tls"),
        (kafka.errors.SaslAuthenticationFailedError("bad password"), "sasl"),
        (kafka.errors.UnsupportedSaslMechanismError("PLAIN"), "sasl"),
        (ConnectionRefusedError(111, "Connection refused"), "refused"),
        (TimeoutError("timed out"), "unreachable"),
        (OSError(113, "No route to host"), "unreachable"),
        (_raised_from(kafka.errors.KafkaConnectionError("x"),
                      ssl.SSLError(1, "handshake failure")), "tls"),
        (kafka.errors.KafkaTimeoutError("Unable to bootstrap"), "kafka"),
        (ValueError("connection refused, says the text"), "kafka"),  # text is never read
    ],
)
def test_connection_problems_are_classified_by_type(exc: BaseException, kind: str) -> None:
    assert connection_problem(exc) == kind

@pytest.mark.parametrize(
    ("server", "expected"),
    [("k1:9092", ("k1", 9092)), ("k1", ("k1", 9092)), ("[::1]:9093", ("::1", 9093)),
     ("10.0.0.1:19092", ("10.0.0.1", 19092))],
)
def test_bootstrap_servers_are_split_into_host_and_port(
    server: str, expected: tuple[str, int]
) -> None:
    assert split_server(server) == expected
