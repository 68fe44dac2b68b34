"""PipelineConfig: the pipeline's options, validated exactly as the handler validates them;
the handler's formatting options are refused, since the pipeline takes ready-made bytes."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

import kafkalog
from kafkalog.config import (
    HandlerConfig,
    PipelineConfig,
    Secret,
    formatting,
    pipeline,
    spill,
    transport,
)
from kafkalog.errors import ConfigError, InvariantError

HANDLER_ONLY = {
    "key": "uid",
    "sync_level": "ERROR",
    "sync_timeout_ms": "100",
    "schema": "ecs",
    "static_fields": {"service": "billing"},
    "redact_keys": "password",
}


def _pipeline_fields() -> dict[str, dataclasses.Field[Any]]:
    return {f.name: f for f in dataclasses.fields(PipelineConfig)}


def test_handler_config_is_a_pipeline_config_plus_the_formatting_options() -> None:
    assert issubclass(HandlerConfig, PipelineConfig)
    assert isinstance(HandlerConfig.from_options({"topic": "t"}), PipelineConfig)
    handler_fields = [f.name for f in dataclasses.fields(HandlerConfig)]
    assert handler_fields[0] == "topic"
    assert set(handler_fields) - set(_pipeline_fields()) == set(HANDLER_ONLY)


def test_pipeline_config_is_exported_by_kafkalog() -> None:
    assert kafkalog.PipelineConfig is PipelineConfig
    assert "PipelineConfig" in kafkalog.__all__


def test_every_option_is_validated_by_exactly_one_slice() -> None:
    tables = [transport.OPTIONS, pipeline.OPTIONS, spill.OPTIONS, formatting.OPTIONS]
    names = ["topic"] + [name for table in tables for name in table]
    assert len(names) == len(set(names)), "an option is validated by two slices"
    assert set(names) == {f.name for f in dataclasses.fields(HandlerConfig)}


def test_an_option_no_slice_validates_is_a_bug_not_bad_input(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delitem(pipeline.OPTIONS, "linger_ms")
    with pytest.raises(InvariantError, match="validated nowhere: \\['linger_ms'\\]") as info:
        PipelineConfig.from_options({"topic": "t", "linger_ms": 5})
    assert not isinstance(info.value, ConfigError)


def test_pipeline_options_from_config_file_strings_give_the_handlers_values(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("KAFKALOG_SASL_PASSWORD", raising=False)
    cafile = tmp_path / "ca.pem"
    cafile.write_text("not parsed by the config: the transport loads it\n")
    options = {
        "topic": "app-logs",
        "bootstrap_servers": "k1:9092, k2:9093",
        "partition": "2",
        "acks": "1",
        "compression_type": "GZIP",
        "linger_ms": "20",
        "batch_size": "65_536",
        "max_request_size": "2097152",
        "delivery_timeout_ms": 60000.0,
        "request_timeout_ms": "15000",
        "retry_backoff_ms": "50",
        "retry_backoff_max_ms": "500",
        "client_id": "billing",
        "producer_config": '{"metadata_max_age_ms": 1000}',
        "transport": "Kafka-Python",
        "security_protocol": "sasl_ssl",
        "sasl_mechanism": "scram-sha-512",
        "sasl_username": "writer",
        "sasl_password": "pw",
        "ssl_cafile": str(cafile),
        "ssl_certfile": str(cafile),
        "ssl_keyfile": str(cafile),
        "ssl_check_hostname": "no",
        "queue_max_records": "10",
        "queue_max_bytes": "4194304",
        "overflow_policy": "BLOCK",
        "block_timeout_ms": "0",
        "close_timeout_ms": "1000",
        "spill_dir": str(tmp_path / "spill"),
        "app_name": "billing",
        "spill_fsync": "Always",
        "spill_fsync_interval_ms": "10",
        "spill_max_bytes": "1048576",
        "spill_segment_bytes": "4096",
        "spill_full_policy": "drop_newest",
        "spill_after_ms": "0",
        "dead_letter_topic": "app-logs.dlq",
    }
    assert set(options) == set(_pipeline_fields()), "every pipeline option is given"
    config = PipelineConfig.from_options(options)
    handler = HandlerConfig.from_options(options)
    for name in _pipeline_fields():
        assert getattr(config, name) == getattr(handler, name), name
    assert config.bootstrap_servers == ("k1:9092", "k2:9093")
    assert config.acks == 1
    assert config.batch_size == 65536
    assert config.overflow_policy == "block"
    assert config.sasl_password == Secret("pw")
    assert config.ssl_check_hostname is False


def test_pipeline_defaults_are_the_handlers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKALOG_BOOTSTRAP_SERVERS", raising=False)
    config = PipelineConfig.from_options({"topic": "t"})
    handler = HandlerConfig.from_options({"topic": "t"})
    for name in _pipeline_fields():
        assert getattr(config, name) == getattr(handler, name), name


def test_environment_fallbacks_apply_to_the_pipeline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KAFKALOG_BOOTSTRAP_SERVERS", "envhost:1234")
    monkeypatch.setenv("KAFKALOG_SASL_PASSWORD", "from-env")
    config = PipelineConfig.from_options({
        "topic": "t", "security_protocol": "SASL_PLAINTEXT", "sasl_mechanism": "PLAIN",
        "sasl_username": "writer",
    })
    assert config.bootstrap_servers == ("envhost:1234",)
    assert config.sasl_password == Secret("from-env")


@pytest.mark.parametrize(
    "options",
    [
        {"acks": 7},
        {"acks": True},
        {"linger_ms": -1},
        {"batch_size": "lots"},
        {"queue_max_bytes": -5},
        {"max_request_size": 10},
        {"queue_max_bytes": 4096, "max_request_size": 8192},
        {"compression_type": "brotli"},
        {"overflow_policy": "explode"},
        {"bootstrap_servers": "nohostport"},
        {"bootstrap_servers": 9092},
        {"partition": -1},
        {"lingr_ms": 5},
        {"topic": "bad topic!"},
        {"topic": ""},
        {"producer_config": {"acks": 1}},
        {"producer_config": {"schema": "ecs"}},
        {"producer_config": "not json"},
        {"retry_backoff_ms": 500, "retry_backoff_max_ms": 100},
        {"security_protocol": "TLS"},
        {"security_protocol": "SASL_SSL"},
        {"sasl_username": "writer"},
        {"ssl_cafile": "/no/such/ca.pem"},
        {"ssl_check_hostname": "maybe"},
        {"spill_dir": 5},
        {"app_name": "../up"},
        {"spill_fsync": "sometimes"},
        {"spill_segment_bytes": 100},
        {"spill_full_policy": "explode"},
        {"dead_letter_topic": "bad topic!"},
        {"client_id": ""},
    ],
)
def test_bad_pipeline_option_gives_the_handlers_error(options: dict[str, Any]) -> None:
    full = {"topic": "t", **options}
    with pytest.raises(ConfigError) as from_handler:
        HandlerConfig.from_options(full)
    with pytest.raises(ConfigError) as from_pipeline:
        PipelineConfig.from_options(full)
    assert str(from_pipeline.value) == str(from_handler.value)
    assert from_pipeline.value.option == from_handler.value.option


def test_a_config_built_directly_is_validated_and_normalised_like_from_options() -> None:
    direct = PipelineConfig(topic="t", bootstrap_servers="a:9092, b:9093",  # type: ignore[arg-type]
                            acks="all", linger_ms="20", spill_dir=None)  # type: ignore[arg-type]
    assert direct == PipelineConfig.from_options(
        {"topic": "t", "bootstrap_servers": "a:9092, b:9093", "acks": "all", "linger_ms": "20",
         "spill_dir": None})
    assert direct.bootstrap_servers == ("a:9092", "b:9093")
    assert direct.acks == -1 and direct.linger_ms == 20


@pytest.mark.parametrize(
    ("options", "option"),
    [({"linger_ms": -1}, "linger_ms"), ({"topic": ""}, "topic"),
     ({"retry_backoff_ms": 500, "retry_backoff_max_ms": 100}, "retry_backoff_max_ms"),
     ({"producer_config": {"acks": 1}}, "producer_config")],
)
def test_bad_values_fail_a_config_built_directly_or_replaced(
    options: dict[str, Any], option: str
) -> None:
    with pytest.raises(ConfigError) as direct:
        PipelineConfig(**{"topic": "t", **options})
    assert direct.value.option == option
    with pytest.raises(ConfigError) as replaced:
        dataclasses.replace(PipelineConfig.from_options({"topic": "t"}), **options)
    assert replaced.value.option == option


def test_missing_topic_is_an_error() -> None:
    with pytest.raises(ConfigError, match="'topic': is required"):
        PipelineConfig.from_options({})


def test_unknown_option_suggests_the_close_pipeline_name() -> None:
    with pytest.raises(ConfigError, match="unknown option \\(did you mean 'linger_ms'\\?\\)"):
        PipelineConfig.from_options({"topic": "t", "lingr_ms": 5})


@pytest.mark.parametrize(("name", "value"), sorted(HANDLER_ONLY.items()))
def test_handler_only_option_is_refused_naming_it(name: str, value: Any) -> None:
    HandlerConfig.from_options({"topic": "t", name: value})  # a good value for the handler
    with pytest.raises(ConfigError) as info:
        PipelineConfig.from_options({"topic": "t", name: value})
    assert info.value.option == name
    assert str(info.value).startswith(f"kafkalog option {name!r}: ")
    assert "KafkaHandler (formatting) option" in str(info.value)
    assert "ready-made bytes" in str(info.value)


@pytest.mark.parametrize(
    "options",
    [
        {"spill_dir": None},
        {"spill_dir": "~/spill-here"},
        {"spill_dir": "auto"},
        {"spill_dir": "auto", "app_name": "billing"},
    ],
)
def test_spill_path_is_the_handlers(options: dict[str, Any]) -> None:
    full = {"topic": "app-logs", **options}
    expected = HandlerConfig.from_options(full).spill_path()
    assert PipelineConfig.from_options(full).spill_path() == expected
    if options["spill_dir"] is None:
        assert expected is None
    else:
        assert expected is not None and "~" not in str(expected)
