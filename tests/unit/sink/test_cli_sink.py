"""``kafkalog sink``'s command line: the flags as the issue writes them, --config, errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest

from kafkalog.cli.main import build_parser, main
from kafkalog.cli.sink import config_from_args


def parse(*argv: str) -> argparse.Namespace:
    return build_parser().parse_args(["sink", *argv])


def test_the_opensearch_form() -> None:
    args = parse("--topic", "T", "--topic", "T2", "--group", "G", "--bootstrap-servers",
                 "127.0.0.1:9092", "--to", "opensearch", "--hosts", "http://127.0.0.1:9200",
                 "--index", "logs-{app}-%Y.%m.%d")
    config = config_from_args(args)
    assert config.topics == ("T", "T2")
    assert (config.group, config.output) == ("G", "opensearch")
    assert config.bootstrap_servers == ("127.0.0.1:9092",)
    assert config.hosts == ("http://127.0.0.1:9200",)
    assert config.index == "logs-{app}-%Y.%m.%d"
    assert config.template and config.start == "earliest"


def test_the_file_form_and_the_other_flags(tmp_path: Path) -> None:
    args = parse("--topic", "T", "--group", "G", "--to", f"file:{tmp_path}", "--from",
                 "latest", "--no-template", "--on-invalid", "dead-letter",
                 "--dead-letter-topic", "dlq", "--security-protocol", "SSL")
    config = config_from_args(args)
    assert (config.output, config.file_dir, config.start) == ("file", tmp_path, "latest")
    assert not config.template and config.on_invalid == "dead-letter"
    assert config.dead_letters == "dlq"
    assert config.security == {"security_protocol": "SSL"}


def test_the_config_file_form_with_a_flag_on_top(tmp_path: Path) -> None:
    path = tmp_path / "sink.toml"
    path.write_text('topics = ["a"]\ngroup = "g"\nto = "opensearch"\n'
                    'bootstrap_servers = "k1:9092"\n')
    config = config_from_args(parse("--config", str(path), "--group", "other"))
    assert (config.topics, config.group, config.bootstrap_servers) == (("a",), "other",
                                                                       ("k1:9092",))


def test_there_is_no_flag_for_a_password(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        parse("--topic", "T", "--group", "G", "--to", "opensearch", "--password", "x")
    assert "unrecognized arguments" in capsys.readouterr().err


def test_a_bad_option_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["sink", "--topic", "T", "--group", "G", "--to", "elastic"]) == 2
    assert "'to'" in capsys.readouterr().err
