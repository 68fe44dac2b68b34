"""Section 6: ``kafkalog ship`` catching up on a large nginx access log, beside kcat and rsyslog.

A realistic nginx combined log (``KAFKALOG_BENCH_SHIP_MB`` MB, default 200; lines of about 220
bytes) is shipped whole by each shipper in turn, each to a fresh topic of the same broker:

- the agent (``python -m kafkalog.cli ship``, a child process), raw and parsed
  (``--format nginx``), with the confluent transport and with kafka-python, timed from its
  start until its registry shows the whole file committed (offset == size: every line
  acknowledged by Kafka). The registry is written every ``commit_interval_ms`` (200 ms), so a
  run's end is seen up to that late;
- ``kcat -P -l`` three times (its runs are short and noisy; the median counts);
- rsyslog ``imfile`` + ``omkafka``, raw (``%msg%``) and parsed with ``mmnormalize``, timed from
  its start until the topic holds every line.

After one discarded warm-up run (kcat's, else the agent's), the runs are interleaved (kcat,
the agent raw, rsyslog raw, kcat, the agent parsed, rsyslog parsed, kcat, then kafka-python)
so that the machine's drift falls on both sides of each ratio. Every rate includes the
shipper's start-up. CPU is the child's user+sys, every thread; peak RSS its ``VmHWM``. Then
the agent's idle cost and tail latency (:mod:`benchmarks.ship_steady`). Not part of
``--quick``.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.caller_cost import kafkalog_transports
from benchmarks.harness import ROOT, Settings, delete_topics, new_topic
from benchmarks.ship_log import write_access_log
from benchmarks.ship_peers import RSYSLOG_MODES, missing, run_kcat, run_rsyslog, versions
from benchmarks.ship_proc import Child, ShipperError, TopicCounter, Usage, registry_offset
from benchmarks.ship_steady import run as run_steady

ENV_MB = "KAFKALOG_BENCH_SHIP_MB"
# "0" leaves out the idle cost and the tail latency (about a minute together).
ENV_STEADY = "KAFKALOG_BENCH_SHIP_STEADY"
DEFAULT_MB = 200.0
PARTITIONS = 3
KCAT_RUNS = 3
KCAT = "kcat -P"
# The targets, as ratios from one run, with the confluent transport.
RAW_TARGET = 0.7  # agent raw lines/s / kcat's (median of three)
PARSED_TARGET = 1.5  # agent nginx lines/s / rsyslog mmnormalize's
CPU_TARGET = 1.0  # agent CPU per GB / rsyslog's in the same mode (at most)


def agent_name(mode: str, transport: str) -> str:
    """The result's name of the agent shipping ``mode`` (raw or nginx) over ``transport``."""
    return f"kafkalog ship {mode} ({transport})"


def file_mb() -> float:
    """The size of the log to ship, in MB (10^6 bytes)."""
    return float(os.environ.get(ENV_MB, DEFAULT_MB))


def row(usage: Usage, size: int, lines: int) -> dict[str, Any]:
    """The figures of one run that shipped ``size`` bytes in ``lines`` lines."""
    return {
        "seconds": round(usage.seconds, 3),
        "mb_per_s": round(size / 1e6 / usage.seconds, 1),
        "lines_per_s": round(lines / usage.seconds),
        "cpu_s": round(usage.cpu_s, 2),
        "cpu_s_per_gb": round(usage.cpu_s / (size / 1e9), 2),
        "peak_rss_mib": round(usage.peak_rss_mib, 1),
    }


def run_agent(bootstrap: str, topic: str, log: Path, *, size: int, fmt: str, transport: str,
              work: Path, timeout_s: float) -> Usage:
    """The agent shipping ``log`` from its start until the registry commits ``size``."""
    state = work / f"state-{topic}"
    argv = [sys.executable, "-m", "kafkalog.cli", "ship", "--path", str(log), "--topic", topic,
            "--state-dir", str(state), "--bootstrap-servers", bootstrap, "--format", fmt,
            "--transport", transport]
    with Child(argv, work / f"agent-{topic}.out", cwd=ROOT) as child:
        return child.wait_for(lambda: registry_offset(state, log), size, timeout_s)


class Section:
    """One run of the section: the log, the broker, and the results so far."""

    def __init__(self, bootstrap: str, work: Path, log: Path, size: int, lines: int) -> None:
        self.bootstrap = bootstrap
        self.work = work
        self.log = log
        self.size = size
        self.lines = lines
        self.timeout_s = max(120.0, size / 1e6 * 3)  # 3 s a MB: ten times kafka-python's pace
        self.counter = TopicCounter(bootstrap)
        self.results: dict[str, Any] = {}
        self.skipped: dict[str, str] = {}
        self.kcat: list[dict[str, Any]] = []

    def one(self, name: str, kind: str, arg: str = "", transport: str = "") -> None:
        """Run shipper ``name`` once on a fresh topic; record its row or why it is skipped."""
        if name in self.skipped:
            return
        topic = new_topic(self.bootstrap, "ship", PARTITIONS)
        try:
            if kind == "agent":
                usage = run_agent(self.bootstrap, topic, self.log, size=self.size, fmt=arg,
                                  transport=transport, work=self.work, timeout_s=self.timeout_s)
            elif kind == "kcat":
                usage = run_kcat(self.bootstrap, topic, self.log, self.work, self.timeout_s)
            else:
                usage = run_rsyslog(arg, self.bootstrap, topic, log=self.log, lines=self.lines,
                                    work=self.work / f"rsyslog-{topic}", counter=self.counter,
                                    partitions=PARTITIONS, timeout_s=self.timeout_s)
            result = row(usage, self.size, self.lines)
            result["records_in_topic"] = self.counter.count(topic, PARTITIONS)
        except ShipperError as exc:
            self.skipped[name] = f"{'failed' if kind == 'agent' else 'did not run'}: {exc}"
            print(f"  {name}: {self.skipped[name][:400]}", flush=True)
            return
        finally:
            delete_topics(self.bootstrap, [topic])
        if result["records_in_topic"] < self.lines:
            self.skipped[name] = (f"failed: {result['records_in_topic']:,} of {self.lines:,} "
                                  "lines in the topic")
            print(f"  {name}: {self.skipped[name]}", flush=True)
            return
        print(f"  {name:36s} {result['mb_per_s']:6.1f} MB/s {result['lines_per_s']:>9,} "
              f"lines/s {result['cpu_s_per_gb']:6.2f} CPU s/GB {result['peak_rss_mib']:6.1f} "
              f"MiB peak", flush=True)
        if kind == "kcat":
            self.kcat.append(result)
        else:
            self.results[name] = result

    def warm_up(self, transports: dict[str, str | None]) -> None:
        """Ship the file once, discarded, so that the broker (a fresh JVM when this section
        runs alone) is warm for the first measured run: with kcat, else with the agent."""
        topic = new_topic(self.bootstrap, "ship-warmup", PARTITIONS)
        try:
            if KCAT not in self.skipped:
                run_kcat(self.bootstrap, topic, self.log, self.work, self.timeout_s)
            else:
                transport = next(t for t, why in transports.items() if why is None)
                run_agent(self.bootstrap, topic, self.log, size=self.size, fmt="raw",
                          transport=transport, work=self.work, timeout_s=self.timeout_s)
            print("  (warm-up run done)", flush=True)
        except ShipperError as exc:
            print(f"  warm-up failed (measuring anyway): {str(exc)[:300]}", flush=True)
        finally:
            delete_topics(self.bootstrap, [topic])

    def kcat_row(self) -> None:
        """kcat's row: the run with the median rate, and every run's rate."""
        if not self.kcat:
            return
        ordered = sorted(self.kcat, key=lambda r: r["lines_per_s"])
        median = dict(ordered[(len(ordered) - 1) // 2])
        median["runs"] = len(ordered)
        median["lines_per_s_samples"] = [r["lines_per_s"] for r in self.kcat]
        median["lines_per_s_median"] = round(statistics.median(median["lines_per_s_samples"]))
        self.results[KCAT] = median


def ratios(results: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Each transport's ratios to the peers; the goal where the issue sets one."""
    out: dict[str, dict[str, Any]] = {}
    kcat = results.get(KCAT)
    rs_raw = results.get(RSYSLOG_MODES["raw"])
    rs_parsed = results.get(RSYSLOG_MODES["mmnormalize"])
    for transport in ("confluent", "kafka-python"):
        raw = results.get(agent_name("raw", transport))
        parsed = results.get(agent_name("nginx", transport))
        goal = transport == "confluent"
        pairs = [
            (raw, kcat, f"raw ({transport}) / kcat, lines/s", "lines_per_s", RAW_TARGET),
            (parsed, rs_parsed, f"nginx ({transport}) / rsyslog mmnormalize, lines/s",
             "lines_per_s", PARSED_TARGET),
            (raw, rs_raw, f"raw ({transport}) / rsyslog raw, CPU s per GB", "cpu_s_per_gb",
             CPU_TARGET),
            (parsed, rs_parsed, f"nginx ({transport}) / rsyslog mmnormalize, CPU s per GB",
             "cpu_s_per_gb", CPU_TARGET),
        ]
        for mine, theirs, label, key, target in pairs:
            if mine is None or theirs is None:
                continue
            value = round(mine[key] / theirs[key], 2)
            entry: dict[str, Any] = {"ratio": value}
            if goal:
                lower_is_better = key == "cpu_s_per_gb"
                entry["goal"] = f"{'<=' if lower_is_better else '>='} {target}x"
                entry["met"] = value <= target if lower_is_better else value >= target
            out[label] = entry
    return out


def run(bootstrap: str, settings: Settings) -> dict[str, Any]:
    """The whole section: generate the log, run every shipper, compute the ratios."""
    del settings  # one run of each (kcat three): a run of 200 MB is its own repetition
    load_before = os.getloadavg()
    transports = kafkalog_transports()
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-ship-") as tmp:
        work = Path(tmp)
        log = work / "access.log"
        size, lines = write_access_log(log, int(file_mb() * 1e6))
        print(f"  {size / 1e6:,.0f} MB nginx access log, {lines:,} lines of "
              f"{size / lines:.0f} bytes", flush=True)
        section = Section(bootstrap, work, log, size, lines)
        for name, why in (("kcat", missing("kcat", "kcat")),
                          ("rsyslog", missing("rsyslogd", "rsyslog-kafka"))):
            if why:
                print(f"  {name}: skipped: {why}", flush=True)
                for each in ([KCAT] if name == "kcat" else list(RSYSLOG_MODES.values())):
                    section.skipped[each] = why
        for transport, why in transports.items():
            if why:
                print(f"  kafkalog ship ({transport}): skipped: {why}", flush=True)
                for mode in ("raw", "nginx"):
                    section.skipped[agent_name(mode, transport)] = why
        try:
            section.warm_up(transports)
            plan = [
                (KCAT, "kcat", "", ""),
                (agent_name("raw", "confluent"), "agent", "raw", "confluent"),
                (RSYSLOG_MODES["raw"], "rsyslog", "raw", ""),
                (KCAT, "kcat", "", ""),
                (agent_name("nginx", "confluent"), "agent", "nginx", "confluent"),
                (RSYSLOG_MODES["mmnormalize"], "rsyslog", "mmnormalize", ""),
                (KCAT, "kcat", "", ""),
                (agent_name("raw", "kafka-python"), "agent", "raw", "kafka-python"),
                (agent_name("nginx", "kafka-python"), "agent", "nginx", "kafka-python"),
            ]
            for name, kind, arg, transport in plan:
                section.one(name, kind, arg, transport)
            steady: dict[str, Any] = {}
            usable = [t for t, why in transports.items() if why is None]
            if usable and os.environ.get(ENV_STEADY, "1") != "0":
                # With the confluent transport, the one the targets are set for, if it is here.
                steady = run_steady(bootstrap, work,
                                    "confluent" if "confluent" in usable else usable[0])
        finally:
            section.counter.close()
        section.kcat_row()
    order = [KCAT, agent_name("raw", "confluent"), RSYSLOG_MODES["raw"],
             agent_name("nginx", "confluent"), RSYSLOG_MODES["mmnormalize"],
             agent_name("raw", "kafka-python"), agent_name("nginx", "kafka-python")]
    results = {name: section.results[name] for name in order if name in section.results}
    targets = ratios(results)
    for label, entry in targets.items():
        goal = f" (target {entry['goal']}: {'met' if entry['met'] else 'not met'})" \
            if "goal" in entry else ""
        print(f"  ratio {label}: {entry['ratio']:.2f}x{goal}", flush=True)
    return {
        "file": {"bytes": size, "lines": lines, "avg_line_bytes": round(size / lines)},
        "partitions": PARTITIONS,
        "peers": versions(),
        "results": results,
        "ratios": targets,
        "steady": steady,
        "skipped": section.skipped,
        "load_average": {"before": [round(x, 2) for x in load_before],
                         "after": [round(x, 2) for x in os.getloadavg()]},
    }
