"""The ``transport`` option, and kafkalog's options as librdkafka properties (with the checks
of ``producer_config`` made at construction), without a broker."""

from __future__ import annotations

import importlib.util
import logging
import subprocess
import sys
import textwrap
from typing import Any

import pytest

from kafkalog import KafkaHandler
from kafkalog.config import HandlerConfig
from kafkalog.errors import ConfigError
from kafkalog.transports import build_transport
from kafkalog.transports.confluent import ConfluentTransport
from kafkalog.transports.confluent_config import check_producer_config, producer_properties
from kafkalog.transports.kafka_python import KafkaPythonTransport


def config(**options: Any) -> HandlerConfig:
    return HandlerConfig.from_options({"topic": "t", "transport": "confluent", **options})


# -- the option ------------------------------------------------------------------------------


def test_transport_defaults_to_kafka_python() -> None:
    assert HandlerConfig.from_options({"topic": "t"}).transport == "kafka-python"


@pytest.mark.parametrize("given", ["confluent", " Confluent ", "CONFLUENT"])
def test_transport_accepts_confluent_in_any_case(given: str) -> None:
    assert HandlerConfig.from_options({"topic": "t", "transport": given}).transport == "confluent"


def test_unknown_transport_is_a_config_error_naming_the_option() -> None:
    with pytest.raises(ConfigError, match="one of kafka-python, confluent") as info:
        HandlerConfig.from_options({"topic": "t", "transport": "librdkafka"})
    assert info.value.option == "transport"


def test_confluent_without_the_package_says_which_extra_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec

    def find_spec(name: str, *args: Any) -> Any:
        return None if name == "confluent_kafka" else real(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    with pytest.raises(ConfigError, match=r"kafkalog\[confluent\]") as info:
        KafkaHandler(topic="t", transport="confluent", spill_dir=None)
    assert info.value.option == "transport"


def test_factory_builds_the_transport_the_option_names() -> None:
    assert isinstance(build_transport(config()), ConfluentTransport)
    default = HandlerConfig.from_options({"topic": "t"})
    assert isinstance(build_transport(default), KafkaPythonTransport)


def test_the_default_transport_never_imports_confluent_kafka() -> None:
    script = textwrap.dedent(
        """
        import sys, logging
        from kafkalog import KafkaHandler
        h = KafkaHandler(topic="t", bootstrap_servers="127.0.0.1:1", spill_dir=None)
        h.close()
        assert "confluent_kafka" not in sys.modules, "imported without being chosen"
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


# -- mapping kafkalog's options to librdkafka's ------------------------------------------------


def test_acks_all_makes_the_producer_idempotent_and_keys_use_murmur2() -> None:
    props = producer_properties(config(bootstrap_servers="a:1,b:2", client_id="svc"))
    assert props["bootstrap.servers"] == "a:1,b:2"
    assert props["acks"] == "all"
    assert props["enable.idempotence"] is True
    assert props["partitioner"] == "murmur2_random"
    assert props["client.id"] == "svc"
    # The worker lingers; each send ends in a flush, so this only spares librdkafka a wake-up
    # per record while a batch is being queued.
    assert props["linger.ms"] == 5
    assert props["max.in.flight.requests.per.connection"] == 5


def test_options_map_to_librdkafka_names_and_units() -> None:
    props = producer_properties(
        config(acks="1", compression_type="lz4", batch_size=32768, max_request_size=2_000_000,
               request_timeout_ms=7000, retry_backoff_ms=0, retry_backoff_max_ms=2000)
    )
    assert props["acks"] == "1"
    assert props["enable.idempotence"] is False
    assert props["compression.type"] == "lz4"
    assert props["batch.size"] == 2_000_000  # a librdkafka batch is a whole request
    assert props["message.max.bytes"] == 2_000_000
    assert props["request.timeout.ms"] == props["message.timeout.ms"] == 7000
    assert props["retry.backoff.ms"] == 1  # librdkafka's minimum
    assert props["retry.backoff.max.ms"] == props["reconnect.backoff.max.ms"] == 2000


def test_out_of_range_timeouts_are_clamped_to_what_librdkafka_accepts() -> None:
    props = producer_properties(config(request_timeout_ms=3_600_000,
                                       retry_backoff_max_ms=1_000_000))
    assert props["request.timeout.ms"] == 900_000
    assert props["retry.backoff.max.ms"] == 300_000
    check_producer_config(config(request_timeout_ms=3_600_000))  # no ConfigError


def test_security_options_map_to_librdkafka_properties(tmp_path: Any) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("not checked here")
    props = producer_properties(
        config(security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
               sasl_username="logs", sasl_password="s3cret", ssl_cafile=str(ca),
               ssl_check_hostname=False)
    )
    assert props["security.protocol"] == "sasl_ssl"
    assert props["sasl.mechanism"] == "SCRAM-SHA-512"
    assert props["sasl.username"] == "logs"
    assert props["sasl.password"] == "s3cret"
    assert props["ssl.ca.location"] == str(ca)
    assert props["ssl.endpoint.identification.algorithm"] == "none"
    assert "security.protocol" not in producer_properties(config())


@pytest.mark.parametrize("prop", ["security.protocol", "sasl.password", "sasl.mechanisms"])
def test_producer_config_may_not_set_what_a_security_option_sets(prop: str) -> None:
    with pytest.raises(ConfigError, match="use the handler option") as info:
        check_producer_config(config(producer_config={prop: "x"}))
    assert info.value.option == "producer_config"


# -- producer_config: librdkafka property names, checked at construction ----------------------


def test_producer_config_takes_librdkafka_properties() -> None:
    good = config(producer_config={"statistics.interval.ms": 0,
                                   "socket.keepalive.enable": True})
    check_producer_config(good)
    assert ConfluentTransport(good).producer_settings()["socket.keepalive.enable"] is True


@pytest.mark.parametrize(
    "props",
    [
        {"no.such.property": 1},
        {"max_in_flight_requests_per_connection": 1},  # kafka-python's spelling
        {"socket.timeout.ms": "soon"},
        {"queue.buffering.max.messages": -5},
    ],
)
def test_producer_config_librdkafka_refuses_is_a_config_error(props: dict[str, Any]) -> None:
    with pytest.raises(ConfigError, match="librdkafka refuses") as info:
        KafkaHandler(topic="t", transport="confluent", spill_dir=None, producer_config=props)
    assert info.value.option == "producer_config"


@pytest.mark.parametrize(
    "name", ["enable.idempotence", "linger.ms", "queue.buffering.max.ms", "message.timeout.ms",
             "transactional.id", "on_delivery", "bootstrap.servers"]
)
def test_producer_config_may_not_set_what_kafkalog_manages(name: str) -> None:
    with pytest.raises(ConfigError, match="kafkalog sets these") as info:
        check_producer_config(config(producer_config={name: "x"}))
    assert info.value.option == "producer_config"


def test_a_handler_refused_at_construction_is_not_left_registered_with_logging() -> None:
    # logging.shutdown() at exit flushes and closes every handler logging knows of.
    with pytest.raises(ConfigError) as info:
        KafkaHandler(topic="t", transport="confluent", spill_dir=None,
                     producer_config={"no.such.property": 1})
    known = [ref() for ref in logging._handlerList]  # type: ignore[attr-defined]
    half_built = [h for h in known if isinstance(h, KafkaHandler) and not hasattr(h, "config")]
    assert half_built == []
    assert info.value.option == "producer_config"


def test_confluent_needs_no_python_codec_package() -> None:
    # librdkafka has every codec built in: no lz4/zstandard/snappy import is checked.
    handler = KafkaHandler(topic="t", transport="confluent", compression_type="zstd",
                           bootstrap_servers="127.0.0.1:1", spill_dir=None)
    handler.close()
