"""The documentation against the code: every ``kafkalog`` command the pages show parses with
the real parser, every command's ``--help`` runs, and every option name the pages mention
(handler options in tables, code and inline code; command-line flags) exists.

The commands in code blocks are parsed whole (values included: a bad ``--lines`` or a
``--transport`` that is not a choice fails); inline ones often hold placeholders, so only their
command and flag names are checked. ``test_cli_broker.py`` runs the block commands against a
real broker.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import re
import tempfile
from pathlib import Path

import kafka
import pytest
from docs_commands import (
    PAGES,
    REPO_ROOT,
    ShownCommand,
    block_commands,
    inline_code,
    inline_commands,
    python_blocks,
    tables,
)

from kafkalog import HandlerConfig, KafkaHandler, PipelineConfig
from kafkalog.cli.common import PROBLEM_EXIT_CODES
from kafkalog.cli.main import build_parser, main
from kafkalog.sink import SinkConfig
from kafkalog.testing import MemoryTransport

HANDLER_OPTIONS = frozenset(f.name for f in dataclasses.fields(HandlerConfig))
PIPELINE_OPTIONS = frozenset(f.name for f in dataclasses.fields(PipelineConfig))
# Keyword arguments of KafkaHandler and Pipeline that are not options.
HANDLER_ARGUMENTS = frozenset({"level", "config", "transport_factory"})
PIPELINE_ARGUMENTS = frozenset({"config", "transport_factory", "on_outcome", "on_fork"})
# dictConfig keys of a handler that logging itself takes.
DICTCONFIG_KEYS = frozenset({"class", "()", "level", "formatter", "filters", "."})
# The pages about the command, where every flag in inline code is a kafkalog flag.
CLI_PAGES = ("docs/cli.md", "docs/ship.md")
_PLACEHOLDER = re.compile(r"^([A-Z][A-Z_]*|<[^>]+>|\.\.\.)$")
_FLAG = re.compile(r"(?<![\w/.-])(--?[a-zA-Z][a-zA-Z0-9-]*)")


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    [action] = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)


def _flags(parser: argparse.ArgumentParser) -> set[str]:
    return set(parser._option_string_actions)


BLOCK_COMMANDS = block_commands()
INLINE_COMMANDS = inline_commands()


def _ids(commands: list[ShownCommand]) -> list[str]:
    return [f"{c.where} {' '.join(c.argv[:2])}" for c in commands]


# -- the commands ---------------------------------------------------------------------------------

def test_the_docs_show_every_command() -> None:
    # The extraction works: each command appears in a code block somewhere.
    shown = {command.argv[0] for command in BLOCK_COMMANDS}
    assert shown == set(_subparsers()), "a command without an example, or an unknown one"
    assert len(BLOCK_COMMANDS) >= 10


@pytest.mark.parametrize("command", BLOCK_COMMANDS, ids=_ids(BLOCK_COMMANDS))
def test_each_command_in_a_code_block_parses(command: ShownCommand) -> None:
    try:
        build_parser().parse_args(list(command.argv))
    except SystemExit as exc:  # argparse printed why on stderr
        pytest.fail(f"{command.where}: `kafkalog {' '.join(command.argv)}` does not parse "
                    f"(exit {exc.code})")


@pytest.mark.parametrize("command", INLINE_COMMANDS, ids=_ids(INLINE_COMMANDS))
def test_each_inline_command_names_a_real_command_and_real_flags(
    command: ShownCommand,
) -> None:
    subparsers = _subparsers()
    head = command.argv[0]
    if _PLACEHOLDER.match(head) or head.startswith("-"):  # `kafkalog COMMAND --help`
        known = _flags(build_parser())
        flags = [t for t in command.argv if t.startswith("-")]
    else:
        assert head in subparsers, f"{command.where}: no command {head!r}"
        known = _flags(subparsers[head])
        flags = [t for t in command.argv[1:] if t.startswith("-") and t != "-"]
    unknown = [flag for flag in flags if flag not in known]
    assert unknown == [], f"{command.where}: `kafkalog {' '.join(command.argv)}`"


@pytest.mark.parametrize("name", sorted(_subparsers()))
def test_each_commands_help_runs(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main([name, "--help"])
    assert exc.value.code == 0
    assert capsys.readouterr().out.startswith(f"usage: kafkalog {name}")


def test_flags_on_the_command_pages_exist() -> None:
    known = set().union(_flags(build_parser()), *map(_flags, _subparsers().values()))
    unknown = []
    for page in CLI_PAGES:
        for line, code in inline_code(REPO_ROOT / page):
            if not code.startswith(("-", "kafkalog ")):  # `python -m kafkalog`: another program
                continue
            unknown += [f"{page}:{line} {flag}" for flag in _FLAG.findall(code)
                        if flag not in known]
    assert unknown == []


# -- handler options ------------------------------------------------------------------------------

def _matches(name: str, options: frozenset[str]) -> bool:
    """``name`` is an option, or a pattern such as ``sasl_*`` that matches at least one."""
    if "*" in name:
        return any(re.fullmatch(re.escape(name).replace(r"\*", ".*"), o) for o in options)
    return name in options


def test_option_tables_list_only_real_options() -> None:
    wrong = []
    for page in PAGES:
        for header, rows in tables(page):
            if header[0].lower() not in ("option", "options"):
                continue
            for row in rows:
                for name in re.findall(r"`([^`]+)`", row[0]):
                    if name.startswith("-"):  # a flag, in the tables of cli.md
                        flag = name.split()[0]
                        ok = any(flag in _flags(p) for p in _subparsers().values())
                    else:
                        ok = _matches(name, HANDLER_OPTIONS)
                    if not ok:
                        wrong.append(f"{page.relative_to(REPO_ROOT)}: {name}")
    assert wrong == []


def _call_name(node: ast.Call) -> str:
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def _handler_options_in(source: str) -> list[tuple[str, frozenset[str], int]]:
    """(name, what it must be among, line) for each option a code example passes."""
    found: list[tuple[str, frozenset[str], int]] = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Dict):
            keys = {k.value: v for k, v in zip(node.keys, node.values, strict=True)
                    if isinstance(k, ast.Constant) and isinstance(k.value, str)}
            cls = keys.get("class")
            if isinstance(cls, ast.Constant) and str(cls.value).endswith("KafkaHandler"):
                found += [(k, HANDLER_OPTIONS | DICTCONFIG_KEYS, node.lineno) for k in keys]
        elif isinstance(node, ast.Call):
            names = [kw.arg for kw in node.keywords if kw.arg]
            if _call_name(node) == "KafkaHandler":
                found += [(n, HANDLER_OPTIONS | HANDLER_ARGUMENTS, node.lineno) for n in names]
            elif _call_name(node) == "Pipeline":
                found += [(n, PIPELINE_OPTIONS | PIPELINE_ARGUMENTS, node.lineno) for n in names]
    return found


def test_code_examples_pass_only_real_options() -> None:
    wrong, checked = [], 0
    for where, source in python_blocks():
        try:
            options = _handler_options_in(source)
        except SyntaxError:
            continue  # a fragment, not a program
        checked += len(options)
        wrong += [f"{where} (+{line - 1}): {name}" for name, allowed, line in options
                  if name not in allowed]
    assert wrong == []
    assert checked >= 20  # the examples were found and read


def _other_snake_case_names() -> frozenset[str]:
    """Names the pages may mention that look like options but are something else: the
    counters of ``stats()``, the settings of kafka-python's clients, and the sink's options
    (docs/sink.md)."""
    with tempfile.TemporaryDirectory() as spill_dir:  # with a spill, for its counters too
        handler = KafkaHandler(topic="t", spill_dir=spill_dir,
                               transport_factory=MemoryTransport.factory(MemoryTransport()))
        try:
            counters = set(handler.stats())
        finally:
            handler.close()
    clients = set(kafka.KafkaProducer.DEFAULT_CONFIG) | set(kafka.KafkaConsumer.DEFAULT_CONFIG)
    sink = {f.name for f in dataclasses.fields(SinkConfig)}
    return frozenset(counters | clients | sink)


# Snake-case names in the docs that are close to an option's name and are not options; each
# is something else, said here.
NOT_OPTIONS = {
    "client_ip": "a field of nginx's access log (ship.md)",
    "max_requests": "a gunicorn setting (guides/gunicorn.md)",
}


def test_inline_names_close_to_an_option_are_options() -> None:
    """A renamed option left behind in the text (`lingr_ms` for `linger_ms`, say) fails."""
    others = _other_snake_case_names() | set(NOT_OPTIONS)
    suspicious = []
    for page in PAGES:
        for line, code in inline_code(page):
            match = re.fullmatch(r"([a-z][a-z0-9]*(?:_[a-z0-9]+)+)(?:=.*)?", code)
            if not match or match[1] in HANDLER_OPTIONS or match[1] in others:
                continue
            close = difflib.get_close_matches(match[1], HANDLER_OPTIONS, n=1, cutoff=0.8)
            if close:
                suspicious.append(f"{page.relative_to(REPO_ROOT)}:{line} `{match[1]}` "
                                  f"(did you mean `{close[0]}`?)")
    assert suspicious == []


def test_the_near_miss_check_catches_a_renamed_option(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text("Set `lingr_ms` and `linger_ms`.\n", encoding="utf-8")
    names = [code for _, code in inline_code(page)]
    close = [difflib.get_close_matches(n, HANDLER_OPTIONS, n=1, cutoff=0.8) for n in names]
    assert close == [["linger_ms"], ["linger_ms"]]
    assert [n in HANDLER_OPTIONS for n in names] == [False, True]


def test_checks_exit_status_table_is_the_codes_the_command_uses() -> None:
    [(_, rows)] = [t for t in tables(REPO_ROOT / "docs" / "cli.md")
                   if [c.lower() for c in t[0]] == ["status", "kind", "meaning"]]
    documented = {row[1].strip("`"): int(row[0]) for row in rows if row[1]}
    assert documented == dict(PROBLEM_EXIT_CODES)
