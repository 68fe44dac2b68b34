"""``kafkalog check``: test DNS, TCP, TLS/SASL, the topic and a round trip, step by step, with
a hint and a distinct exit status for the first failure. The probes are
:class:`~kafkalog.client.probe.ClusterProbe`'s; this module only orders and reports them.
"""

from __future__ import annotations

import argparse
import datetime as dt
import uuid
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import orjson
from rich.console import Console

from kafkalog.cli.common import (
    EXIT_OK,
    EXIT_UNREACHABLE,
    PROBLEM_EXIT_CODES,
    PROBLEM_HINTS,
    add_bootstrap,
    add_security,
    client_config,
    positive_float,
    servers,
)

if TYPE_CHECKING:
    from kafkalog.client.probe import ClusterProbe, ProbeError

# kafkalog.client.probe (and kafka-python with it) is imported by the functions that run the
# check, not with this module: the `kafkalog` command builds its parser from every command.


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the ``check`` subcommand and its options to ``sub``."""
    check = sub.add_parser(
        "check", help="check that kafkalog can log to a topic",
        description="Check DNS, the TCP connection, TLS/SASL, the topic and its partitions, and "
                    "that a test record round-trips. Exit codes: 0 ok, 3 no answer in time, "
                    "5 DNS, 6 connection refused, 7 TLS, 8 SASL, 9 not Kafka, 10 topic missing, "
                    "11 topic missing and auto-create disabled, 12 partitions without a leader "
                    "or access denied, 13 round trip failed; warning 14: the topic does not "
                    "exist yet and the first write will create it.",
    )
    check.add_argument("--topic", required=True)
    add_bootstrap(check)
    add_security(check)
    check.add_argument("--timeout", type=positive_float, default=10.0, metavar="SECONDS",
                       help="time allowed for each step (default 10)")
    check.add_argument("--no-round-trip", action="store_true",
                       help="do not write a test record to the topic")


def _check_record(nonce: str) -> bytes:
    now = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return orjson.dumps({
        "@timestamp": now,
        "level": "INFO",
        "logger": "kafkalog.check",
        "message": f"kafkalog check round trip {nonce}",
        "id": f"check-{nonce}",
    })


def run(args: argparse.Namespace, out: Console) -> int:
    """Run ``kafkalog check``, reporting each step on ``out``. The exit status."""
    from kafkalog.client.probe import ClusterProbe, ProbeError  # noqa: PLC0415

    probe = ClusterProbe(servers(args.bootstrap_servers), client_config=client_config(args),
                         timeout_s=args.timeout)

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
        for index, (name, step) in enumerate(steps):
            try:
                ok(step())
            except ProbeError as exc:
                _report(out, name, exc, skipped=[later for later, _ in steps[index + 1:]])
                return PROBLEM_EXIT_CODES.get(exc.kind, EXIT_UNREACHABLE)
    finally:
        probe.close()
    out.print(f"[green]kafkalog can log to {args.topic!r} on {args.bootstrap_servers}[/green]")
    return EXIT_OK


def _report(out: Console, step: str, exc: ProbeError, *, skipped: list[str]) -> None:
    """A failed step (or a warning: the check stops there too), its hint, what it skipped."""
    from kafkalog.client.probe import WARNING_KINDS  # noqa: PLC0415

    warning = exc.kind in WARNING_KINDS
    label = "[yellow]WARN[/yellow]" if warning else "[red]FAIL[/red]"
    out.print(f"{label} {step}: {exc} [dim]({exc.kind})[/dim]")
    hint = PROBLEM_HINTS.get(exc.kind)
    if hint:
        out.print(f"     {hint}")
    if warning and skipped:
        # The check never changes the cluster: a round trip would create the topic.
        out.print(f"     skipped: {', '.join(skipped)} (writing would create the topic)")


def _describe_cluster(info: Mapping[str, Any]) -> str:
    brokers = info.get("brokers") or []
    return f"Kafka cluster {info.get('cluster_id')} with {len(brokers)} broker(s)"


def _describe_topic(topic: str, probe: ClusterProbe) -> str:
    from kafkalog.client.probe import ProbeError  # noqa: PLC0415

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
