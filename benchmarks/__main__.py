"""The benchmark suite: kafkalog against the alternatives, against a real local broker.

    python -m benchmarks            # the full suite (about 9 minutes); writes the results
    python -m benchmarks --quick    # seconds: prints the caller-cost and throughput ratios
    python -m benchmarks --sections ship --out benchmarks/results/ship.json
                                    # kafkalog ship beside kcat and rsyslog (about a minute)
    python -m benchmarks --sections sink --out benchmarks/results/sink.json
                                    # kafkalog sink into OpenSearch beside parallel_bulk
                                    # (500k records, a few minutes; needs Java 17)

A broker is started for the run (tests/broker/kraft.py) unless ``KAFKALOG_BOOTSTRAP_SERVERS``
names one. The full suite writes ``benchmarks/results/suite.json``, ``docs/performance.md`` and
``docs/img/performance.png``; ``--quick`` writes nothing unless given ``--out``, and a run of
some ``--sections`` writes only its JSON (by default ``benchmarks/results/<sections>.json``)
and, when it includes ``ship`` or ``sink``, that section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

import kafka

import kafkalog
from benchmarks import caller_cost, latency, memory, report, ship, sink, throughput
from benchmarks.harness import ROOT, Settings, broker

SECTIONS = ("caller", "throughput", "latency", "memory", "ship", "sink")


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


def main(argv: list[str] | None = None) -> int:
    """Run the sections asked for; print each figure as it comes."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="seconds-long check: kafkalog vs NullHandler and vs raw kafka-python")
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
            out["caller_cost"] = caller_cost.run(bootstrap, settings, only_kafkalog=args.quick)
        if "throughput" in wanted:
            print("2./3. throughput and CPU per 100k records", flush=True)
            out["throughput"] = throughput.run(bootstrap, settings,
                                               only_kafka_python=args.quick)
        if "latency" in wanted and not args.quick:
            print("4. latency, log call -> broker, at a steady rate", flush=True)
            out["latency"] = latency.run(bootstrap, settings)
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
        out["memory"] = memory.run(settings)
    print(report.summary_lines(out), flush=True)
    whole = set(wanted) == set(SECTIONS)
    name = "suite" if whole else "-".join(wanted)  # a part never replaces the whole's JSON
    target = args.out or (None if args.quick else ROOT / "benchmarks" / "results" / f"{name}.json")
    if target is not None:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(out, indent=2, ensure_ascii=False) + "\n")
        print(f"wrote {target}")
        if not args.quick and whole:
            report.write(out)  # only a whole run replaces the published page
        else:
            report.write_sections(out)  # ship's and sink's own sections, the rest left as is
    return 0


if __name__ == "__main__":
    sys.exit(main())
