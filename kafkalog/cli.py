"""The ``kafkalog`` command: inspect a spill directory and drain it into Kafka.

``kafkalog spill-info DIR`` lists segments, records, bytes, time range and corruption;
``kafkalog replay --spill-dir DIR --bootstrap-servers ...`` sends the spilled records of dead
writers (never those of a live process) and deletes each segment once Kafka acknowledged it.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from kafkalog.config import HandlerConfig
from kafkalog.errors import ConfigError
from kafkalog.spill import (
    LOCK_SUFFIX,
    SpillStore,
    decode_header,
    iter_segments,
    read_segment,
)
from kafkalog.transport import KafkaPythonTransport

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_PARTIAL = 4


def _writer_alive(directory: Path, writer: str) -> bool:
    """True if the writer's lock is held by a live process."""
    path = directory / f"{writer}{LOCK_SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def _timestamp(value: bytes) -> str | None:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    stamp = decoded.get("@timestamp") if isinstance(decoded, dict) else None
    return stamp if isinstance(stamp, str) else None


def spill_info(directory: Path) -> list[dict[str, Any]]:
    """One dict per segment file in ``directory``."""
    rows: list[dict[str, Any]] = []
    for path, kind in iter_segments(directory):
        writer = path.name.split("-", 1)[0]
        row: dict[str, Any] = {"file": path.name, "kind": kind, "writer": writer}
        try:
            header, records, scan = read_segment(path)
            row["bytes"] = path.stat().st_size
        except OSError as exc:
            row.update(error=str(exc), records=0, bytes=0)
            rows.append(row)
            continue
        row.update(
            topic=header.topic if header else None,
            records=len(records),
            corrupt_regions=scan.corrupt if header else 1,
            torn_tail_bytes=scan.torn_tail_bytes,
            oldest=_timestamp(records[0][0]) if records else None,
            newest=_timestamp(records[-1][0]) if records else None,
            writer_alive=_writer_alive(directory, writer),
        )
        if header is None:
            row["error"] = "bad or missing segment header"
        rows.append(row)
    return rows


def _spill_dir_or_none(path: str, console: Console) -> Path | None:
    directory = Path(path)
    if directory.is_dir():
        return directory
    console.print(f"[red]no such spill directory: {directory}[/red]")
    return None


def _cmd_spill_info(args: argparse.Namespace, console: Console) -> int:
    directory = _spill_dir_or_none(args.directory, console)
    if directory is None:
        return EXIT_USAGE
    rows = spill_info(directory)
    if args.json:
        sys.stdout.write(orjson.dumps(rows, option=orjson.OPT_INDENT_2).decode() + "\n")
        return EXIT_OK
    table = Table(title=f"spill directory {directory}")
    for column in ("file", "kind", "topic", "records", "bytes", "oldest", "newest", "corrupt",
                   "writer"):
        table.add_column(column)
    for row in rows:
        table.add_row(
            row["file"],
            row["kind"],
            str(row.get("topic")),
            str(row.get("records", 0)),
            str(row.get("bytes", 0)),
            str(row.get("oldest") or "-"),
            str(row.get("newest") or "-"),
            str(row.get("corrupt_regions", 0)) + (f" +{row['torn_tail_bytes']}B torn"
                                                   if row.get("torn_tail_bytes") else ""),
            "alive" if row.get("writer_alive") else "dead",
        )
    console.print(table)
    total = sum(int(r.get("records", 0)) for r in rows)
    size = sum(int(r.get("bytes", 0)) for r in rows)
    console.print(f"{len(rows)} segment(s), {total} record(s), {size} bytes")
    return EXIT_OK


def _topics_in(directory: Path) -> list[str]:
    topics: set[str] = set()
    for path, kind in iter_segments(directory):
        if kind != "spill":
            continue
        try:
            with open(path, "rb") as f:
                header = decode_header(f.read(70000))
        except OSError:
            continue
        if header is not None:
            topics.add(header.topic)
    return sorted(topics)


def _cmd_replay(args: argparse.Namespace, console: Console) -> int:
    directory = _spill_dir_or_none(args.spill_dir, console)
    if directory is None:
        return EXIT_USAGE
    topics = _topics_in(directory)
    if not topics:
        console.print("nothing to replay")
        return EXIT_OK
    timeout_s = args.timeout
    sent = 0
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records, {task.fields[bytes]} bytes, {task.fields[rate]} records/s"),
        TimeElapsedColumn(),
        console=console,
        transient=not console.is_terminal,
    ) as progress:
        for source_topic in topics:
            store = SpillStore(directory, source_topic, fsync="never")
            if store.adopt_orphans() == 0:
                console.print(f"{source_topic}: no segments of dead writers (live are skipped)")
                continue
            target = args.topic or source_topic
            try:
                config = HandlerConfig.from_options(
                    {"topic": target, "bootstrap_servers": args.bootstrap_servers,
                     "request_timeout_ms": int(timeout_s * 1000)}
                )
            except ConfigError as exc:
                console.print(f"[red]{exc}[/red]")
                return EXIT_USAGE
            transport = KafkaPythonTransport(config)
            total = store.pending_records()
            task = progress.add_task(f"{source_topic} -> {target}", total=total, bytes=0,
                                     rate="0")
            try:
                code = _drain(
                    store, transport, progress, task, timeout_s=timeout_s, console=console
                )
            finally:
                transport.close(5.0)
                store.close()
            sent += int(progress.tasks[task].completed)
            if code != EXIT_OK:
                console.print(
                    f"[red]stopped: {store.pending_records()} record(s) left on disk in "
                    f"{directory}; nothing was lost. Run replay again when Kafka is reachable."
                    "[/red]"
                )
                return code
    console.print(f"replayed {sent} record(s)")
    return EXIT_OK


def _drain(
    store: SpillStore,
    transport: KafkaPythonTransport,
    progress: Progress,
    task: Any,
    *,
    timeout_s: float,
    console: Console,
) -> int:
    """Replay ``store`` to the end, or to the first batch Kafka does not take."""
    nbytes = 0
    started = time.monotonic()
    while True:
        batch = store.read_batch(5000, 8 * 1024 * 1024)
        if batch is None:
            return EXIT_OK
        results = transport.send(batch.records, timeout_s)
        done = 0
        refused = []
        for record, err in zip(batch.records, results, strict=True):
            if err is not None and err.retriable:
                break
            if err is not None:
                refused.append(record)
            done += 1
        if refused:  # never dropped: kept in a dead-letter segment beside the spill
            store.append(refused, dead_letter=True)
            console.print(f"[yellow]Kafka refused {len(refused)} record(s); kept them in a "
                          "dead-letter segment[/yellow]")
        store.ack(batch, done)
        nbytes += sum(len(v) for v, _ in batch.records[:done])
        elapsed = max(time.monotonic() - started, 1e-9)
        progress.update(task, advance=done, bytes=nbytes,
                        rate=f"{progress.tasks[task].completed / elapsed:,.0f}")
        if done < len(batch.records):
            err = results[done]
            where = ",".join(transport.producer_settings(0)["bootstrap_servers"])
            console.print(f"[red]cannot deliver to Kafka at {where}: {err}[/red]")
            return EXIT_UNREACHABLE if store.replayed == 0 else EXIT_PARTIAL


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kafkalog`` command."""
    parser = argparse.ArgumentParser(
        prog="kafkalog", description="Inspect kafkalog spill directories and drain them into Kafka."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    info = sub.add_parser("spill-info", help="show the segments of a spill directory")
    info.add_argument("directory")
    info.add_argument("--json", action="store_true", help="print JSON instead of a table")
    replay = sub.add_parser("replay", help="send the records of a spill directory to Kafka")
    replay.add_argument("--spill-dir", required=True)
    replay.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKALOG_BOOTSTRAP_SERVERS", "localhost:9092"),
    )
    replay.add_argument("--topic", help="send to this topic instead of each segment's own")
    replay.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for Kafka per batch (default 30)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kafkalog`` console script."""
    args = build_parser().parse_args(argv)
    console = Console(stderr=args.command == "replay")
    try:
        if args.command == "spill-info":
            return _cmd_spill_info(args, console)
        return _cmd_replay(args, console)
    except KeyboardInterrupt:
        console.print("interrupted; what was not acknowledged stays on disk")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
