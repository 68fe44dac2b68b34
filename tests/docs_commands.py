"""What the documentation shows: the ``kafkalog`` commands in its code blocks and inline code,
for the tests that run them (``tests/unit/cli/test_cli_docs.py`` parses each one and checks
every option name; ``tests/integration/test_cli_broker.py`` runs them against a broker).

The pages are README.md and every page under docs/. A command is a line of a shell code block
(```` ```sh ````, ```` ```bash ````, or one without a language) that starts with ``kafkalog``,
or a line of a ```` ```console ```` block that starts with ``$ kafkalog`` (the other lines of a
console block are output). Lines ending in a backslash continue on the next; a ``# comment``
and whatever follows a pipe are not part of the command. kafkalog's own messages, which start
with ``kafkalog option`` (a ``ConfigError``) or ``kafkalog:`` (a warning), are not commands.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
PAGES: tuple[Path, ...] = (REPO_ROOT / "README.md", *sorted((REPO_ROOT / "docs").rglob("*.md")))

_FENCE = re.compile(r"^```(?P<lang>[\w-]*)[^\n]*\n(?P<body>.*?)^```", re.M | re.S)
_SHELL_LANGS = ("", "sh", "bash", "shell", "console")
_INLINE = re.compile(r"(?<!`)`(?P<code>[^`\n]+)`(?!`)")
_MESSAGES = ("kafkalog option ", "kafkalog:")


def _is_command(line: str) -> bool:
    return line.split(" ", 1)[0] == "kafkalog" and not line.startswith(_MESSAGES)


@dataclass(frozen=True)
class ShownCommand:
    """A ``kafkalog`` command as a page shows it."""

    page: str  # relative to the repository root
    line: int
    argv: tuple[str, ...]  # after "kafkalog"

    @property
    def where(self) -> str:
        return f"{self.page}:{self.line}"


def _relative(page: Path) -> str:
    return page.relative_to(REPO_ROOT).as_posix()


def _argv(command: str) -> tuple[str, ...]:
    tokens = shlex.split(command, comments=True)
    if "|" in tokens:  # `kafkalog tail ... | jq ...`: only the kafkalog part
        tokens = tokens[: tokens.index("|")]
    assert tokens and tokens[0] == "kafkalog", command
    return tuple(tokens[1:])


def block_commands(pages: tuple[Path, ...] = PAGES) -> list[ShownCommand]:
    """Every ``kafkalog`` command in the shell and console code blocks of ``pages``."""
    found: list[ShownCommand] = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for block in _FENCE.finditer(text):
            lang = block["lang"].lower()
            if lang not in _SHELL_LANGS:
                continue
            first_line = text.count("\n", 0, block.start("body")) + 1
            lines = block["body"].splitlines()
            index = 0
            while index < len(lines):
                start = index
                line = lines[index].strip()
                while line.endswith("\\") and index + 1 < len(lines):
                    index += 1
                    line = line[:-1] + " " + lines[index].strip()
                index += 1
                if lang == "console":
                    if not line.startswith("$ "):
                        continue
                    line = line[2:]
                elif line.startswith("$ "):
                    line = line[2:]
                if _is_command(line):
                    found.append(ShownCommand(_relative(page), first_line + start, _argv(line)))
    return found


def _outside_blocks(text: str) -> str:
    """``text`` with its fenced code blocks blanked (line numbers kept)."""
    return _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def inline_commands(pages: tuple[Path, ...] = PAGES) -> list[ShownCommand]:
    """Every inline code span of ``pages`` that is a ``kafkalog`` command. These often hold
    placeholders (``DIR``, ``...``), so only their command and option names are checked."""
    found: list[ShownCommand] = []
    for page in pages:
        text = _outside_blocks(page.read_text(encoding="utf-8"))
        for span in _INLINE.finditer(text):
            code = span["code"].strip()
            if not _is_command(code) or " " not in code:
                continue
            line = text.count("\n", 0, span.start()) + 1
            found.append(ShownCommand(_relative(page), line, tuple(code.split()[1:])))
    return found


def inline_code(page: Path) -> list[tuple[int, str]]:
    """(line, code) of every inline code span of ``page`` outside its code blocks."""
    text = _outside_blocks(page.read_text(encoding="utf-8"))
    return [(text.count("\n", 0, m.start()) + 1, m["code"]) for m in _INLINE.finditer(text)]


def python_blocks(pages: tuple[Path, ...] = PAGES) -> list[tuple[str, str]]:
    """(where, source) of every ```` ```python ```` block of ``pages``."""
    found: list[tuple[str, str]] = []
    for page in pages:
        text = page.read_text(encoding="utf-8")
        for block in _FENCE.finditer(text):
            if block["lang"].lower() in ("python", "py"):
                line = text.count("\n", 0, block.start("body")) + 1
                found.append((f"{_relative(page)}:{line}", block["body"]))
    return found


def tables(page: Path) -> list[tuple[list[str], list[list[str]]]]:
    """(header cells, rows of cells) of every Markdown table of ``page``."""
    found: list[tuple[list[str], list[list[str]]]] = []
    current: list[list[str]] = []
    for line in [*_outside_blocks(page.read_text(encoding="utf-8")).splitlines(), ""]:
        if line.startswith("|"):
            cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
            if not all(set(cell) <= set("-: ") for cell in cells):  # not the |---| line
                current.append(cells)
        elif current:
            found.append((current[0], current[1:]))
            current = []
    return found
