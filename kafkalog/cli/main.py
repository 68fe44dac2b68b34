"""The ``kafkalog`` command: its argument parser and the dispatch to one module per subcommand.

``kafkalog tail --topic T`` prints the records of a topic (:mod:`kafkalog.cli.tail`);
``kafkalog check --topic T`` tests a cluster step by step (:mod:`kafkalog.cli.check`);
``kafkalog spill-info DIR`` lists the segments of a spill directory
(:mod:`kafkalog.cli.spill_info`); ``kafkalog replay --spill-dir DIR`` sends what dead writers
left there (:mod:`kafkalog.cli.replay`); ``kafkalog ship --path GLOB --topic T --state-dir
DIR`` follows log files into Kafka (:mod:`kafkalog.cli.ship`).

``kafkalog`` alone prints the help and exits 0 (it asks what the command does);
``kafkalog --version`` prints the version. No Kafka client is imported by the CLI: the
consumer and the probes live in :mod:`kafkalog.client`.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from rich.console import Console

from kafkalog import __version__
from kafkalog.cli import check, replay, ship, sink, spill_info, tail
from kafkalog.cli.common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, client_config
from kafkalog.errors import ConfigError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``kafkalog`` command."""
    parser = argparse.ArgumentParser(
        prog="kafkalog",
        description="Read kafkalog topics, check a Kafka setup, inspect and drain spill "
                    "directories, ship log files.",
        epilog="`kafkalog COMMAND --help` describes a command and its options.",
    )
    parser.add_argument("--version", action="version", version=f"kafkalog {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    tail.add_parser(sub)
    check.add_parser(sub)
    spill_info.add_parser(sub)
    replay.add_parser(sub)
    ship.add_parser(sub)
    sink.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``kafkalog`` console script."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:  # `kafkalog` alone: show what it can do
        parser.print_help()
        return EXIT_OK
    if args.command in ("tail", "check"):
        try:
            client_config(args)  # bad security options: a usage error, before any network
        except ConfigError as exc:
            Console(stderr=True, soft_wrap=True).print(f"[red]kafkalog {args.command}: {exc}[/red]")
            return EXIT_USAGE
    # kafka-python logs its connection troubles as warnings; the commands report them instead.
    kafka_logger = logging.getLogger("kafka")
    kafka_logger.addHandler(logging.NullHandler())
    kafka_logger.propagate = False
    if args.command == "tail":
        return tail.run(args, Console(stderr=True, soft_wrap=True))
    if args.command == "ship":
        return ship.run(args, Console(stderr=True, soft_wrap=True))
    if args.command == "sink":
        return sink.run(args, Console(stderr=True, soft_wrap=True))
    # check reports on stdout (its output is the report); replay shows progress on stderr.
    console = Console(stderr=args.command != "check", soft_wrap=True)
    try:
        if args.command == "check":
            return check.run(args, console)
        if args.command == "spill-info":
            return spill_info.run(args, console)
        return replay.run(args, console)
    except KeyboardInterrupt:
        console.print("interrupted; what was not acknowledged stays on disk")
        return EXIT_INTERRUPTED


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
