"""The benchmark suite: kafkalog against the alternatives, against a real local broker.

    python -m benchmarks            # the full suite (about 9 minutes); writes the results
    python -m benchmarks --quick    # under a minute: prints the caller-cost and throughput
                                    # ratios, both transports, plain and structured records
    python -m benchmarks --sections caller,throughput
                                    # those two sections in full (about 7 minutes); updates
                                    # them, and the targets, in suite.json and the page
    python -m benchmarks --sections ship --out benchmarks/results/ship.json
                                    # kafkalog ship beside kcat and rsyslog (about a minute)
    python -m benchmarks --sections sink --out benchmarks/results/sink.json
                                    # kafkalog sink into OpenSearch beside parallel_bulk
                                    # (500k records, a few minutes; needs Java 17)

A broker is started for the run (tests/broker/kraft.py) unless ``KAFKALOG_BOOTSTRAP_SERVERS``
names one. The full suite writes ``benchmarks/results/suite.json``, ``docs/performance.md`` and
``docs/img/performance.png``; ``--quick`` writes nothing unless given ``--out``. A run of some
``--sections`` writes its JSON (by default ``benchmarks/results/<sections>.json``); the
sections of it among caller, throughput, latency and memory also replace theirs in
``suite.json``, and the page's tables, targets and chart are made again from that (each section
says when it was measured); ``ship`` and ``sink`` replace their own sections of the page.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kafka

import kafkalog
from benchmarks import caller_cost, latency, memory, report, ship, sink, throughput
from benchmarks.harness import ROOT, Settings, broker, load_average

SECTIONS = ("caller", "throughput", "latency", "memory", "ship", "sink")
# The sections whose results live in suite.json (ship and sink keep their own JSON).
SUITE_KEYS = {"caller": "caller_cost", "throughput": "throughput", "latency": "latency",
              "memory": "memory"}
SUITE = ROOT / "benchmarks" / "results" / "suite.json"


def environment() -> dict[str, Any]:
    """What the figures were measured on."""
    try:
        import confluent_kafka  # noqa: PLC0415 - optional: the suite runs without it

        librdkafka = confluent_kafka.libversion()[0]
    except ImportError:
        librdkafka = None
    return {
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "kafkalog": kafkalog.__version__,
        "kafka-python": kafka.__version__,
        "librdkafka": librdkafka,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }


def sink_section(bootstrap: str) -> dict[str, Any]:
    """The sink section, or why it was skipped (no Java 17, no OpenSearch jars)."""
    try:
        return sink.run(bootstrap)
    except sink.SEARCH_UNAVAILABLE as exc:
        print(f"   skipped: {exc}", flush=True)
        return {"skipped": str(exc)}


def stamped(section: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """Run a section; its results with when it ran, for how long and how busy the machine
    was (the load average before and after: it is shared with other work)."""
    before, started = load_average(), time.monotonic()
    result = section()
    result["measured"] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "seconds": round(time.monotonic() - started),
        "load_average": {"before": before, "after": load_average()},
    }
    return result


def save(path: Path, results: dict[str, Any]) -> None:
    """Write a results JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> int:
    """Run the sections asked for; print each figure as it comes."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="a check of under a minute: kafkalog against NullHandler and the raw "
                             "clients")
    parser.add_argument("--sections", default=",".join(SECTIONS),
                        help=f"comma-separated subset of {','.join(SECTIONS)}")
    parser.add_argument("--out", type=Path, default=None,
                        help="results JSON (default: benchmarks/results/suite.json; "
                             "none with --quick)")
    args = parser.parse_args(argv)
    settings = Settings.make(args.quick)
    wanted = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(wanted) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown sections {unknown}")
    out: dict[str, Any] = {"quick": args.quick, "environment": environment()}
    with broker() as bootstrap:
        if "caller" in wanted:
            print("1. caller-thread cost per log call", flush=True)
            out["caller_cost"] = stamped(lambda: caller_cost.run(
                bootstrap, settings, only_kafkalog=args.quick))
        if "throughput" in wanted:
            print("2./3. throughput and CPU per 100k records", flush=True)
            out["throughput"] = stamped(lambda: throughput.run(bootstrap, settings))
        if "latency" in wanted and not args.quick:
            print("4. latency, log call -> broker, at a steady rate", flush=True)
            out["latency"] = stamped(lambda: latency.run(bootstrap, settings))
        if "ship" in wanted and not args.quick:
            print(f"6. kafkalog ship: catching up on a {ship.file_mb():g} MB nginx log, "
                  "beside kcat and rsyslog", flush=True)
            out["ship"] = ship.run(bootstrap, settings)
        if "sink" in wanted and not args.quick:
            print(f"7. kafkalog sink: {sink.records():,} records into OpenSearch, beside "
                  "parallel_bulk", flush=True)
            out["sink"] = sink_section(bootstrap)
    if "memory" in wanted and not args.quick:
        print("5. peak RSS with the broker down", flush=True)
        out["memory"] = stamped(lambda: memory.run(settings))
    print(report.summary_lines(out), flush=True)
    whole = set(wanted) == set(SECTIONS)
    name = "suite" if whole else "-".join(wanted)
    own = not args.quick and (whole or not set(wanted) <= set(SUITE_KEYS))
    # A run of suite.json's sections alone is kept there (below), not in a JSON of its own.
    target = args.out or (ROOT / "benchmarks" / "results" / f"{name}.json" if own else None)
    if target is not None:
        save(target, out)
    if args.quick:
        return 0
    if whole:
        report.write(out)
        return 0
    keys = [SUITE_KEYS[s] for s in wanted if s in SUITE_KEYS]
    if keys:  # those sections of the last full run replaced, the others kept
        suite = json.loads(SUITE.read_text()) if SUITE.exists() else {"quick": False}
        suite["environment"] = out["environment"]
        suite.update({key: out[key] for key in keys})
        save(SUITE, suite)
        report.write_suite(suite)
    report.write_sections(out)  # ship's and sink's own sections, the rest left as is
    return 0


if __name__ == "__main__":
    sys.exit(main())
