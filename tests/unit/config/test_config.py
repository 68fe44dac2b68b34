"""Handler options: strings from config files are accepted, bad values name the option."""

from __future__ import annotations

import logging

import pytest

from kafkalog import ConfigError, HandlerConfig, KafkaHandler


def test_options_from_config_file_strings_are_typed() -> None:
    config = HandlerConfig.from_options(
        {
            "topic": "app-logs",
            "bootstrap_servers": "k1:9092, k2:9093",
            "acks": "1",
            "linger_ms": "20",
            "batch_size": "65536",
            "compression_type": "GZIP",
            "sync_level": "critical",
            "static_fields": '{"service": "billing"}',
            "partition": "2",
        }
    )
    assert config.bootstrap_servers == ("k1:9092", "k2:9093")
    assert config.acks == 1
    assert config.linger_ms == 20
    assert config.batch_size == 65536
    assert config.compression_type == "gzip"
    assert config.sync_level == logging.CRITICAL
    assert config.static_fields == {"service": "billing"}
    assert config.partition == 2


def test_bootstrap_servers_accepts_a_list() -> None:
    config = HandlerConfig.from_options({"topic": "t", "bootstrap_servers": ["a:1", "b:2"]})
    assert config.bootstrap_servers == ("a:1", "b:2")


def test_bootstrap_servers_default_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKALOG_BOOTSTRAP_SERVERS", "envhost:1234")
    assert HandlerConfig.from_options({"topic": "t"}).bootstrap_servers == ("envhost:1234",)
    monkeypatch.delenv("KAFKALOG_BOOTSTRAP_SERVERS")
    assert HandlerConfig.from_options({"topic": "t"}).bootstrap_servers == ("localhost:9092",)


@pytest.mark.parametrize("acks", ["all", -1, "-1"])
def test_acks_all_spellings(acks: object) -> None:
    assert HandlerConfig.from_options({"topic": "t", "acks": acks}).acks == -1


@pytest.mark.parametrize(
    ("options", "option"),
    [
        ({"acks": 7}, "acks"),
        ({"acks": True}, "acks"),
        ({"linger_ms": -1}, "linger_ms"),
        ({"batch_size": "lots"}, "batch_size"),
        ({"queue_max_bytes": -5}, "queue_max_bytes"),
        ({"max_request_size": 10}, "max_request_size"),
        ({"compression_type": "brotli"}, "compression_type"),
        ({"overflow_policy": "explode"}, "overflow_policy"),
        ({"bootstrap_servers": "nohostport"}, "bootstrap_servers"),
        ({"bootstrap_servers": 9092}, "bootstrap_servers"),
        ({"lingr_ms": 5}, "lingr_ms"),
        ({"topic": "bad topic!"}, "topic"),
        ({"topic": ""}, "topic"),
        ({"dead_letter_topic": "bad topic!"}, "dead_letter_topic"),
        ({"schema": "xml"}, "schema"),
        ({"sync_level": "LOUD"}, "sync_level"),
        ({"key": "not an identifier"}, "key"),
        ({"producer_config": {"acks": 1}}, "producer_config"),
        ({"retry_backoff_ms": 500, "retry_backoff_max_ms": 100}, "retry_backoff_max_ms"),
    ],
)
def test_bad_option_raises_value_error_naming_it(options: dict[str, object], option: str) -> None:
    full = {"topic": "t", **options}
    with pytest.raises(ValueError, match=repr(option)) as info:
        KafkaHandler(**full)
    assert isinstance(info.value, ConfigError)
    assert info.value.option == option


def test_unknown_option_suggests_the_close_name() -> None:
    with pytest.raises(ConfigError, match="did you mean 'linger_ms'"):
        HandlerConfig.from_options({"topic": "t", "lingr_ms": 5})


def test_missing_topic_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'topic'"):
        KafkaHandler()
