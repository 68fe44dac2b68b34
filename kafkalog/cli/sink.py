"""``kafkalog sink``: index log topics into OpenSearch, or write them to files (the work is done
by :mod:`kafkalog.sink`; this module parses the command line, handles signals, shows progress).

Options from flags, or from ``--config sink.toml`` with flags given on top winning. SIGTERM and
SIGINT stop it within ``shutdown_timeout_ms`` (plus the group leave): the bulks in flight
finish or are abandoned, what was written is committed, the consumer leaves the group.
Progress (records/s, lag per partition) only on a terminal.
"""

from __future__ import annotations

import argparse
import os
import signal
import threading
import time
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.live import Live

from kafkalog.cli.common import (
    EXIT_OK,
    EXIT_TOPIC_MISSING,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_metrics,
    add_security,
    positive_int,
    security_options,
    serve_metrics,
)
from kafkalog.config import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, SCHEMAS
from kafkalog.errors import ConfigError
from kafkalog.sink.config import ON_INVALID, STARTS, SinkConfig, load_toml, sink_config

if TYPE_CHECKING:
    from kafkalog.sink import Sink

EXIT_FAILED = 1
# Past the stop's own bound, how long the group leave and the closes may take.
_CLOSE_GRACE_S = 10.0


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``sink`` subcommand and its options to ``sub``."""
    # No abbreviations: "--password x" must be an error, not "--password-file x".
    p = sub.add_parser("sink", help="index log topics into OpenSearch, or write them to files",
                       allow_abbrev=False)
    p.add_argument("--config", metavar="TOML", help="options from a TOML file (flags win)")
    p.add_argument("--topic", action="append", metavar="T", help="a topic to read (repeat)")
    p.add_argument("--group", metavar="G", help="the consumer group")
    p.add_argument("--bootstrap-servers", metavar="HOSTS",
                   help=f"host:port[,...] (default: ${BOOTSTRAP_ENV} or {DEFAULT_BOOTSTRAP})")
    p.add_argument("--to", metavar="OUTPUT", help="'opensearch', or 'file:DIR'")
    p.add_argument("--from", dest="start", choices=STARTS,
                   help="where a new group starts (default: earliest)")
    store = p.add_argument_group("OpenSearch", "the password comes from $KAFKALOG_SINK_PASSWORD "
                                 "or --password-file, an API key from $KAFKALOG_SINK_API_KEY or "
                                 "--api-key-file; never from a flag")
    store.add_argument("--hosts", action="append", metavar="URL", help="http(s)://host:port")
    store.add_argument("--index", metavar="PATTERN",
                       help="index pattern: {field} and strftime codes of @timestamp "
                            "(default: logs-kafkalog-%%Y.%%m.%%d)")
    store.add_argument("--fallback-index", metavar="NAME",
                       help="for records that lack a field of the pattern "
                            "(default: logs-kafkalog-unrouted)")
    store.add_argument("--no-template", action="store_true",
                       help="do not install the index template")
    store.add_argument("--schema", choices=SCHEMAS, help="the records' schema, for the template")
    store.add_argument("--ca-certs", metavar="PEM", help="CA certificate(s) to trust (https)")
    store.add_argument("--username", metavar="USER")
    store.add_argument("--password-file", metavar="FILE")
    store.add_argument("--api-key-file", metavar="FILE")
    p.add_argument("--on-invalid", choices=ON_INVALID,
                   help="a record that is not JSON: index it with an error field (default), "
                        "or send it to the dead-letter topic")
    p.add_argument("--dead-letter-topic", metavar="T", help="(default: GROUP.dead-letters)")
    p.add_argument("--bulk-workers", type=positive_int, metavar="N")
    p.add_argument("--bulk-max-records", type=positive_int, metavar="N")
    add_metrics(p)
    add_security(p)


_FLAG_OPTIONS = ("group", "to", "start", "index", "fallback_index", "schema", "ca_certs",
                 "username", "password_file", "api_key_file", "on_invalid",
                 "dead_letter_topic", "bulk_workers", "bulk_max_records")


def config_from_args(args: argparse.Namespace) -> SinkConfig:
    """The sink's config from the command line (and ``--config``, if given)."""
    options: dict[str, Any] = {name: getattr(args, name) for name in _FLAG_OPTIONS
                               if getattr(args, name) is not None}
    options.update(security_options(args))
    if args.topic:
        options["topics"] = args.topic
    if args.hosts:
        options["hosts"] = args.hosts
    if args.no_template:
        options["template"] = False
    if args.bootstrap_servers:
        options["bootstrap_servers"] = args.bootstrap_servers
    if args.config:
        return load_toml(Path(args.config), options)
    options.setdefault("bootstrap_servers", os.environ.get(BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP))
    return sink_config(options)


def run(args: argparse.Namespace, console: Console) -> int:
    """Run the sink until SIGTERM or SIGINT. The exit status."""
    # The consumer (kafka-python) is imported only by the command that uses it.
    from kafkalog.sink import Sink  # noqa: PLC0415

    try:
        config = config_from_args(args)
        sink = Sink(config)
    except ConfigError as exc:
        console.print(f"[red]kafkalog sink: {exc}[/red]")
        return EXIT_USAGE
    if not serve_metrics(args, console, "sink"):
        return EXIT_USAGE
    stop = threading.Event()
    failure: list[BaseException] = []

    def on_stop(signum: int, _frame: FrameType | None) -> None:
        stop.set()

    def work() -> None:
        try:
            sink.run(stop)
        except BaseException as exc:
            failure.append(exc)

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    worker = threading.Thread(target=work, name="kafkalog-sink")
    worker.start()
    if console.is_terminal:
        _show_progress(sink, worker, stop, console)
    while worker.is_alive() and not stop.is_set():
        worker.join(0.5)  # short joins: the main thread must run the signal handlers
    worker.join(config.shutdown_timeout_ms / 1000 + _CLOSE_GRACE_S)
    if worker.is_alive():
        console.print("[red]kafkalog sink: did not stop in time; what was not committed is "
                      "read again at the next start[/red]")
        return EXIT_FAILED
    if failure:
        return _report_failure(failure[0], console)
    stats = sink.stats()
    console.print(f"kafkalog sink: stopped; {stats['read']:,} read, {stats['written']:,} "
                  f"written to {sink.output.name}, {stats['dead_lettered']:,} dead-lettered")
    return EXIT_OK


def _report_failure(exc: BaseException, console: Console) -> int:
    from kafkalog.client.group import GroupUnavailableError, TopicMissingError  # noqa: PLC0415
    from kafkalog.sink.outputs import StoreSetupError  # noqa: PLC0415

    if isinstance(exc, TopicMissingError):
        console.print(f"[red]kafkalog sink: {exc}[/red]")
        return EXIT_TOPIC_MISSING
    if isinstance(exc, (GroupUnavailableError, StoreSetupError)):
        console.print(f"[red]kafkalog sink: {exc}[/red]")
        return EXIT_UNREACHABLE
    if isinstance(exc, ConfigError):
        console.print(f"[red]kafkalog sink: {exc}[/red]")
        return EXIT_USAGE
    console.print(f"[red]kafkalog sink: failed: {type(exc).__name__}: {exc}[/red]")
    return EXIT_FAILED


def _show_progress(sink: Sink, worker: threading.Thread, stop: threading.Event,
                   console: Console) -> None:
    """Records/s and lag per partition, once a second, while the sink runs."""
    last = (time.monotonic(), 0)
    with Live(console=console, transient=True, refresh_per_second=2) as live:
        while worker.is_alive() and not stop.is_set():
            worker.join(1.0)
            stats = sink.stats()
            now = time.monotonic()
            rate = (stats["written"] - last[1]) / max(now - last[0], 1e-6)
            last = (now, stats["written"])
            lag = stats["lag"]
            lags = "  ".join(f"{p.topic}[{p.partition}] {n:,}"
                             for p, n in sorted(lag.items())[:8])
            state = "  paused (store retrying or in-flight full)" if stats["paused"] else ""
            live.update(f"{stats['written']:,} written  {rate:,.0f} records/s  "
                        f"{stats['dead_lettered']:,} dead-lettered  lag: {lags or '-'}{state}")
