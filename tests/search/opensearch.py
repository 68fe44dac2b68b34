"""A real OpenSearch 2.19.6 server for kafkalog's tests: fetch it, run it, stop it.

The jars come from Maven Central into ``.cache/opensearch-2.19.6/`` (``artifacts``); a node runs
as a plain ``java`` child process on 127.0.0.1 with Java 17 (``runas`` finds it), as an
unprivileged user when we are root (``runas``), in a directory of its own (``node``).

Public API::

    ensure_artifacts() -> Path        download (once) and return the artifacts directory
    OpenSearchNode(...)               one single-node cluster: .url, .start(), .stop(),
                                      .kill(), .restart(down_for=30), .request(), .rss_bytes()
    find_java() -> Java               a Java that runs OpenSearch 2.19 (17, 21, or 11 to 23)

Command line::

    python tests/search/opensearch.py fetch          # download into .cache/, print the dir
    python tests/search/opensearch.py run            # start a node, print its URL, Ctrl-C
    python tests/search/opensearch.py measure        # cold start to green: seconds and RSS
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script (tox's fetch step): make the ``search`` package importable.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from search.artifacts import OPENSEARCH_VERSION, ArtifactError, ensure_artifacts
from search.node import HOST, OpenSearchError, OpenSearchNode, free_port
from search.runas import JavaNotFoundError, find_java

__all__ = [
    "HOST",
    "OPENSEARCH_VERSION",
    "ArtifactError",
    "JavaNotFoundError",
    "OpenSearchError",
    "OpenSearchNode",
    "ensure_artifacts",
    "find_java",
    "free_port",
]


def _run(port: int | None, max_seconds: float) -> int:
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    node = OpenSearchNode(port=port)
    try:
        started = time.monotonic()
        node.start()
        print(node.url, flush=True)
        print(
            f"# OpenSearch {OPENSEARCH_VERSION} green in {time.monotonic() - started:.1f}s; "
            f"log: {node.log_file}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + max_seconds
        while not stop.is_set() and node.is_running and time.monotonic() < deadline:
            stop.wait(1.0)
        if not node.is_running:
            print(f"# OpenSearch exited\n{node.log_tail()}", file=sys.stderr)
            return 1
    finally:
        node.close()
    return 0


def _measure() -> int:
    """Start a fresh node and report the time to green, its RSS, and the time to stop."""
    java = find_java()
    node = OpenSearchNode()
    try:
        started = time.monotonic()
        node.start()
        green = time.monotonic() - started
        cpu = node.cpu_seconds() or 0.0
        rss = node.rss_bytes() or 0
        status, _ = node.request("PUT", "/measure/_doc/1?refresh=true", {"message": "hello"})
        rss_after = node.rss_bytes() or 0
        stopping = time.monotonic()
        node.stop()
        stopped = time.monotonic() - stopping
    finally:
        node.close()
    print(
        f"java {java.major} ({java.path}): green in {green:.1f}s ({cpu:.1f}s of CPU), "
        f"RSS {rss / 2**20:.0f} MiB "
        f"at green and {rss_after / 2**20:.0f} MiB after one document (HTTP {status}), "
        f"stopped in {stopped:.1f}s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """The command line (see the module docstring)."""
    parser = argparse.ArgumentParser(
        prog="opensearch.py", description=f"OpenSearch {OPENSEARCH_VERSION} for kafkalog tests"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the jars into the cache and print the directory")
    run = sub.add_parser("run", help="start one node and keep it up until Ctrl-C/SIGTERM")
    run.add_argument("--port", type=int, default=None, help="HTTP port (default: a free one)")
    run.add_argument("--max-seconds", type=float, default=8 * 3600.0,
                     help="stop by itself after this long (default: 8 h)")  # fmt: skip
    sub.add_parser("measure", help="time a fresh node's start to green and show its RSS")
    args = parser.parse_args(argv)
    if args.command == "fetch":
        print(ensure_artifacts())
        return 0
    if args.command == "measure":
        return _measure()
    return _run(args.port, args.max_seconds)


if __name__ == "__main__":
    sys.exit(main())
