"""``kafkalog replay`` without a broker: what it leaves alone and never connects for."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import pytest
from spill_segments import dead_writer_segments, log_value

from kafkalog.cli.common import EXIT_OK, EXIT_UNREACHABLE
from kafkalog.cli.main import main
from kafkalog.spill import LOCK_SUFFIX


@pytest.fixture
def spill_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "spill"
    directory.mkdir()
    return directory


def test_replay_of_a_directory_without_spill_segments_sends_nothing(
    spill_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_writer_segments(spill_dir, "app.logs", [], dead_letters=[b"refused"])  # never replayed
    # Port 1 on loopback: if replay tried to connect, it would fail.
    assert main(["replay", "--spill-dir", str(spill_dir),
                 "--bootstrap-servers", "127.0.0.1:1"]) == EXIT_OK
    assert "nothing to replay" in capsys.readouterr().err


def test_replay_leaves_the_segments_of_a_live_writer_alone(
    spill_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [live] = dead_writer_segments(spill_dir, "app.logs", [log_value(1)])
    fd = os.open(spill_dir / f"{live.name.split('-')[0]}{LOCK_SUFFIX}",
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        before = live.read_bytes()
        assert main(["replay", "--spill-dir", str(spill_dir),
                     "--bootstrap-servers", "127.0.0.1:1"]) == EXIT_OK
    finally:
        os.close(fd)
    assert "app.logs: no segments of dead writers (live are skipped)" in capsys.readouterr().err
    assert live.read_bytes() == before


def test_replay_that_cannot_deliver_counts_what_is_left_and_exits_non_zero(
    spill_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    segments = dead_writer_segments(spill_dir, "app.logs", [log_value(i) for i in range(5)])
    before = [path.read_bytes() for path in segments]
    # Port 1 on loopback refuses: nothing can be delivered.
    code = main(["replay", "--spill-dir", str(spill_dir), "--bootstrap-servers", "127.0.0.1:1",
                 "--timeout", "1"])
    assert code == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert "stopped: 5 record(s) of 'app.logs' left on disk" in err
    assert "replayed" not in err
    assert [path.read_bytes() for path in segments] == before  # all still there
