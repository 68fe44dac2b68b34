"""Real Apache Kafka (KRaft mode) brokers for the kafkalog test suite: the command line, and
the one module the tests import the harness from.

The broker jars come from Maven Central (see ``pom.xml`` next to this file) and
every broker runs as a plain ``java`` child process bound to 127.0.0.1 only.

Public API (re-exported here from the modules that hold it)::

    ensure_jars() -> Path       jars.py: the jars, fetched once with Maven
    KafkaBroker(...)            node.py: one combined broker+controller node
    SecuredKafkaBroker(...)     secured.py: TLS, SASL and ACLs; grant(...) adds an ACL
    KafkaCluster(size=3, ...)   cluster.py: N combined nodes with a static controller quorum
    create_topic(bootstrap, name, partitions, replication_factor=1, config=None)
    consume(bootstrap, topic, min_messages, timeout=30.0)        (both admin.py)
    free_port()                 processes.py: ports, java, and the JVMs' exit hooks
    wait_for(fn, timeout=..., description=...)                   polling.py

Also: node_config.py (a node's configuration files), logs.py (its log), errors.py (BrokerError).

Command line (for humans and examples)::

    python tests/broker/kraft.py fetch      # download the jars into the cache
    python tests/broker/kraft.py run        # start one broker, print its bootstrap
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (python tests/broker/kraft.py): sys.path[0] is tests/broker, so neither
    # the "broker" package nor tests/cache_swap.py is importable until tests/ is on the path.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from broker.admin import consume, create_topic
from broker.cluster import KafkaCluster
from broker.errors import BrokerError
from broker.jars import KAFKA_VERSION, ensure_jars
from broker.node import KafkaBroker, new_cluster_id
from broker.polling import wait_for
from broker.processes import free_port
from broker.secured import SecuredKafkaBroker, grant

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "KafkaBroker",
    "KafkaCluster",
    "SecuredKafkaBroker",
    "consume",
    "create_topic",
    "ensure_jars",
    "free_port",
    "grant",
    "new_cluster_id",
    "wait_for",
]



def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kraft.py", description=f"Kafka {KAFKA_VERSION} (KRaft) brokers for kafkalog tests"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the broker jars into the cache and print the dir")
    run = sub.add_parser("run", help="start one broker and keep it up until Ctrl-C/SIGTERM")
    run.add_argument("--port", type=int, default=None, help="client port (default: free)")
    run.add_argument("--work-dir", default=None, help="data/log dir (default: temp, deleted)")
    run.add_argument(
        "--max-seconds",
        type=float,
        default=8 * 3600.0,
        help="stop by itself after this long (default: 8 h)",
    )
    run_cmd = sub.add_parser(
        "exec",
        help="start a throwaway broker, run COMMAND with KAFKALOG_BOOTSTRAP_SERVERS set, stop it",
    )
    run_cmd.add_argument("--timeout", type=float, default=600.0, help="COMMAND's time limit")
    run_cmd.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        print(ensure_jars())
        return 0
    if args.command == "exec":
        return _exec(args.cmd, args.timeout)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker = KafkaBroker(args.work_dir, port=args.port)
    try:
        t0 = time.monotonic()
        broker.start()
        print(broker.bootstrap, flush=True)
        print(
            f"# Kafka {KAFKA_VERSION} up in {time.monotonic() - t0:.1f}s; "
            f"log: {broker.log_file}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + args.max_seconds
        while not stop.is_set() and broker.is_running and time.monotonic() < deadline:
            stop.wait(1.0)
        if not broker.is_running:
            print(f"# broker exited with {broker.returncode}", file=sys.stderr)
            print(broker.log_tail(), file=sys.stderr)
            return 1
    finally:
        broker.close()
    return 0


def _exec(cmd: list[str], timeout: float) -> int:
    """Run ``cmd`` against a broker that lives exactly as long as the command."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("kraft.py exec: give a command after --", file=sys.stderr)
        return 2
    with KafkaBroker() as broker:
        print(f"# Kafka {KAFKA_VERSION} at {broker.bootstrap}", file=sys.stderr, flush=True)
        env = {**os.environ, "KAFKALOG_BOOTSTRAP_SERVERS": broker.bootstrap}
        try:
            return subprocess.run(cmd, env=env, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            print(f"kraft.py exec: {cmd[0]} ran longer than {timeout:.0f}s", file=sys.stderr)
            return 124


if __name__ == "__main__":
    sys.exit(_cli())
