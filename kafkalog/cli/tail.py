"""``kafkalog tail``: print the records of a topic, once or following it, committing a consumer
group's offsets after printing (at-least-once). The records are read by
:class:`~kafkalog.client.reader.TopicReader` and shown by :mod:`kafkalog.cli.tail_records`.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import re
import signal
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING

from rich.console import Console

from kafkalog.cli.common import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TOPIC_MISSING,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    PROBLEM_EXIT_CODES,
    PROBLEM_HINTS,
    add_bootstrap,
    add_security,
    client_config,
    non_negative_int,
    positive_float,
    positive_int,
    servers,
)
from kafkalog.cli.tail_records import (
    DedupeWindow,
    LogLine,
    RecordFilter,
    TailPrinter,
    level_number,
)

if TYPE_CHECKING:
    from kafkalog.client.probe import ProbeError
    from kafkalog.client.reader import StartAt, TopicReader

# kafkalog.client (and kafka-python with it) is imported by the functions that read, not with
# this module: the `kafkalog` command builds its parser from every command.

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


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``tail`` subcommand and its options to ``sub``."""
    tail = sub.add_parser(
        "tail", help="print the records of a log topic",
        description="Print the records of a topic: coloured by level on a terminal, JSON lines "
                    "(unchanged) with --json or when the output is not a terminal. Exit codes "
                    "(as check's): 0 done, 3 no answer in time, 5 DNS, 6 connection refused, "
                    "7 TLS, 8 SASL, 10 topic missing, 130 Ctrl-C or SIGTERM.",
    )
    tail.add_argument("--topic", required=True)
    add_bootstrap(tail)
    add_security(tail)
    tail.add_argument("--group", help="join this consumer group; commit offsets after printing")
    start = tail.add_mutually_exclusive_group()
    start.add_argument("--from-beginning", action="store_true",
                       help="start at the oldest record")
    start.add_argument("--since", metavar="WHEN",
                       help="start at records this old (10m, 1h30m, 2d) or this time (ISO 8601)")
    start.add_argument("-n", "--lines", type=non_negative_int, default=10,
                       help="otherwise start this many records before the end of each "
                            "partition (default 10; 0 with --follow: only new records)")
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
    tail.add_argument("--dedupe-window", type=positive_int, default=100_000, metavar="IDS",
                      help="how many recent ids --dedupe remembers (default 100000)")
    tail.add_argument("--timeout", type=positive_float, default=30.0, metavar="SECONDS",
                      help="give up connecting, or reading to the end without --follow, after "
                           "this long (default 30)")


def _start_at(args: argparse.Namespace) -> StartAt:
    from kafkalog.client.reader import StartAt  # noqa: PLC0415

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


def run(args: argparse.Namespace, err: Console) -> int:
    """Run ``kafkalog tail``; messages go to ``err``, records to stdout. The exit status."""
    from kafkalog.client.probe import connection_problem  # noqa: PLC0415
    from kafkalog.client.reader import TopicMissingError, TopicReader  # noqa: PLC0415

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
        problem = _unreachable(args)
        if problem is not None:
            err.print(f"[red]kafkalog tail: cannot read {args.topic!r}: {problem} "
                      f"({problem.kind})[/red]\n{PROBLEM_HINTS[problem.kind]}\n"
                      "run `kafkalog check` for a diagnosis")
            return PROBLEM_EXIT_CODES[problem.kind]
        try:
            reader = TopicReader(
                servers(args.bootstrap_servers),
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


def _unreachable(args: argparse.Namespace) -> ProbeError | None:
    """Why no bootstrap server takes a TCP connection, if none does: found in milliseconds for
    a refused port or a name that does not resolve, where the consumer would retry until
    ``--timeout``. ``check``'s first two steps, with its kinds of problem (and exit codes)."""
    from kafkalog.client.probe import ClusterProbe, ProbeError  # noqa: PLC0415

    names = servers(args.bootstrap_servers)
    # The whole probe stays within --timeout, however many servers do not answer.
    probe = ClusterProbe(names, timeout_s=args.timeout / max(len(names), 1))
    try:
        probe.resolve()
        probe.reach()
    except ProbeError as exc:
        return exc
    finally:
        probe.close()
    return None


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
