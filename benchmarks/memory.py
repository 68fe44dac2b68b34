"""Section 5: peak RSS while the broker is down and 1M records are logged.

Runs in a child process (``python -m benchmarks.memory --child``) so that its peak RSS is its
own: the handler, with default options, points at a port nobody listens on; the child logs the
records as fast as it can, waits until all are in the spill directory, and reports its resident
memory before the loop and its peak. The bound it is held to: ``queue_max_bytes`` (the queue)
plus two spill batches of ``MAX_BATCH_BYTES`` (the batch the worker is writing out and its
framed copy).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import subprocess
import sys
import tempfile
import time
from typing import Any

import psutil

from benchmarks.harness import FILLER, MESSAGE, ROOT, Settings, free_port, wait_until
from kafkalog import KafkaHandler
from kafkalog.pipeline.counters import MAX_BATCH_BYTES

MIB = 1024 * 1024


def peak_rss() -> int:
    """This process's peak resident memory in bytes.

    Read from ``VmHWM``, which is this process's own. ``ru_maxrss`` is not: Linux carries the
    parent's peak over through fork and exec, so a child of a benchmark process that had just
    held a million queued records reported the parent's 1.2 GiB as its own.
    """
    with open("/proc/self/status", encoding="ascii") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # not Linux: best effort


def child(records: int, spill_dir: str) -> dict[str, Any]:
    """Log ``records`` with the broker down; return RSS figures and the handler's counters."""
    handler = KafkaHandler(topic="bench-memory", bootstrap_servers=f"127.0.0.1:{free_port()}",
                           spill_dir=spill_dir, close_timeout_ms=1000)
    log = logging.getLogger("bench.memory")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    log.info("warm-up")  # starts the worker (and its connection attempts) before the baseline
    baseline = psutil.Process().memory_info().rss
    started = time.perf_counter()
    for i in range(records):
        log.info(MESSAGE, "u-42", i, FILLER, extra={"user": "u-1"})
    logged_s = time.perf_counter() - started
    settled = wait_until(lambda: handler.stats()["spilled"] >= records + 1, 600, 0.05)
    peak = peak_rss()
    stats = handler.stats()
    log.removeHandler(handler)
    handler.close()
    config = handler.config
    bound = config.queue_max_bytes + 2 * MAX_BATCH_BYTES
    return {
        "records": records,
        "all_spilled": settled,
        "logged_records_per_s": round(records / logged_s),
        "baseline_rss_mib": round(baseline / MIB, 1),
        "peak_rss_mib": round(peak / MIB, 1),
        "growth_mib": round((peak - baseline) / MIB, 1),
        "bound_mib": round(bound / MIB, 1),
        "within_bound": peak - baseline <= bound,
        "queue_max_records": config.queue_max_records,
        "queue_max_bytes_mib": round(config.queue_max_bytes / MIB, 1),
        "spill_batch_mib": round(MAX_BATCH_BYTES / MIB, 1),
        "spilled": stats["spilled"],
        "overflowed_to_spill": stats["overflowed_to_spill"],
        "dropped": stats["dropped"],
        "spill_bytes_mib": round(stats.get("spill_bytes", 0) / MIB, 1),
    }


def run(settings: Settings) -> dict[str, Any]:
    """The child's figures (one run: it takes a minute, and the peak is not a timing)."""
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks.memory", "--child",
             str(settings.memory_records), tmp],
            cwd=ROOT, capture_output=True, text=True, timeout=900, check=False,
        )
    if proc.returncode != 0:
        raise RuntimeError(f"memory child failed: {proc.stderr[-2000:]}")
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    print(f"  peak RSS {result['peak_rss_mib']} MiB, growth {result['growth_mib']} MiB "
          f"(bound {result['bound_mib']} MiB) for {result['records']:,} records", flush=True)
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--child", action="store_true", required=True)
    parser.add_argument("records", type=int)
    parser.add_argument("spill_dir")
    args = parser.parse_args()
    print(json.dumps(child(args.records, args.spill_dir)))
