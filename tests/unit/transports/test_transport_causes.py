"""Why a send fails, named by type: the bootstrap servers' reachability (socket exceptions),
a missing or invalid topic (the broker's error code), and producer_config spellings."""

from __future__ import annotations

import socket
import threading

import kafka.errors
import pytest
from confluent_kafka import KafkaError

from kafkalog.config import HandlerConfig
from kafkalog.errors import ConfigError
from kafkalog.transports.confluent_errors import classify_error
from kafkalog.transports.errors import TopicMissingError
from kafkalog.transports.kafka_python import KafkaPythonTransport
from kafkalog.transports.kafka_python_config import check_producer_config
from kafkalog.transports.reach import Finding, ReachCheck, summary, try_server


def closed_port() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"  # closed again when the block ends


def test_a_refused_port_is_named_refused() -> None:
    server = closed_port()
    assert try_server(server) == Finding(server, "refused")
    assert "connection refused" in Finding(server, "refused").describe()


def test_a_name_that_does_not_resolve_is_named_so() -> None:
    found = try_server("no-such-host.invalid:9092")
    assert found.kind == "dns"
    assert found.describe().startswith("no-such-host.invalid:9092: the name does not resolve")


def test_a_name_the_idna_codec_refuses_is_named_so_without_a_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    found = try_server("kafka..internal:9092")  # an empty label: refused before any lookup
    assert (found.kind, found.detail) == ("dns", "not a valid host name")
    check = ReachCheck(["kafka..internal:9092", "a:1"],
                       attempt=lambda s: try_server(s) if ".." in s else _raise(s))
    assert check.done.wait(30)
    kinds = [(f.kind, f.detail) for f in check.findings()]
    assert kinds == [("dns", "not a valid host name"), ("dns", "RuntimeError: a:1")]
    assert "Traceback" not in capsys.readouterr().err


def _raise(server: str) -> Finding:
    raise RuntimeError(server)


def test_an_address_that_never_answers_is_a_timeout(silent_address: str) -> None:
    found = try_server(silent_address, timeout_s=0.3)
    assert found.kind == "timeout"
    assert "no answer within 0.3 s" in found.describe()


def test_a_listening_port_is_reported_as_accepting() -> None:
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(4)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        assert try_server(address).kind == "accepts"


def test_the_summary_puts_the_most_telling_cause_first() -> None:
    cause, text = summary([Finding("a:1", "accepts"), Finding("b:2", "refused")])
    assert cause == "ConnectionRefused"
    assert text.index("b:2") < text.index("a:1")


def test_a_server_still_being_tried_is_reported_with_the_time_so_far() -> None:
    now = [100.0]
    release = threading.Event()

    def attempt(server: str) -> Finding:
        release.wait(5)
        return Finding(server, "refused")

    check = ReachCheck(["h:1"], attempt=attempt, clock=lambda: now[0])
    assert check.findings()[0].kind == "resolving"
    now[0] += 2.0
    assert check.findings()[0].describe() == "h:1: no answer yet after 2.0 s"
    release.set()
    assert check.done.wait(30)
    assert check.findings() == [Finding("h:1", "refused")]


def test_a_timeout_on_metadata_for_a_topic_the_cluster_says_it_lacks_names_the_topic() -> None:
    config = HandlerConfig.given(None, "orders", {"bootstrap_servers": "k1:9092,k2:9092"})
    transport = KafkaPythonTransport(config)
    timeout = kafka.errors.KafkaTimeoutError("Failed to update metadata after 1.0 secs.")
    assert not isinstance(transport._classify(timeout), TopicMissingError)  # nothing known yet
    transport._topic_errors["orders"] = kafka.errors.UnknownTopicOrPartitionError
    err = transport._classify(timeout)
    assert isinstance(err, TopicMissingError)
    assert err.retriable
    assert "topic 'orders' does not exist on the cluster at k1:9092,k2:9092" in str(err)
    assert "create the topic" in str(err) and "auto.create.topics.enable" in str(err)


@pytest.mark.parametrize("known", [None, kafka.errors.InvalidTopicError])
def test_an_invalid_topic_is_refused_for_good_with_the_reason(known: type | None) -> None:
    transport = KafkaPythonTransport(HandlerConfig.given(None, "__consumer_offsets", {}))
    if known is None:  # the broker's answer to a produce request
        err = transport._classify(kafka.errors.InvalidTopicError())
    else:  # the broker's answer to a metadata request, then kafka-python's timeout
        transport._topic_errors["__consumer_offsets"] = known
        err = transport._classify(kafka.errors.KafkaTimeoutError())
    assert not err.retriable
    assert err.cause_name == "InvalidTopic"
    assert "refuses topic '__consumer_offsets' as invalid for writing (InvalidTopicError" \
        in str(err)


def test_librdkafka_s_invalid_topic_code_is_refused_with_the_reason() -> None:
    err = classify_error(KafkaError(KafkaError.TOPIC_EXCEPTION), topic="__consumer_offsets")
    assert not err.retriable
    assert "refuses topic '__consumer_offsets' as invalid for writing (TOPIC_EXCEPTION" in str(err)


@pytest.mark.parametrize(
    ("setting", "hint"),
    [
        ("linger.ms", "'linger.ms': did you mean 'linger_ms'? It is a kafkalog option"),
        ("max.in.flight.requests.per.connection",
         "did you mean 'max_in_flight_requests_per_connection'? kafka-python spells"),
        ("retriess", "'retriess': did you mean 'retries'?"),
    ],
)
def test_a_java_or_librdkafka_spelling_gets_the_kafka_python_name(setting: str, hint: str) -> None:
    config = HandlerConfig.given(None, "t", {"producer_config": {setting: 1}})
    with pytest.raises(ConfigError, match="producer_config") as raised:
        check_producer_config(config)
    assert hint in str(raised.value)
