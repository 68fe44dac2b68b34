"""What ``kafkalog check`` (and ``tail``) report as the problem: by exception type, never text."""

from __future__ import annotations

import io
import socket
import ssl
from typing import Any

import kafka.errors
import pytest
from rich.console import Console

import kafkalog.client.probe
from kafkalog.cli import check
from kafkalog.cli.common import EXIT_TOPIC_AUTO_CREATE, EXIT_TOPIC_MISSING
from kafkalog.cli.main import build_parser
from kafkalog.client.probe import (
    WARNING_KINDS,
    ClusterProbe,
    ProbeError,
    connection_problem,
    split_server,
)

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


# -- a missing topic, by what the broker says about creating topics --------------------------------

class _FakeAdmin:
    """Answers as a broker that lacks every topic and has ``settings`` in its configuration
    (None: it refuses to describe its configuration)."""

    def __init__(self, settings: dict[str, str] | None) -> None:
        self.settings = settings

    def describe_topics(self, names: list[str]) -> list[dict[str, Any]]:
        return [{"error_code": kafka.errors.UnknownTopicOrPartitionError.errno, "topic": n}
                for n in names]

    def describe_cluster(self) -> dict[str, Any]:
        return {"brokers": [{"broker_id": 1}], "cluster_id": "c"}

    def describe_configs(self, resources: list[Any], config_filter: str) -> dict[str, Any]:
        if self.settings is None:
            raise kafka.errors.ClusterAuthorizationFailedError("no DescribeConfigs")
        return {"broker": {"1": {k: {"value": v} for k, v in self.settings.items()}}}

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("settings", "kind", "text"),
    [
        ({"auto.create.topics.enable": "true", "num.partitions": "3",
          "default.replication.factor": "1"},
         "topic_auto_create",
         "on the first write, with its defaults: 3 partition(s), replication factor 1"),
        ({"auto.create.topics.enable": "true"}, "topic_auto_create",
         "on the first write with its default partitions and replication"),
        ({"auto.create.topics.enable": "false"}, "auto_create_disabled",
         "auto.create.topics.enable=false"),
        (None, "topic_missing", "does not exist"),
    ],
)
def test_a_missing_topic_is_told_apart_by_the_brokers_auto_create_setting(
    settings: dict[str, str] | None, kind: str, text: str
) -> None:
    probe = ClusterProbe(["127.0.0.1:1"])
    probe._admin = _FakeAdmin(settings)
    with pytest.raises(ProbeError) as exc:
        probe.topic("app-logs")
    assert exc.value.kind == kind
    assert text in str(exc.value)
    assert (kind in WARNING_KINDS) == (kind == "topic_auto_create")


def test_check_reports_the_warning_and_skips_the_round_trip(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    probe = ClusterProbe(["127.0.0.1:1"])
    probe._admin = _FakeAdmin({"auto.create.topics.enable": "true"})
    # check imports the probe when it runs (the command's parser imports no Kafka client).
    monkeypatch.setattr(kafkalog.client.probe, "ClusterProbe", lambda *a, **k: probe)
    monkeypatch.setattr(probe, "resolve", lambda: {"127.0.0.1:1": ["127.0.0.1"]})
    monkeypatch.setattr(probe, "reach", lambda: ["127.0.0.1:1"])
    monkeypatch.setattr(probe, "connect", lambda: {"brokers": [{}], "cluster_id": "c"})

    def no_round_trip(topic: str, value: bytes) -> tuple[int, int, float]:
        raise AssertionError("the round trip would create the topic")

    monkeypatch.setattr(probe, "round_trip", no_round_trip)
    out = io.StringIO()
    args = build_parser().parse_args(["check", "--topic", "app-logs"])
    code = check.run(args, Console(file=out, width=200))
    assert code == EXIT_TOPIC_AUTO_CREATE
    assert code != EXIT_TOPIC_MISSING  # a warning, not the failure it was reported as before
    text = out.getvalue()
    assert "WARN topic: topic 'app-logs' does not exist yet" in text
    assert "FAIL" not in text
    assert "skipped: round trip" in text
