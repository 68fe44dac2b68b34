"""The ship section's steady-state measures: what the agent costs at rest, and how late a line
reaches Kafka at a steady rate.

- Idle cost: the agent follows ``KAFKALOG_BENCH_SHIP_IDLE_FILES`` (1,000) files that each hold
  one line; once every file is committed (all open, nothing left to read), its CPU time is
  taken over ``KAFKALOG_BENCH_SHIP_IDLE_S`` (30) seconds of quiet: CPU% of one core, and its
  open descriptors.
- Tail latency: a writer appends lines of about 220 bytes to one followed file at
  ``KAFKALOG_BENCH_SHIP_RATE`` (1,000) lines a second for ``KAFKALOG_BENCH_SHIP_LATENCY_S``
  (20) seconds, each line carrying the time it was written; the topic stamps each record with
  the broker's append time (``message.timestamp.type=LogAppendTime``, milliseconds, the same
  host's clock), so a line's latency is its record's append time minus its write time: p50,
  p99 and the maximum.

Both run the agent with its defaults (``scan_interval_ms`` 1000, ``linger_ms`` 5, inotify on
where the platform has it) and the transport given.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition

from benchmarks.harness import ROOT, delete_topics, new_topic
from benchmarks.ship_proc import Child, ShipperError

IDLE_FILES = int(os.environ.get("KAFKALOG_BENCH_SHIP_IDLE_FILES", "1000"))
IDLE_S = float(os.environ.get("KAFKALOG_BENCH_SHIP_IDLE_S", "30"))
RATE = int(os.environ.get("KAFKALOG_BENCH_SHIP_RATE", "1000"))
LATENCY_S = float(os.environ.get("KAFKALOG_BENCH_SHIP_LATENCY_S", "20"))
# How long the agent may take to start and commit what it was given before a measure starts.
SETTLE_TIMEOUT_S = 120.0
POLL_S = 0.05


def _agent(bootstrap: str, topic: str, glob: str, state: Path, transport: str) -> list[str]:
    return [sys.executable, "-m", "kafkalog.cli", "ship", "--path", glob, "--topic", topic,
            "--state-dir", str(state), "--bootstrap-servers", bootstrap, "--format", "raw",
            "--transport", transport]


def _committed(state: Path) -> tuple[int, int]:
    """(files, bytes) the agent's registry shows committed."""
    try:
        states = orjson.loads((state / "registry.json").read_bytes()).get("states", ())
    except (OSError, orjson.JSONDecodeError):
        return 0, 0
    return len(states), sum(int(s["offset"]) for s in states)


def _wait_committed(child: Child, state: Path, files: int, size: int) -> None:
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while _committed(state) != (files, size):
        if child.proc.poll() is not None:
            raise ShipperError(f"exited with {child.proc.returncode}: {child.tail()}")
        if time.monotonic() > deadline:
            raise ShipperError(f"not settled in {SETTLE_TIMEOUT_S:.0f} s "
                               f"({_committed(state)} of {(files, size)}): {child.tail()}")
        time.sleep(POLL_S)


def idle_cost(bootstrap: str, work: Path, transport: str) -> dict[str, Any]:
    """The agent's CPU while it follows ``IDLE_FILES`` quiet files."""
    logs = work / "idle-logs"
    logs.mkdir()
    size = 0
    for n in range(IDLE_FILES):
        line = b"idle file %05d: its only line\n" % n
        (logs / f"f{n:05d}.log").write_bytes(line)
        size += len(line)
    topic = new_topic(bootstrap, "ship-idle", 3)
    state = work / "state-idle"
    try:
        argv = _agent(bootstrap, topic, str(logs / "*.log"), state, transport)
        with Child(argv, work / "agent-idle.out", cwd=ROOT) as child:
            _wait_committed(child, state, IDLE_FILES, size)
            time.sleep(2.0)  # the last registry save and the worker's going idle
            before = child.usage()
            time.sleep(IDLE_S)
            after = child.usage()
            fds = len(os.listdir(f"/proc/{child.proc.pid}/fd"))
    finally:
        delete_topics(bootstrap, [topic])
    cpu_s = after.cpu_s - before.cpu_s
    return {"files": IDLE_FILES, "seconds": IDLE_S, "cpu_s": round(cpu_s, 3),
            "cpu_percent": round(100 * cpu_s / (after.seconds - before.seconds), 2),
            "open_fds": fds, "peak_rss_mib": round(after.peak_rss_mib, 1),
            "transport": transport}


def _write_paced(log: Path, count: int, rate: int) -> None:
    """Append ``count`` lines at ``rate`` a second, each holding its number and write time."""
    pad = b"." * 180
    fd = os.open(log, os.O_WRONLY | os.O_APPEND)
    try:
        start = time.monotonic()
        for n in range(count):
            delay = start + n / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            os.write(fd, b"latency %07d %d %b\n" % (n, time.time_ns(), pad))
    finally:
        os.close(fd)


def _append_times(bootstrap: str, topic: str, count: int) -> dict[int, int]:
    """Line number -> its record's append time (ms), for ``count`` records of ``topic``."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                             group_id=None)
    try:
        tp = TopicPartition(topic, 0)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        out: dict[int, int] = {}
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while len(out) < count:
            if time.monotonic() > deadline:
                raise ShipperError(f"only {len(out)} of {count} records read back")
            for batch in consumer.poll(timeout_ms=500, max_records=100_000).values():
                for record in batch:
                    words = orjson.loads(record.value)["message"].split(" ", 3)
                    if words[0] == "latency":
                        out[int(words[1])] = record.timestamp - int(words[2]) // 1_000_000
        return out
    finally:
        consumer.close()


def tail_latency(bootstrap: str, work: Path, transport: str) -> dict[str, Any]:
    """How long a line appended at a steady rate takes to be appended to the topic."""
    count = int(RATE * LATENCY_S)
    log = work / "latency.log"
    first = b"warm-up line: the agent has started and reached the broker\n"
    log.write_bytes(first)
    topic = new_topic(bootstrap, "ship-latency", 1,
                      config={"message.timestamp.type": "LogAppendTime"})
    state = work / "state-latency"
    try:
        with Child(_agent(bootstrap, topic, str(log), state, transport),
                   work / "agent-latency.out", cwd=ROOT) as child:
            _wait_committed(child, state, 1, len(first))
            before = child.usage()
            _write_paced(log, count, RATE)
            _wait_committed(child, state, 1, log.stat().st_size)
            after = child.usage()
        late = sorted(_append_times(bootstrap, topic, count).values())
    finally:
        delete_topics(bootstrap, [topic])
    cuts = statistics.quantiles(late, n=100, method="inclusive")
    return {"lines": count, "rate": RATE, "p50_ms": round(cuts[49], 1),
            "p99_ms": round(cuts[98], 1), "max_ms": late[-1],
            "cpu_percent": round(100 * (after.cpu_s - before.cpu_s)
                                 / (after.seconds - before.seconds), 2),
            "transport": transport}


def run(bootstrap: str, work: Path, transport: str) -> dict[str, Any]:
    """Both measures (each skipped with the reason if it fails)."""
    out: dict[str, Any] = {}
    for name, measure in (("idle", idle_cost), ("tail_latency", tail_latency)):
        try:
            out[name] = measure(bootstrap, work, transport)
        except ShipperError as exc:
            out[name] = {"skipped": str(exc)[:400]}
        print(f"  {name}: {out[name]}", flush=True)
    return out


def markdown(ship: dict[str, Any]) -> list[str]:
    """The steady-state measures as a paragraph of the ship section (none if not run)."""
    steady = ship.get("steady")
    if not steady:
        return []
    idle, late = steady.get("idle", {}), steady.get("tail_latency", {})
    parts = ["At rest and at a steady rate (`benchmarks/ship_steady.py`; the agent's defaults:"
             " on Linux, inotify tells of new files and appended lines, every open file is"
             " read once a second anyway and the globs are scanned every 10 s; without"
             " inotify, the globs are scanned every second, every open file looked at every"
             " 100 ms, and a file with new lines in the last second every 10 ms):", ""]
    if "cpu_percent" in idle:
        parts.append(f"- Idle cost, {idle['files']:,} open quiet files ({idle['transport']}):"
                     f" {idle['cpu_percent']:.1f}% of one core over {idle['seconds']:g} s"
                     f" ({idle['open_fds']:,} descriptors open, peak RSS"
                     f" {idle['peak_rss_mib']:.0f} MiB).")
    elif idle:
        parts.append(f"- Idle cost: skipped: {idle.get('skipped', '')}")
    if "p50_ms" in late:
        parts.append(f"- Tail latency, a line appended to its record appended in Kafka"
                     f" (LogAppendTime), {late['rate']:,} lines/s for {late['lines']:,} lines"
                     f" ({late['transport']}): p50 {late['p50_ms']:g} ms, p99"
                     f" {late['p99_ms']:g} ms, max {late['max_ms']:,} ms; the agent used"
                     f" {late['cpu_percent']:.1f}% of one core meanwhile.")
    elif late:
        parts.append(f"- Tail latency: skipped: {late.get('skipped', '')}")
    parts.append("")
    return parts
