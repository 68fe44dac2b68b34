"""The sink's options: names, validation, the TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from kafkalog.errors import ConfigError
from kafkalog.sink.config import load_toml, sink_config

BASE = {"topics": ["app-logs"], "group": "g1", "to": "opensearch"}


def test_defaults_and_the_dead_letter_topic_named_after_the_group() -> None:
    config = sink_config(BASE)
    assert config.output == "opensearch"
    assert config.start == "earliest"
    assert config.dead_letters == "g1.dead-letters"
    assert config.kafka_config().topic == "g1.dead-letters"


def test_file_output_takes_its_directory_from_to() -> None:
    config = sink_config({**BASE, "to": "file:/tmp/archive"})
    assert (config.output, config.file_dir) == ("file", Path("/tmp/archive"))


def test_topics_and_hosts_take_lists_or_comma_separated_strings() -> None:
    config = sink_config({**BASE, "topics": "a,b", "hosts": "http://h1:9200,https://h2:9200"})
    assert config.topics == ("a", "b")
    assert config.hosts == ("http://h1:9200", "https://h2:9200")


@pytest.mark.parametrize(("options", "option"), [
    ({"to": "elasticsearch"}, "to"),
    ({"topics": ["bad topic"]}, "topics"),
    ({"hosts": ["127.0.0.1:9200"]}, "hosts"),
    ({"start": "middle"}, "start"),
    ({"bulk_workers": 0}, "bulk_workers"),
    ({"index": "Logs"}, "index"),
    ({"consumer": {"enable_auto_commit": True}}, "consumer.enable_auto_commit"),
    ({"sasl_password": "secret"}, "sasl_password"),
    ({"max_in_flight_records": 10}, "max_in_flight_records"),
    ({"security_protocol": "NOPE"}, "security_protocol"),
])  # fmt: skip
def test_a_bad_option_is_refused_by_name(options: dict, option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sink_config({**BASE, **options})
    assert caught.value.option == option


def test_an_unknown_option_suggests_the_close_one() -> None:
    with pytest.raises(ConfigError, match="bulk_workers"):
        sink_config({**BASE, "bulk_worker": 3})


@pytest.mark.parametrize("missing", ["topics", "group", "to"])
def test_topics_group_and_output_are_required(missing: str) -> None:
    with pytest.raises(ConfigError) as caught:
        sink_config({k: v for k, v in BASE.items() if k != missing})
    assert caught.value.option == missing


def test_the_toml_file_with_overrides_from_flags(tmp_path: Path) -> None:
    path = tmp_path / "sink.toml"
    path.write_text('topics = ["a"]\ngroup = "g"\nto = "opensearch"\nbulk_workers = 3\n'
                    '[consumer]\nmax_poll_records = 100\n')
    config = load_toml(path, {"group": "from-flag"})
    assert (config.group, config.bulk_workers) == ("from-flag", 3)
    assert config.consumer == {"max_poll_records": 100}
    assert config.source == str(path)


def test_a_toml_file_that_does_not_parse_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "sink.toml"
    path.write_text("topics = [")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_toml(path)


def test_the_example_config_file_is_valid() -> None:
    example = Path(__file__).resolve().parents[3] / "examples" / "sink" / "sink.toml"
    config = load_toml(example)
    assert config.index == "logs-{app}-%Y.%m.%d"
    assert config.consumer["max_poll_records"] == 2000
