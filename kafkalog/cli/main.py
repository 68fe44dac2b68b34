"""The ``kafkalog`` command: read log topics, check a cluster, inspect and drain spill dirs.

``kafkalog tail --topic T`` prints the records of a topic (colour by level on a terminal, JSON
lines otherwise), optionally following it, filtering and committing a consumer group's offsets;
``kafkalog check --topic T`` tests DNS, TCP, TLS/SASL, the topic and a round trip, with a
distinct exit code per failure;
``kafkalog spill-info DIR`` lists segments, records, bytes, time range and corruption;
``kafkalog replay --spill-dir DIR --bootstrap-servers ...`` sends the spilled records of dead
writers (never those of a live process) and deletes each segment once Kafka acknowledged it.

No Kafka client is imported here: the consumer and the probes live in :mod:`kafkalog.client`.
"""

from __future__ import annotations

import argparse
import collections
import datetime as dt
import fcntl
import logging
import os
import re
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from types import FrameType
from typing import IO, Any

import orjson
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.syntax import Syntax
from rich.table import Table
from rich.text import Text

from kafkalog.client.probe import ClusterProbe, ProbeError, connection_problem
from kafkalog.client.reader import ConsumedRecord, StartAt, TopicMissingError, TopicReader
from kafkalog.config import HandlerConfig
from kafkalog.errors import ConfigError
from kafkalog.spill import (
    LOCK_SUFFIX,
    SpillStore,
    decode_header,
    iter_segments,
    read_segment,
)
from kafkalog.transports.kafka_python import KafkaPythonTransport, security_settings

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3  # no answer in time (check, tail), or Kafka down (replay)
EXIT_PARTIAL = 4
EXIT_DNS = 5
EXIT_REFUSED = 6
EXIT_TLS = 7
EXIT_SASL = 8
EXIT_NOT_KAFKA = 9
EXIT_TOPIC_MISSING = 10
EXIT_AUTO_CREATE_DISABLED = 11
EXIT_TOPIC_UNHEALTHY = 12
EXIT_ROUND_TRIP = 13
EXIT_INTERRUPTED = 130

#: ``kafkalog check`` (and ``tail``) exit codes by kind of problem (transport.PROBE_KINDS).
PROBLEM_EXIT_CODES: Mapping[str, int] = {
    "dns": EXIT_DNS,
    "refused": EXIT_REFUSED,
    "unreachable": EXIT_UNREACHABLE,
    "tls": EXIT_TLS,
    "sasl": EXIT_SASL,
    "kafka": EXIT_NOT_KAFKA,
    "topic_missing": EXIT_TOPIC_MISSING,
    "auto_create_disabled": EXIT_AUTO_CREATE_DISABLED,
    "topic_unhealthy": EXIT_TOPIC_UNHEALTHY,
    "round_trip": EXIT_ROUND_TRIP,
}
DEFAULT_BOOTSTRAP = "localhost:9092"


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
                     "request_timeout_ms": int(timeout_s * 1000), **security_options(args)}
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


# -- tail ------------------------------------------------------------------------------------------

_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATIONS = re.compile(r"(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+")
_UNIT_S = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}


def parse_since(text: str, now: float | None = None) -> float:
    """``--since``: a duration back from ``now`` (``90s``, ``10m``, ``1h30m``, ``2d``) or an
    ISO 8601 time (``2026-03-01T12:00:00Z``; no zone means UTC). Returns epoch seconds."""
    value = text.strip()
    compact = value.replace(" ", "").lower()
    if _DURATIONS.fullmatch(compact):
        seconds = sum(float(n) * _UNIT_S[u] for n, u in _DURATION.findall(compact))
        return (time.time() if now is None else now) - seconds
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(
            f"not a duration (10m, 1h30m, 2d) or an ISO 8601 time: {text!r}"
        ) from None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.timezone.utc)
    return stamp.timestamp()


def level_number(name: str) -> int | None:
    """The numeric level of a level name (any case; ``WARN`` and ``FATAL`` too), or None."""
    number = logging.getLevelName(name.strip().upper())
    return number if isinstance(number, int) else None


# Fields of the default schema that the pretty printer shows in their own place.
_SHOWN_FIELDS = frozenset({
    "@timestamp", "level", "logger", "message", "module", "function", "line", "process",
    "thread_name", "host", "id", "exception", "stack", "truncated",
})
# ECS objects, left out when they are objects (a default-schema static field may share a name).
_ECS_OBJECTS = frozenset({"log", "event", "ecs", "error", "process", "host", "service"})


class LogLine:
    """A consumed record seen as a log record: JSON fields of either schema, or plain text."""

    def __init__(self, record: ConsumedRecord) -> None:
        self.record = record
        self.text = record.value.decode("utf-8", "replace")
        try:
            decoded = orjson.loads(record.value)
        except orjson.JSONDecodeError:
            decoded = None
        self.fields: dict[str, Any] | None = decoded if isinstance(decoded, dict) else None

    def _get(self, *paths: str) -> Any:
        """The first of the dotted ``paths`` present (nested objects or flat dotted keys)."""
        fields = self.fields
        if fields is None:
            return None
        for path in paths:
            if path in fields:
                return fields[path]
            node: Any = fields
            for part in path.split("."):
                node = node.get(part) if isinstance(node, dict) else None
            if node is not None:
                return node
        return None

    @property
    def level(self) -> str | None:
        """Level name, upper case."""
        value = self._get("level", "log.level")
        return str(value).upper() if value is not None else None

    @property
    def logger(self) -> str | None:
        """Logger name."""
        value = self._get("logger", "log.logger")
        return str(value) if value is not None else None

    @property
    def message(self) -> str:
        """The message, or the whole text of a record that is not a JSON object."""
        if self.fields is None:
            return self.text
        value = self._get("message")
        return "" if value is None else str(value)

    @property
    def timestamp(self) -> str:
        """The record's ``@timestamp``, else Kafka's timestamp, as ``YYYY-MM-DD HH:MM:SS.mmm``."""
        value = self._get("@timestamp")
        if isinstance(value, str) and len(value) >= 19:
            return value[:23].replace("T", " ")
        stamp = dt.datetime.fromtimestamp(self.record.timestamp_ms / 1000, dt.timezone.utc)
        return stamp.strftime("%Y-%m-%d %H:%M:%S.%f")[:23]

    @property
    def record_id(self) -> str | None:
        """The record's ``id`` (``event.id`` under ECS)."""
        value = self._get("id", "event.id")
        return str(value) if value is not None else None

    @property
    def traceback(self) -> str | None:
        """The exception's formatted traceback, if the record carries one."""
        value = self._get("exception.stacktrace", "error.stack_trace")
        return str(value) if value else None

    def extras(self) -> dict[str, Any]:
        """Top-level fields the pretty printer does not show in a place of their own."""
        if self.fields is None:
            return {}
        return {
            k: v
            for k, v in self.fields.items()
            if k not in _SHOWN_FIELDS and not (k in _ECS_OBJECTS and isinstance(v, dict))
        }


class RecordFilter:
    """``--level``, ``--logger`` and ``--grep``: which records ``tail`` prints."""

    def __init__(
        self,
        *,
        min_level: int | None = None,
        logger: str | None = None,
        pattern: re.Pattern[str] | None = None,
    ) -> None:
        self.min_level = min_level
        self.logger = logger
        self.pattern = pattern

    def matches(self, line: LogLine) -> bool:
        """True if ``line`` passes every filter given.

        A level filter lets through only records with a level at least that high (records
        with no known level are left out); a logger filter, records of that logger and its
        children (``app`` matches ``app`` and ``app.db``, not ``application``); a pattern,
        records whose message or traceback it finds (the whole text if not JSON).
        """
        if self.min_level is not None:
            number = level_number(line.level) if line.level else None
            if number is None or number < self.min_level:
                return False
        if self.logger is not None:
            name = line.logger
            if name is None or not (name == self.logger or name.startswith(self.logger + ".")):
                return False
        if self.pattern is not None:
            haystack = line.message + "\n" + (line.traceback or "")
            if not self.pattern.search(haystack):
                return False
        return True


class DedupeWindow:
    """Remembers the last ``size`` record ids seen; older ones are forgotten (bounded memory)."""

    def __init__(self, size: int) -> None:
        if size < 1:
            raise ValueError("the dedupe window must hold at least one id")
        self.size = size
        self._seen: collections.OrderedDict[str, None] = collections.OrderedDict()
        self.dropped = 0

    def first_time(self, record_id: str | None) -> bool:
        """True if ``record_id`` was not seen within the window (None: always True)."""
        if record_id is None:
            return True
        if record_id in self._seen:
            self._seen.move_to_end(record_id)
            self.dropped += 1
            return False
        self._seen[record_id] = None
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


LEVEL_STYLES: Mapping[str, str] = {
    "DEBUG": "dim",
    "INFO": "green",
    "WARNING": "yellow",
    "WARN": "yellow",
    "ERROR": "bold red",
    "CRITICAL": "bold white on red",
    "FATAL": "bold white on red",
}


def render(line: LogLine) -> Iterator[Text | Syntax]:
    """The rich renderables of one record: a line, then its traceback if it has one."""
    if line.fields is None:
        yield Text(line.text)
        return
    level = line.level or "-"
    out = Text()
    out.append(line.timestamp, style="dim")
    out.append(" ")
    out.append(f"{level:<8}", style=LEVEL_STYLES.get(level, "bold"))
    out.append(" ")
    out.append(line.logger or "-", style="cyan")
    out.append(" ")
    out.append(line.message)
    for key, value in line.extras().items():
        shown = value if isinstance(value, str) else orjson.dumps(value).decode()
        out.append(f" {key}=", style="dim")
        out.append(shown, style="dim")
    yield out
    traceback = line.traceback
    if traceback:
        yield Syntax(traceback.rstrip("\n"), "pytb", theme="ansi_dark", background_color="default")


class TailPrinter:
    """Writes records as ``tail`` shows them: raw JSON lines, or pretty with colour."""

    def __init__(self, *, pretty: bool, console: Console, raw: IO[bytes]) -> None:
        self.pretty = pretty
        self._console = console
        self._raw = raw

    def write(self, line: LogLine) -> None:
        """Write one record."""
        if self.pretty:
            for renderable in render(line):
                self._console.print(renderable, soft_wrap=True, highlight=False)
        else:
            value = line.record.value
            self._raw.write(value if value.endswith(b"\n") else value + b"\n")

    def flush(self) -> None:
        """Push what was written out (before offsets are committed)."""
        if not self.pretty:
            self._raw.flush()
        self._console.file.flush()


def security_options(args: argparse.Namespace) -> dict[str, Any]:
    """The handler's security options given on the command line (only those given).

    The password is never a flag (it would show in ``ps`` and shell history): it comes from
    ``$KAFKALOG_SASL_PASSWORD``, as for the handler.
    """
    options = {name: getattr(args, name, None) for name in _SECURITY_FLAGS}
    if getattr(args, "no_ssl_check_hostname", False):
        options["ssl_check_hostname"] = False
    return {name: value for name, value in options.items() if value is not None}


def client_config(args: argparse.Namespace) -> dict[str, Any]:
    """Extra kafka-python client settings from the command line: the security options,
    validated like the handler's (a bad one raises :class:`~kafkalog.errors.ConfigError`)."""
    config = HandlerConfig.from_options({"topic": "kafkalog-cli", **security_options(args)})
    return security_settings(config)


def _servers(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _start_at(args: argparse.Namespace) -> StartAt:
    since_ms = int(parse_since(args.since) * 1000) if args.since else None
    return StartAt(beginning=args.from_beginning, since_ms=since_ms, last=args.lines)


# Set by Ctrl-C or SIGTERM while `kafkalog tail` runs. The KeyboardInterrupt the handler raises
# as well could be lost if it landed while kafka-python ran one of its event loop's tasks on
# this thread (that loop catches BaseException from a task and only logs it); the follow loop
# checks this flag after every poll (at most 0.5 s apart) as well.
_STOP = threading.Event()


def _raise_interrupt(signum: int, _frame: FrameType | None) -> None:
    _STOP.set()
    raise KeyboardInterrupt


def _cmd_tail(args: argparse.Namespace, err: Console) -> int:
    try:
        start = _start_at(args)
        pattern = re.compile(args.grep) if args.grep else None
        min_level = level_number(args.level) if args.level else None
        if args.level and min_level is None:
            raise ValueError(f"unknown level {args.level!r}")
        window = DedupeWindow(args.dedupe_window) if args.dedupe else None
    except (ValueError, re.error) as exc:
        err.print(f"[red]kafkalog tail: {exc}[/red]")
        return EXIT_USAGE
    selector = RecordFilter(min_level=min_level, logger=args.logger, pattern=pattern)
    out = Console(highlight=False)
    pretty = not args.json and out.is_terminal
    printer = TailPrinter(pretty=pretty, console=out, raw=sys.stdout.buffer)
    _STOP.clear()
    previous = signal.signal(signal.SIGTERM, _raise_interrupt)  # exit as cleanly as on Ctrl-C
    previous_int = signal.getsignal(signal.SIGINT)
    if previous_int is not signal.SIG_IGN:  # a background job's ignored Ctrl-C stays ignored
        signal.signal(signal.SIGINT, _raise_interrupt)
    reader: TopicReader | None = None
    printed: dict[int, int] = {}  # partition -> offset after the last record handled
    try:
        try:
            reader = TopicReader(
                _servers(args.bootstrap_servers),
                args.topic,
                group=args.group,
                start=start,
                client_config=client_config(args),
                timeout_s=args.timeout,
            )
        except TopicMissingError as exc:
            err.print(f"[red]kafkalog tail: {exc}[/red]")
            return EXIT_TOPIC_MISSING
        except Exception as exc:
            kind = connection_problem(exc)  # "kafka": kafka-python gave up without a cause
            err.print(f"[red]kafkalog tail: cannot read {args.topic!r} from "
                      f"{args.bootstrap_servers}: {exc}[/red]\n"
                      "run `kafkalog check` for a diagnosis")
            return EXIT_UNREACHABLE if kind == "kafka" else PROBLEM_EXIT_CODES[kind]
        code = _tail_loop(args, reader, printer, selector=selector, window=window,
                          printed=printed, err=err)
        if code == EXIT_UNREACHABLE:
            err.print(f"[red]kafkalog tail: did not reach the end of {args.topic!r} within "
                      f"{args.timeout:g}s (--timeout)[/red]")
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # The reader of our output went away (`| head`): stop quietly, and keep Python from
        # complaining when it flushes stdout at exit.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
        return EXIT_OK
    finally:
        signal.signal(signal.SIGTERM, previous)
        if previous_int is not signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous_int)
        if reader is not None:
            try:
                _commit(reader, printed, err)  # what was printed before an interrupt, if any
                reader.close()
            except KeyboardInterrupt:  # a second Ctrl-C: leave without waiting for Kafka
                pass


def _commit(reader: TopicReader, printed: dict[int, int], err: Console) -> None:
    """Commit the offsets after the records handled; a failure only means printing twice."""
    try:
        reader.commit(printed)
    except Exception as exc:
        err.print(f"[yellow]could not commit offsets ({type(exc).__name__}); those records "
                  "may be printed again next time[/yellow]")
    printed.clear()


def _tail_loop(
    args: argparse.Namespace,
    reader: TopicReader,
    printer: TailPrinter,
    *,
    selector: RecordFilter,
    window: DedupeWindow | None,
    printed: dict[int, int],
    err: Console,
) -> int:
    deadline = None if args.follow else time.monotonic() + args.timeout
    while True:
        if _STOP.is_set():
            raise KeyboardInterrupt  # the signal's own exception went astray (see _STOP)
        if not args.follow and reader.caught_up():
            return EXIT_OK
        if deadline is not None and time.monotonic() >= deadline:
            return EXIT_UNREACHABLE  # could not read up to the end in time
        records = reader.poll(0.5)
        for record in records:
            line = LogLine(record)
            if selector.matches(line) and (window is None or window.first_time(line.record_id)):
                printer.write(line)
            printed[record.partition] = record.offset + 1
        if records:
            printer.flush()
            _commit(reader, printed, err)  # after printing: at-least-once


# -- check -----------------------------------------------------------------------------------------


def _check_record(nonce: str) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return orjson.dumps({
        "@timestamp": now,
        "level": "INFO",
        "logger": "kafkalog.check",
        "message": f"kafkalog check round trip {nonce}",
        "id": f"check-{nonce}",
    })


def _cmd_check(args: argparse.Namespace, out: Console) -> int:
    servers = _servers(args.bootstrap_servers)
    probe = ClusterProbe(servers, client_config=client_config(args), timeout_s=args.timeout)

    def ok(text: str) -> None:
        out.print(f"[green]ok[/green]   {text}")

    steps: list[tuple[str, Callable[[], str]]] = [
        ("resolve", lambda: "resolved " + ", ".join(
            f"{server} -> {' '.join(addrs)}" for server, addrs in probe.resolve().items())),
        ("connect", lambda: "TCP connection to " + ", ".join(probe.reach())),
        ("kafka", lambda: _describe_cluster(probe.connect())),
        ("topic", lambda: _describe_topic(args.topic, probe)),
    ]
    if not args.no_round_trip:
        steps.append(("round trip", lambda: _describe_round_trip(args.topic, probe)))
    try:
        for name, step in steps:
            try:
                ok(step())
            except ProbeError as exc:
                out.print(f"[red]FAIL[/red] {name}: {exc} [dim]({exc.kind})[/dim]")
                hint = _HINTS.get(exc.kind)
                if hint:
                    out.print(f"     {hint}")
                return PROBLEM_EXIT_CODES.get(exc.kind, EXIT_UNREACHABLE)
    finally:
        probe.close()
    out.print(f"[green]kafkalog can log to {args.topic!r} on {args.bootstrap_servers}[/green]")
    return EXIT_OK


def _describe_cluster(info: Mapping[str, Any]) -> str:
    brokers = info.get("brokers") or []
    return f"Kafka cluster {info.get('cluster_id')} with {len(brokers)} broker(s)"


def _describe_topic(topic: str, probe: ClusterProbe) -> str:
    found = probe.topic(topic)
    if found.leaderless:
        raise ProbeError("topic_unhealthy", f"topic {topic!r}: partitions "
                         f"{list(found.leaderless)} have no leader")
    return f"topic {topic!r} has {found.partitions} partition(s), each with a leader"


def _describe_round_trip(topic: str, probe: ClusterProbe) -> str:
    nonce = uuid.uuid4().hex[:16]
    partition, offset, seconds = probe.round_trip(topic, _check_record(nonce))
    return (f"wrote a test record to partition {partition} at offset {offset} and read it back "
            f"in {seconds * 1000:.0f} ms")


_HINTS: Mapping[str, str] = {
    "dns": "Check the host names in --bootstrap-servers (and the DNS of this machine).",
    "refused": "Nothing listens there: is Kafka running, and is this its client port?",
    "unreachable": "No answer in time: a firewall, a wrong address, or a very slow network.",
    "tls": "The TLS handshake failed: check the CA file, the client certificate and the host "
           "name in the broker's certificate.",
    "sasl": "Authentication failed: check the SASL mechanism, user name and password.",
    "kafka": "Something answered, but not like a Kafka broker: is this the client listener "
             "(not the controller's), and does the security protocol match it?",
    "topic_missing": "Create the topic with the partitions and replication you want.",
    "auto_create_disabled": "Create the topic first (kafka-topics.sh --create ...).",
    "topic_unhealthy": "Look at the brokers hosting those partitions, or at the ACLs.",
    "round_trip": "Kafka is reachable but did not take or return the record: look at "
                  "min.insync.replicas, ACLs and quotas.",
}


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def _positive_float(text: str) -> float:
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


# Handler options that tail, check and replay take as --flags (dashes for underscores).
_SECURITY_FLAGS: tuple[str, ...] = (
    "security_protocol", "sasl_mechanism", "sasl_username", "ssl_cafile", "ssl_certfile",
    "ssl_keyfile",
)  # fmt: skip


def _add_security(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group(
        "secured clusters", "as the handler options of the same names; the SASL password is "
                            "read from $KAFKALOG_SASL_PASSWORD",
    )  # fmt: skip
    group.add_argument("--security-protocol", metavar="PROTOCOL",
                       help="PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL")
    group.add_argument("--sasl-mechanism", metavar="MECHANISM",
                       help="PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, ...")
    group.add_argument("--sasl-username", metavar="USER")
    group.add_argument("--ssl-cafile", metavar="PEM", help="CA certificate(s) to trust")
    group.add_argument("--ssl-certfile", metavar="PEM", help="client certificate (mutual TLS)")
    group.add_argument("--ssl-keyfile", metavar="PEM", help="client key (mutual TLS)")
    group.add_argument("--no-ssl-check-hostname", action="store_true",
                       help="accept a certificate that names another host (not advised)")


def _add_bootstrap(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get("KAFKALOG_BOOTSTRAP_SERVERS", DEFAULT_BOOTSTRAP),
        help="host:port[,host:port...] (default: $KAFKALOG_BOOTSTRAP_SERVERS or "
             f"{DEFAULT_BOOTSTRAP})",
    )


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kafkalog`` command."""
    parser = argparse.ArgumentParser(
        prog="kafkalog",
        description="Read kafkalog topics, check a Kafka setup, inspect and drain spill "
                    "directories.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    tail = sub.add_parser(
        "tail", help="print the records of a log topic",
        description="Print the records of a topic: coloured by level on a terminal, JSON lines "
                    "(unchanged) with --json or when the output is not a terminal.",
    )
    tail.add_argument("--topic", required=True)
    _add_bootstrap(tail)
    _add_security(tail)
    tail.add_argument("--group", help="join this consumer group; commit offsets after printing")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true",
                       help="start at the oldest record")
    start.add_argument("--since", metavar="WHEN",
                       help="start at records this old (10m, 1h30m, 2d) or this time (ISO 8601)")
    start.add_argument("-n", "--lines", type=_positive_int, default=10,
                       help="otherwise start this many records before the end of each "
                            "partition (default 10)")
    tail.add_argument("-f", "--follow", action="store_true",
                      help="keep printing new records until Ctrl-C")
    tail.add_argument("--level", help="only records at this level or above (WARNING, ...)")
    tail.add_argument("--logger", metavar="NAME",
                      help="only records of this logger and its children")
    tail.add_argument("--grep", metavar="REGEX",
                      help="only records whose message or traceback matches")
    tail.add_argument("--json", action="store_true",
                      help="print the JSON values unchanged, one a line")
    tail.add_argument("--dedupe", action="store_true",
                      help="skip records whose id was already printed (within the window)")
    tail.add_argument("--dedupe-window", type=_positive_int, default=100_000, metavar="IDS",
                      help="how many recent ids --dedupe remembers (default 100000)")
    tail.add_argument("--timeout", type=_positive_float, default=30.0, metavar="SECONDS",
                      help="give up connecting, or reading to the end without --follow, after "
                           "this long (default 30)")
    check = sub.add_parser(
        "check", help="check that kafkalog can log to a topic",
        description="Check DNS, the TCP connection, TLS/SASL, the topic and its partitions, and "
                    "that a test record round-trips. Exit codes: 0 ok, 3 no answer in time, "
                    "5 DNS, 6 connection refused, 7 TLS, 8 SASL, 9 not Kafka, 10 topic missing, "
                    "11 topic missing and auto-create disabled, 12 partitions without a leader "
                    "or access denied, 13 round trip failed.",
    )
    check.add_argument("--topic", required=True)
    _add_bootstrap(check)
    _add_security(check)
    check.add_argument("--timeout", type=_positive_float, default=10.0, metavar="SECONDS",
                       help="time allowed for each step (default 10)")
    check.add_argument("--no-round-trip", action="store_true",
                       help="do not write a test record to the topic")
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
    _add_security(replay)
    replay.add_argument("--timeout", type=float, default=30.0,
                        help="seconds to wait for Kafka per batch (default 30)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kafkalog`` console script."""
    args = build_parser().parse_args(argv)
    if args.command in ("tail", "check"):
        try:
            client_config(args)  # bad security options: a usage error, before any network
        except ConfigError as exc:
            Console(stderr=True).print(f"[red]kafkalog {args.command}: {exc}[/red]")
            return EXIT_USAGE
    # kafka-python logs its connection troubles as warnings; the commands report them instead.
    kafka_logger = logging.getLogger("kafka")
    kafka_logger.addHandler(logging.NullHandler())
    kafka_logger.propagate = False
    if args.command == "tail":
        return _cmd_tail(args, Console(stderr=True, soft_wrap=True))
    console = Console(stderr=args.command == "replay", soft_wrap=args.command == "check")
    try:
        if args.command == "check":
            return _cmd_check(args, console)
        if args.command == "spill-info":
            return _cmd_spill_info(args, console)
        return _cmd_replay(args, console)
    except KeyboardInterrupt:
        console.print("interrupted; what was not acknowledged stays on disk")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
