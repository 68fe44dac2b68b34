"""Caller-thread cost of one enabled log call: kafkalog against NullHandler and QueueHandler.

    python tests/broker/kraft.py exec -- python benchmarks/emit_cost.py [--calls 50000]

Needs ``KAFKALOG_BOOTSTRAP_SERVERS`` (``kraft.py exec`` sets it): the worker runs and delivers
while the loop logs, as in production. Reports the median of 7 runs in µs per call and the
ratio to NullHandler, also for redaction on (the default) and off with no, flat and nested
``extra=`` fields, and for the structured keyed record (``key="uid"``, two flat extras);
writes JSON to benchmarks/results/emit_cost.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.handlers
import os
import queue
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kafkalog import KafkaHandler

ROOT = Path(__file__).resolve().parent.parent
RUNS = 7


# extra= payloads for the redaction cases: flat fields, and a nested request-like structure.
FLAT_EXTRA = {"user_id": "u-42", "amount": 1234, "currency": "EUR"}
KEYED_EXTRA = {"uid": "u-42", "seq": 7}  # with key="uid": what applications log
NESTED_EXTRA = {
    "request": {
        "method": "POST",
        "path": "/pay",
        "headers": {"Accept": "application/json", "Authorization": "Bearer abc", "X-Id": "r1"},
        "query": [{"k": "a", "v": 1}, {"k": "b", "v": 2}],
    },
    "user": {"id": "u-42", "roles": ["buyer", "beta"]},
}


def per_call_us(
    handler: logging.Handler, calls: int, extra: dict[str, Any] | None = None
) -> float:
    log = logging.getLogger(f"bench.emit.{id(handler)}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.handlers[:] = [handler]
    samples = []
    for _ in range(RUNS):
        started = time.perf_counter()
        for i in range(calls):
            log.info("user %s paid %d cents", "u-42", i, extra=extra)
        samples.append((time.perf_counter() - started) / calls * 1e6)
        if isinstance(handler, KafkaHandler):
            handler.flush(60)  # each run starts with an empty queue
    return statistics.median(samples)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--calls", type=int, default=50_000)
    args = parser.parse_args()
    bootstrap = os.environ.get("KAFKALOG_BOOTSTRAP_SERVERS")
    if not bootstrap:
        print("set KAFKALOG_BOOTSTRAP_SERVERS (or run under tests/broker/kraft.py exec)")
        return 2
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-") as tmp:
        cases: dict[str, tuple[Callable[[], logging.Handler], dict[str, Any] | None]] = {
            "NullHandler": (logging.NullHandler, None),
            "QueueHandler": (lambda: logging.handlers.QueueHandler(queue.SimpleQueue()), None),
        }

        def kafka(**options: Any) -> Callable[[], logging.Handler]:
            return lambda: KafkaHandler(
                topic="bench-emit", bootstrap_servers=bootstrap, spill_dir=tmp, **options
            )

        cases["KafkaHandler"] = (kafka(), None)
        # Redaction (on by default) against redact_keys=None, without and with extras.
        for suffix, extra in (("", None), ("+flat", FLAT_EXTRA), ("+nested", NESTED_EXTRA)):
            cases[f"redact{suffix}"] = (kafka(), extra)
            cases[f"no-redact{suffix}"] = (kafka(redact_keys=None), extra)
        # The structured keyed record of issue 19, and NullHandler with the same extras.
        cases["NullHandler+keyed"] = (logging.NullHandler, KEYED_EXTRA)
        cases["redact+keyed"] = (kafka(key="uid"), KEYED_EXTRA)
        results = {}
        for name, (make, extra) in cases.items():
            handler = make()
            results[name] = per_call_us(handler, args.calls, extra)
            handler.close()
    floor = results["NullHandler"]
    out = {name: {"us_per_call": round(us, 3), "ratio_to_null": round(us / floor, 2)}
           for name, us in results.items()}
    for name, row in out.items():
        print(f"{name:22s} {row['us_per_call']:7.2f} µs/call  {row['ratio_to_null']:5.2f}x")
    target = ROOT / "benchmarks" / "results" / "emit_cost.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps({"calls": args.calls, "runs": RUNS, "results": out}, indent=2)
                      + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
