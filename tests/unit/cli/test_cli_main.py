"""The ``kafkalog`` command as a whole: its parser, its defaults and its exit codes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import kafkalog
from kafkalog.cli.common import EXIT_OK, EXIT_USAGE, PROBLEM_EXIT_CODES, PROBLEM_HINTS
from kafkalog.cli.main import build_parser, main
from kafkalog.client.probe import PROBE_KINDS, WARNING_KINDS


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
        ["tail", "--topic", "t", "-n", "-1"],
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


def test_no_command_prints_the_help_and_exits_0(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == EXIT_OK
    out = capsys.readouterr().out
    assert out.startswith("usage: kafkalog")
    for command in ("tail", "check", "spill-info", "replay", "ship"):
        assert command in out


def test_version_is_the_package_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.strip() == f"kafkalog {kafkalog.__version__}"


def test_python_dash_m_kafkalog_is_the_command() -> None:
    root = Path(__file__).resolve().parents[3]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [
        str(root), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-m", "kafkalog", "--version"], capture_output=True,
                          text=True, timeout=60, env=env, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"kafkalog {kafkalog.__version__}"


def test_every_problem_has_a_hint_and_warnings_are_problems() -> None:
    assert set(PROBLEM_HINTS) == set(PROBE_KINDS)
    assert set(WARNING_KINDS) <= set(PROBE_KINDS)
