"""What the ``kafkalog`` commands share: exit codes, connection options, argument types.

The exit codes are part of the command's interface (``docs/cli.md``); the security options are
the handler's, validated the same way, so a bad one is a usage error before any network I/O.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from rich.console import Console

from kafkalog.config import BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP, HandlerConfig

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
EXIT_TOPIC_AUTO_CREATE = 14  # a warning: the topic does not exist yet, the first write creates it
EXIT_INTERRUPTED = 130

#: ``kafkalog check`` (and ``tail``) exit codes by kind of problem (probe.PROBE_KINDS).
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
    "topic_auto_create": EXIT_TOPIC_AUTO_CREATE,
}

#: What to look at, by kind of problem: printed under the problem by ``check`` and ``tail``.
PROBLEM_HINTS: Mapping[str, str] = {
    "dns": "Check the host names in --bootstrap-servers (and the DNS of this machine).",
    "refused": "Nothing listens there: is Kafka running, and is this its client port?",
    "unreachable": "No answer in time: a firewall, a wrong address, or a very slow network.",
    "tls": "The TLS handshake failed: check the CA file, the client certificate and the host "
           "name in the broker's certificate.",
    "sasl": "Authentication failed: check the SASL mechanism, user name and password.",
    "kafka": "Something answered, but not like a Kafka broker: is this the client listener "
             "(not the controller's), and does the security protocol match it?",
    "topic_missing": "Create the topic with the partitions and replication you want.",
    "topic_auto_create": "Logging will work: the first record creates the topic. Create it "
                         "first to choose its partitions and replication.",
    "auto_create_disabled": "Create the topic first (kafka-topics.sh --create ...).",
    "topic_unhealthy": "Look at the brokers hosting those partitions, or at the ACLs.",
    "round_trip": "Kafka is reachable but did not take or return the record: look at "
                  "min.insync.replicas, ACLs and quotas.",
}

# Handler options that tail, check and replay take as --flags (dashes for underscores).
_SECURITY_FLAGS: tuple[str, ...] = (
    "security_protocol", "sasl_mechanism", "sasl_username", "ssl_cafile", "ssl_certfile",
    "ssl_keyfile",
)  # fmt: skip


def positive_int(text: str) -> int:
    """An argument type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1: {text}")
    return value


def non_negative_int(text: str) -> int:
    """An argument type: an integer of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be at least 0: {text}")
    return value


def positive_float(text: str) -> float:
    """An argument type: a number above 0."""
    value = float(text)
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0: {text}")
    return value


def add_bootstrap(parser: argparse.ArgumentParser) -> None:
    """``--bootstrap-servers``, defaulting to ``$KAFKALOG_BOOTSTRAP_SERVERS``, else localhost."""
    parser.add_argument(
        "--bootstrap-servers",
        default=os.environ.get(BOOTSTRAP_ENV, DEFAULT_BOOTSTRAP),
        help=f"host:port[,host:port...] (default: ${BOOTSTRAP_ENV} or {DEFAULT_BOOTSTRAP})",
    )


def add_security(parser: argparse.ArgumentParser) -> None:
    """The handler's security options as flags (the password only from the environment)."""
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


def add_metrics(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port`` and ``--metrics-address``: the process's Prometheus metrics over
    HTTP (see :func:`serve_metrics`)."""
    parser.add_argument("--metrics-port", type=positive_int, metavar="PORT",
                        help="serve Prometheus metrics on this port (needs kafkalog[prometheus])")
    parser.add_argument("--metrics-address", default="127.0.0.1", metavar="ADDR",
                        help="the address of --metrics-port (default: 127.0.0.1)")


def serve_metrics(args: argparse.Namespace, console: Console, command: str) -> bool:
    """Serve kafkalog's collector (every pipeline, agent and sink of the process) on the
    port ``--metrics-port`` gives, if it gives one. False, after saying why on ``console``,
    when it cannot (no prometheus_client, the port taken)."""
    if not args.metrics_port:
        return True
    try:
        # Imported here: prometheus_client is an optional extra.
        from prometheus_client import start_http_server  # noqa: PLC0415

        import kafkalog.metrics  # noqa: PLC0415

        kafkalog.metrics.register()
        start_http_server(args.metrics_port, addr=args.metrics_address)
    except (ImportError, OSError) as exc:
        console.print(f"[red]kafkalog {command}: no metrics on port {args.metrics_port}: "
                      f"{exc}[/red]")
        return False
    return True


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
    from kafkalog.client import client_settings  # noqa: PLC0415 (imports kafka-python)

    config = HandlerConfig.from_options({"topic": "kafkalog-cli", **security_options(args)})
    return dict(client_settings(config))


def servers(text: str) -> list[str]:
    """The ``host:port`` items of a comma-separated ``--bootstrap-servers``."""
    return [s.strip() for s in text.split(",") if s.strip()]


def spill_dir_or_none(path: str, console: Console) -> Path | None:
    """``path`` if it is a directory; else None, after saying so on ``console``."""
    directory = Path(path)
    if directory.is_dir():
        return directory
    console.print(f"[red]no such spill directory: {directory}[/red]")
    return None
