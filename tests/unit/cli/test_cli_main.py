"""The ``kafkalog`` command as a whole: its parser, its defaults and its exit codes."""

from __future__ import annotations

import pytest

from kafkalog.cli.common import EXIT_USAGE, PROBLEM_EXIT_CODES
from kafkalog.cli.main import build_parser
from kafkalog.client.probe import PROBE_KINDS


def test_bootstrap_servers_default_comes_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KAFKALOG_BOOTSTRAP_SERVERS", "k1:9092")
    assert build_parser().parse_args(["check", "--topic", "t"]).bootstrap_servers == "k1:9092"

@pytest.mark.parametrize(
    "argv",
    [
        ["tail"],  # no topic
        ["tail", "--topic", "t", "--from-beginning", "--since", "1h"],  # two starts
        ["tail", "--topic", "t", "--dedupe-window", "0"],
        ["tail", "--topic", "t", "--timeout", "0"],
        ["check"],
    ],
)
def test_bad_arguments_are_usage_errors(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        build_parser().parse_args(argv)
    assert exc.value.code == EXIT_USAGE

def test_every_probe_problem_has_its_own_exit_code() -> None:
    assert set(PROBLEM_EXIT_CODES) == set(PROBE_KINDS)
    codes = list(PROBLEM_EXIT_CODES.values())
    assert len(set(codes)) == len(codes)
    assert not {0, 1, 2, 4, 130} & set(codes)
