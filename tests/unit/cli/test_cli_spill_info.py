"""``kafkalog spill-info``: the segments of a spill directory as JSON rows or a table."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

import orjson
import pytest
from spill_segments import dead_writer_segments, log_value

from kafkalog.cli.common import EXIT_OK, EXIT_USAGE
from kafkalog.cli.main import main
from kafkalog.cli.spill_info import spill_info
from kafkalog.spill import LOCK_SUFFIX, SEGMENT_SUFFIX

WRITER = "0123456789abcdef"


@pytest.fixture(autouse=True)
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "300")  # rich would wrap long paths at 80 columns


@pytest.fixture
def spill_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "spill"
    directory.mkdir()
    return directory


def test_json_rows_keep_their_keys_for_good_bad_and_unreadable_segments(
    spill_dir: Path, tmp_path: Path
) -> None:
    [good] = dead_writer_segments(spill_dir, "app.logs", [log_value(1), log_value(2)])
    bad_header = spill_dir / f"{WRITER}-0000000001{SEGMENT_SUFFIX}"
    bad_header.write_bytes(b"not a segment header")
    [real] = dead_writer_segments(tmp_path / "elsewhere", "app.logs", [log_value(3)])
    unreadable = spill_dir / f"{WRITER}-0000000002{SEGMENT_SUFFIX}"
    unreadable.symlink_to(real)  # never followed

    rows = {row["file"]: row for row in spill_info(spill_dir)}

    assert list(rows[good.name].items()) == [
        ("file", good.name), ("kind", "spill"), ("writer", good.name.split("-")[0]),
        ("bytes", good.stat().st_size), ("topic", "app.logs"), ("records", 2),
        ("corrupt_regions", 0), ("torn_tail_bytes", 0),
        ("oldest", "2026-03-01T12:00:01.000000Z"), ("newest", "2026-03-01T12:00:02.000000Z"),
        ("writer_alive", False),
    ]
    assert list(rows[bad_header.name].items()) == [
        ("file", bad_header.name), ("kind", "spill"), ("writer", WRITER), ("bytes", 20),
        ("topic", None), ("records", 0), ("corrupt_regions", 1), ("torn_tail_bytes", 0),
        ("oldest", None), ("newest", None), ("writer_alive", False),
        ("error", "bad or missing segment header"),
    ]
    row = rows[unreadable.name]
    assert list(row) == ["file", "kind", "writer", "error", "records", "bytes"]
    assert (row["kind"], row["writer"], row["records"], row["bytes"]) == ("spill", WRITER, 0, 0)
    assert row["error"]


def test_json_output_is_the_rows(spill_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    dead_writer_segments(spill_dir, "app.logs", [log_value(1)], dead_letters=[log_value(2)])
    assert main(["spill-info", str(spill_dir), "--json"]) == EXIT_OK
    assert orjson.loads(capsys.readouterr().out) == spill_info(spill_dir)


def test_table_shows_each_segment_its_writer_and_the_totals(
    spill_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    [dead] = dead_writer_segments(spill_dir, "app.logs", [log_value(1), log_value(2)])
    [live] = dead_writer_segments(spill_dir, "app.logs", [log_value(3)])
    fd = os.open(spill_dir / f"{live.name.split('-')[0]}{LOCK_SUFFIX}",
                 os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # its writer still runs
        assert main(["spill-info", str(spill_dir)]) == EXIT_OK
    finally:
        os.close(fd)
    out = capsys.readouterr().out
    lines = {line.split()[1]: line for line in out.splitlines() if SEGMENT_SUFFIX in line}
    assert lines[dead.name].rstrip(" │").endswith("dead")
    assert lines[live.name].rstrip(" │").endswith("alive")
    size = dead.stat().st_size + live.stat().st_size
    assert f"2 segment(s), 3 record(s), {size} bytes" in out


@pytest.mark.parametrize("command", ["spill-info", "replay"])
def test_a_missing_spill_directory_is_a_usage_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "missing"
    argv = ["spill-info", str(missing)] if command == "spill-info" else [
        "replay", "--spill-dir", str(missing), "--bootstrap-servers", "127.0.0.1:1"]
    assert main(argv) == EXIT_USAGE
    captured = capsys.readouterr()
    assert f"no such spill directory: {missing}" in captured.out + captured.err


def test_piped_table_is_never_cut(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")  # what a pipe gets without a terminal to ask
    directory = tmp_path / ("spill-" + "d" * 60)
    topic = "app.logs." + "t" * 60
    [segment] = dead_writer_segments(directory, topic, [log_value(1)])
    assert main(["spill-info", str(directory)]) == EXIT_OK
    out = capsys.readouterr().out  # captured: not a terminal
    [line] = [line for line in out.splitlines() if segment.name in line]
    cells = [cell.strip() for cell in line.strip("│ ").split("│")]
    assert cells[:4] == [segment.name, "spill", topic, "1"]
    assert cells[-1] == "dead"
    assert "…" not in out
    assert str(directory) in out
