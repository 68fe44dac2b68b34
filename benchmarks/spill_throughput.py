"""Spill throughput: one application thread logs while the broker is down, then it comes back.

    python benchmarks/spill_throughput.py [--records 200000] [--runs 3]

Measures, per run: how fast ``emit()`` accepts records (caller side), how fast the worker
writes them to the spill, and how fast the spill is replayed once a real Apache Kafka broker
(started from tests/broker/kraft.py) is up on the port the handler was pointed at. Reports the
median of the runs and writes JSON to benchmarks/results/spill_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from broker.kraft import KafkaBroker  # noqa: E402

from kafkalog import KafkaHandler  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(predicate: Any, timeout_s: float) -> float:
    """Seconds until ``predicate()`` held (polled every 10 ms); raises after ``timeout_s``."""
    started = time.perf_counter()
    while not predicate():
        if time.perf_counter() - started > timeout_s:
            raise TimeoutError("benchmark condition not reached")
        time.sleep(0.01)
    return time.perf_counter() - started


def one_run(records: int, work: Path) -> dict[str, float]:
    port = free_port()
    broker = KafkaBroker(work / "broker", port=port)
    handler = KafkaHandler(
        topic="bench-spill",
        bootstrap_servers=f"127.0.0.1:{port}",
        spill_dir=str(work / "spill"),
        request_timeout_ms=2000,
        close_timeout_ms=60000,
    )
    log = logging.getLogger(f"bench.spill.{port}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    filler = "x" * 40  # with the default fields this makes ~300-byte JSON records
    started = time.perf_counter()
    for i in range(records):
        log.info("record %d %s", i, filler, extra={"user": f"u{i % 100}"})
    emit_s = time.perf_counter() - started
    spill_s = emit_s + wait_until(lambda: handler.stats()["spilled"] >= records, 300)
    size = handler.stats()["spill_bytes"]
    try:
        broker.start()
        replay_s = wait_until(lambda: handler.stats()["replayed"] >= records, 600)
    finally:
        log.removeHandler(handler)
        handler.close()
        broker.close()
    return {
        "emit_records_per_s": records / emit_s,
        "spill_write_records_per_s": records / spill_s,
        "replay_records_per_s": records / replay_s,
        "spill_bytes": float(size),
        "avg_record_bytes": size / records,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    runs = []
    for n in range(args.runs):
        with tempfile.TemporaryDirectory(prefix="kafkalog-bench-") as tmp:
            result = one_run(args.records, Path(tmp))
        runs.append(result)
        print(f"run {n + 1}: " + ", ".join(f"{k}={v:,.0f}" for k, v in result.items()))
    median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
    out = {
        "benchmark": "spill_throughput",
        "records": args.records,
        "runs": runs,
        "median": median,
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
    }
    target = ROOT / "benchmarks" / "results" / "spill_throughput.json"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(out, indent=2) + "\n")
    print("median: " + ", ".join(f"{k}={v:,.0f}" for k, v in median.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
