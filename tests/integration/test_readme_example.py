"""The README's first command, as a user runs it: ``tests/broker/kraft.py exec`` starts a
throwaway broker, runs ``examples/quickstart.py`` against it, and stops it. The command is
read from the README itself, so that a change to either is caught here (the venv and pip
install part is the test environment's own)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_example_command() -> list[str]:
    """The README's example command after its ``python3 -m venv ... && pip install ...``
    part, with ``.venv/bin/python`` as this interpreter."""
    lines = [line for line in (ROOT / "README.md").read_text().splitlines()
             if "kraft.py exec" in line and "examples/quickstart.py" in line]
    assert len(lines) == 1, lines
    setup, _, run = lines[0].rpartition("&&")
    assert re.search(r"python3 -m venv \.venv", setup) and "pip install -e ." in setup, setup
    return [sys.executable if word == ".venv/bin/python" else word
            for word in shlex.split(run)]


def test_the_readme_example_command_logs_and_reads_back_its_records() -> None:
    cmd = readme_example_command()
    assert cmd[:2] == [sys.executable, "tests/broker/kraft.py"], cmd
    env = {k: v for k, v in os.environ.items() if k != "KAFKALOG_BOOTSTRAP_SERVERS"}
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
                          check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "OK: all 4 records came back" in done.stdout, done.stdout[-3000:]
    assert re.search(r"# Kafka 4\.3\.1 at 127\.0\.0\.1:\d+", done.stderr), done.stderr[-2000:]
