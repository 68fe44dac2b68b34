"""``kafkalog ship`` shows files, lines/s, MB/s and lag on a terminal, and nothing of it when
its output is not a terminal."""

from __future__ import annotations

import gc
import io
import os
import re
import select
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from kafkalog.cli import ship
from kafkalog.cli.main import build_parser
from kafkalog.cli.ship import Progress

ROOT = Path(__file__).resolve().parents[3]


def stats(files: int, lines: int, nbytes: int, lag: int) -> dict[str, Any]:
    return {"files": files, "lines": lines, "bytes": nbytes, "lag_bytes": lag}


def test_the_progress_line_gives_rates_since_the_last_one() -> None:
    text, last = Progress(at=10.0).line(stats(3, 5_000, 2_500_000, 1_234_567), now=12.0)
    assert text == "3 file(s)  2,500 lines/s  1.2 MB/s  lag 1,234,567 bytes"
    text, _ = last.line(stats(2, 5_000, 2_500_000, 0), now=13.0)
    assert text == "2 file(s)  0 lines/s  0.0 MB/s  lag 0 bytes", "nothing new: zero rates"


def test_the_progress_line_survives_no_time_passing() -> None:
    text, _ = Progress(at=5.0).line(stats(1, 10, 100, 0), now=5.0)
    assert "lines/s" in text


class QuietAgent:
    """Stands in for the agent: stops at once, with counters to report."""

    def __init__(self, config: Any) -> None:
        self.config = config

    def run(self, stop: threading.Event) -> None:
        pass

    def stats(self) -> dict[str, Any]:
        return {**stats(1, 7, 70, 0), "events": 7}


@pytest.fixture
def signals_kept() -> Iterator[None]:
    kept = {n: signal.getsignal(n) for n in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)}
    yield
    for number, handler in kept.items():
        signal.signal(number, handler)
    gc.unfreeze()  # run() freezes what start-up made: here, the test session's objects


@pytest.mark.parametrize("terminal", [False, True])
def test_progress_is_shown_only_on_a_terminal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signals_kept: None,
        terminal: bool) -> None:
    shown: list[bool] = []
    monkeypatch.setattr(ship, "ShipAgent", QuietAgent)
    monkeypatch.setattr(ship, "_show_progress", lambda *_: shown.append(True))
    out = io.StringIO()
    console = Console(file=out, force_terminal=terminal, width=200, no_color=True,
                      highlight=False)
    args = build_parser().parse_args(["ship", "--path", str(tmp_path / "*.log"), "--topic",
                                      "t", "--state-dir", str(tmp_path / "state")])
    assert ship.run(args, console) == 0
    assert shown == ([True] if terminal else [])
    assert "7 event(s) from 7 line(s) shipped" in out.getvalue()


def _read_until(fd: int, needle: bytes, timeout_s: float) -> bytes:
    seen = b""
    deadline = time.monotonic() + timeout_s
    while needle not in seen:
        left = deadline - time.monotonic()
        assert left > 0, f"no {needle!r} in {seen[-2000:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            try:
                chunk = os.read(fd, 65536)
            except OSError:  # EIO: the other end closed
                chunk = b""
            assert chunk, f"closed before {needle!r}: {seen[-2000:]!r}"
            seen += re.sub(rb"\x1b\[[0-9;?]*[A-Za-z]", b"", chunk)  # colours, cursor
    return seen


@pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs a pseudo-terminal")
def test_the_command_on_a_terminal_prints_progress(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"one line\n" * 10)
    config = tmp_path / "ship.toml"
    config.write_text(f'state_dir = "{tmp_path / "state"}"\nbootstrap_servers = "127.0.0.1:9"\n'
                      'close_timeout_ms = 200\n'
                      f'[[input]]\npaths = ["{logs}/*.log"]\ntopic = "t"\n')
    master, slave = os.openpty()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm", "COLUMNS": "160"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([sys.executable, "-m", "kafkalog.cli", "ship", "--config",
                             str(config)], stdin=subprocess.DEVNULL, stdout=slave,
                            stderr=slave, env=env)
    os.close(slave)
    try:
        seen = _read_until(master, b"lines/s", timeout_s=60)
        assert b"1 file(s)" in seen
        assert b" MB/s  lag " in seen
        proc.send_signal(signal.SIGTERM)
        seen += _read_until(master, b"stopped", timeout_s=60)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
    assert b"10 line(s) shipped" in seen
