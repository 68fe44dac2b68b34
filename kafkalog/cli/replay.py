"""``kafkalog replay``: send what dead writers left in a spill directory to Kafka, with a
progress bar, deleting each segment once Kafka acknowledged all of it (the store's job).

Segments of a live process are never touched. If Kafka stops taking records, what is left
stays on disk, is counted (before the store is closed) and reported, and the exit status is
not 0: 3 if nothing was sent, 4 if some was.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from kafkalog.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    add_bootstrap,
    add_security,
    positive_float,
    security_options,
    spill_dir_or_none,
)
from kafkalog.config import TRANSPORTS, PipelineConfig
from kafkalog.errors import ConfigError
from kafkalog.pipeline.counters import WorkerCounters
from kafkalog.pipeline.replay import replay_once
from kafkalog.pipeline.sender import ConfirmedSender
from kafkalog.spill import SpillStore
from kafkalog.spill.inspect import topics_in
from kafkalog.transports import build_transport, check_transport_config

# One batch read from the spill at a time: small enough for a lively progress bar.
_BATCH_RECORDS = 5000
_BATCH_BYTES = 8 * 1024 * 1024


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``replay`` subcommand and its options to ``sub``."""
    replay = sub.add_parser(
        "replay", help="send the records of a spill directory to Kafka",
        description="Send what processes that no longer run left in a spill directory, oldest "
                    "first; segments of running processes are left alone. Exit codes: 0 all "
                    "sent, 3 none sent, 4 some sent (what is left stays on disk).",
    )
    replay.add_argument("--spill-dir", required=True)
    add_bootstrap(replay)
    replay.add_argument("--topic", help="send to this topic instead of each segment's own")
    add_security(replay)
    replay.add_argument("--timeout", type=positive_float, default=30.0,
                        help="seconds to wait for Kafka per batch (default 30)")
    replay.add_argument("--transport", choices=TRANSPORTS, default="kafka-python",
                        help="the Kafka client to send with (default kafka-python; confluent "
                             "needs the kafkalog[confluent] extra)")


def run(args: argparse.Namespace, console: Console) -> int:
    """Run ``kafkalog replay``, showing progress on ``console``. The exit status."""
    directory = spill_dir_or_none(args.spill_dir, console)
    if directory is None:
        return EXIT_USAGE
    topics = topics_in(directory)
    if not topics:
        console.print("nothing to replay")
        return EXIT_OK
    timeout_s = args.timeout
    sent = refused = 0
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
                config = PipelineConfig.from_options(
                    {"topic": target, "bootstrap_servers": args.bootstrap_servers,
                     "request_timeout_ms": int(timeout_s * 1000), "transport": args.transport,
                     **security_options(args)}
                )
                check_transport_config(config)
            except ConfigError as exc:
                store.close()
                console.print(f"[red]{exc}[/red]")
                return EXIT_USAGE
            sender = ConfirmedSender(transport=build_transport(config),
                                     counters=WorkerCounters(), topic=target,
                                     request_timeout_s=timeout_s, spill=store)
            total = store.pending_records()
            task = progress.add_task(f"{source_topic} -> {target}", total=total, bytes=0,
                                     rate="0")
            try:
                topic_refused = _drain(store, sender, progress, task, timeout_s=timeout_s,
                                       console=console,
                                       where=",".join(config.bootstrap_servers))
                # Counted before close(), which lets go of the segments it adopted (and
                # pending_records() with them).
                left = store.pending_records()
            finally:
                sender.transport.close(5.0)
                store.close()
            sent += int(progress.tasks[task].completed) - topic_refused
            refused += topic_refused
            if left:
                console.print(
                    f"[red]stopped: {left} record(s) of {source_topic!r} left on disk in "
                    f"{directory}; nothing was lost. Run replay again when Kafka is reachable."
                    "[/red]"
                )
                return EXIT_PARTIAL if sent else EXIT_UNREACHABLE
    console.print(f"replayed {sent} record(s)" + (
        f"; Kafka refused {refused} more for good: they are kept in dead-letter segments "
        f"(kafkalog spill-info {directory})" if refused else ""))
    return EXIT_OK


def _drain(
    store: SpillStore,
    sender: ConfirmedSender,
    progress: Progress,
    task: Any,
    *,
    timeout_s: float,
    console: Console,
    where: str,
) -> int:
    """Replay ``store`` to the end, or to the first batch Kafka does not take, with the
    pipeline's replay engine (the one the worker uses). The count of records Kafka refused."""
    nbytes = 0
    refused = 0
    started = time.monotonic()
    while True:
        step = replay_once(store, sender, timeout_s, max_records=_BATCH_RECORDS,
                           max_bytes=_BATCH_BYTES)
        if step is None:
            return refused
        if step.refused:  # never dropped: kept in a dead-letter segment beside the spill
            refused += step.refused
            console.print(f"[yellow]Kafka refused {step.refused} record(s); kept them in a "
                          "dead-letter segment[/yellow]")
        nbytes += step.value_bytes
        elapsed = max(time.monotonic() - started, 1e-9)
        progress.update(task, advance=step.done, bytes=nbytes,
                        rate=f"{progress.tasks[task].completed / elapsed:,.0f}")
        if step.error is not None:
            console.print(f"[red]cannot deliver to Kafka at {where}: {step.error}[/red]")
            return refused
