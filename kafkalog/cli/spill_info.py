"""``kafkalog spill-info DIR``: print the segments of a spill directory as a table or as JSON.

The directory is read by :mod:`kafkalog.spill.inspect`; this module only prints what it found.
On a terminal the table fits its width; piped or redirected, it is never cut or wrapped.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.table import Table

from kafkalog.cli.common import EXIT_OK, EXIT_USAGE, spill_dir_or_none
from kafkalog.spill.inspect import SegmentSummary, segment_summaries


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``spill-info`` subcommand and its options to ``sub``."""
    info = sub.add_parser("spill-info", help="show the segments of a spill directory")
    info.add_argument("directory")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")


def as_json_row(summary: SegmentSummary) -> dict[str, Any]:
    """A segment as ``spill-info --json`` prints it: a segment that could not be read has only
    its file, kind, writer, error and zero records and bytes; ``error`` is there only if set."""
    row: dict[str, Any] = {"file": summary.file, "kind": summary.kind, "writer": summary.writer}
    if not summary.readable:
        row.update(error=summary.error, records=0, bytes=0)
        return row
    row.update(
        bytes=summary.size_bytes,
        topic=summary.topic,
        records=summary.records,
        corrupt_regions=summary.corrupt_regions,
        torn_tail_bytes=summary.torn_tail_bytes,
        oldest=summary.oldest,
        newest=summary.newest,
        writer_alive=summary.writer_alive,
    )
    if summary.error is not None:
        row["error"] = summary.error
    return row


def spill_info(directory: Path) -> list[dict[str, Any]]:
    """One dict per segment file in ``directory``, as ``spill-info --json`` prints them."""
    return [as_json_row(summary) for summary in segment_summaries(directory)]


# The width of a console that is not a terminal: wider than any table, so nothing is cut (a
# table is only as wide as its cells; rich would otherwise assume 80 columns).
_UNCUT_WIDTH = 1_000_000


def table_console() -> Console:
    """A console on stdout that never cuts the table: the terminal's width on a terminal,
    unbounded when the output goes to a pipe or a file."""
    console = Console(highlight=False)
    if console.is_terminal:
        return console
    return Console(highlight=False, width=_UNCUT_WIDTH, soft_wrap=True)


def run(args: argparse.Namespace, err: Console) -> int:
    """Run ``kafkalog spill-info``; the table or the JSON goes to stdout, errors to ``err``."""
    directory = spill_dir_or_none(args.directory, err)
    if directory is None:
        return EXIT_USAGE
    summaries = segment_summaries(directory)
    if args.json:
        rows = [as_json_row(summary) for summary in summaries]
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    console = table_console()
    table = Table(title=f"spill directory {directory}")
    for column in ("file", "kind", "topic", "records", "bytes", "oldest", "newest", "corrupt",
                   "writer"):
        table.add_column(column)
    for summary in summaries:
        torn = summary.torn_tail_bytes
        table.add_row(
            summary.file,
            summary.kind,
            str(summary.topic),
            str(summary.records),
            str(summary.size_bytes),
            summary.oldest or "-",
            summary.newest or "-",
            str(summary.corrupt_regions) + (f" +{torn}B torn" if torn else ""),
            "alive" if summary.writer_alive else "dead",
        )
    console.print(table)
    total = sum(summary.records for summary in summaries)
    size = sum(summary.size_bytes for summary in summaries)
    console.print(f"{len(summaries)} segment(s), {total} record(s), {size} bytes")
    return EXIT_OK
