"""Turn the suite's JSON into the lines CI prints, ``docs/performance.md`` and its chart."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from benchmarks import ship_steady, sink_report, targets
from benchmarks.harness import ROOT

DOC = ROOT / "docs" / "performance.md"
CHART = ROOT / "docs" / "img" / "performance.png"
SHIP_HEADING = "## kafkalog ship"
CALLER_THROUGHPUT_MINUTES = "about 7 minutes"


def summary_lines(out: dict[str, Any]) -> str:
    """The headline ratios, one per line: what ``--quick`` prints to the CI log."""
    lines = targets.summary_lines(out)
    for label, entry in out.get("ship", {}).get("ratios", {}).items():
        goal = f" (target {entry['goal']})" if "goal" in entry else ""
        lines.append(f"ship ratio {label}: {entry['ratio']:.2f}x{goal}")
    if "ratio" in out.get("sink", {}):
        lines.append(sink_report.summary_line(out["sink"]))
    return "\n".join(lines)


def measured(section: dict[str, Any]) -> str:
    """When a section ran and how busy the machine was (empty for results from before the
    sections were stamped)."""
    stamp = section.get("measured")
    if not stamp:
        return ""
    load = stamp["load_average"]
    return (f" Measured {stamp['date']} ({stamp['seconds']} s); load average (1, 5, 15 min)"
            f" {', '.join(map(str, load['before']))} before and"
            f" {', '.join(map(str, load['after']))} after.")


def _fmt(value: float, digits: int = 2) -> str:
    return f"{value:,.{digits}f}"


def chart(out: dict[str, Any], path: Path) -> None:
    """Two panels: caller cost per handler, and throughput per implementation and setting."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 6.5))
    caller = out["caller_cost"]["results"]
    names = list(caller)
    left.barh(names, [caller[n]["median"] for n in names],
              color=["tab:blue" if n.startswith("kafkalog") else "tab:gray" for n in names])
    left.invert_yaxis()
    left.set_xlim(0, max(caller[n]["median"] for n in names) * 1.15)  # room for the labels
    left.set_xlabel("µs per log call (median; lower is better)")
    left.set_title("1. Caller-thread cost")
    for i, n in enumerate(names):
        left.text(caller[n]["median"], i, f" {caller[n]['ratio_to_null']:.1f}x", va="center")

    configs = out["throughput"]["configs"]
    impls: list[str] = []
    for cfg in configs.values():
        impls += [i for i in cfg["results"] if i not in impls]
    width = 0.8 / max(1, len(impls))
    for k, impl in enumerate(impls):
        xs = [j + k * width for j in range(len(configs))]
        ys = [cfg["results"].get(impl, {}).get("records_per_s", {}).get("median", 0) / 1000
              for cfg in configs.values()]
        right.bar(xs, ys, width, label=impl)
    right.set_xticks([j + width * (len(impls) - 1) / 2 for j in range(len(configs))])
    right.set_xticklabels(list(configs))
    right.set_ylabel("thousand records/s acknowledged (median; higher is better)")
    right.set_title("2. Sustained throughput, records acknowledged")
    right.legend(fontsize="x-small", loc="upper center", bbox_to_anchor=(0.5, -0.08), ncol=2)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def markdown(out: dict[str, Any]) -> str:
    """``docs/performance.md``: how it was measured, the tables, the chart, the verdicts."""
    env = out["environment"]
    parts = [
        "# Performance",
        "",
        "kafkalog is on the hot path of every application that logs through it, so we measure it"
        " against the alternatives in one run, on one machine, against a real local Apache Kafka"
        " broker (the test broker from `tests/broker/kraft.py`). Every figure is the median of"
        " several runs after a warm-up run; the JSON with every sample is"
        " `benchmarks/results/suite.json`.",
        "",
        "Run it yourself (it starts its own broker; sections 1-5 take about 10 minutes on the"
        " machine below, the ship and sink sections several more):",
        "",
        "```sh",
        "python3 -m venv .venv && .venv/bin/pip install tox && .venv/bin/tox -e bench",
        "```",
        "",
        "`tox -e bench -- --sections caller,throughput` runs sections 1-3 alone and makes their"
        " tables, the targets and the chart again, keeping the other sections' figures"
        f" ({CALLER_THROUGHPUT_MINUTES}); `--sections caller,throughput,latency,memory` every"
        " section that has a target."
        " `tox -e bench -- --quick` takes under a minute and prints the caller-cost and"
        " throughput ratios (both transports, plain and structured records, one acks and"
        " compression setting); CI runs it as a step that never fails the build.",
        "",
        f"Last run {env['date']} on {env['machine']} (shared with other jobs), Python"
        f" {env['python']}, kafkalog {env['kafkalog']}, kafka-python {env['kafka-python']},"
        f" librdkafka {env['librdkafka']}, Kafka 4.3.1 (KRaft, one node). Each section says"
        " when it was measured and how busy the machine was.",
        "",
        "![caller cost and throughput](img/performance.png)",
        "",
    ]
    parts += targets.markdown(out)
    caller = out.get("caller_cost")
    if caller:
        parts += [
            "## 1. Caller-thread cost of one log call",
            "",
            f"A tight loop of {caller['calls_per_run']:,} log calls on one thread, the broker up"
            " and each handler's background thread running. Three records: the plain one,"
            " `log.info(\"user %s paid %d cents for order %s\", ...)`; the structured keyed one"
            " (rows ending in \"structured keyed\"), `log.info(\"user %s did %d\", uid, n,"
            " extra={\"uid\": uid, \"seq\": n})` into kafkalog with `key=\"uid\"` and the"
            " default options; and a rich one (\"10 extras + bound\": ten extras, some nested,"
            " and a field bound with `kafkalog.context`), each beside the same call into a"
            " `NullHandler`. Under the GIL, time the background thread spends in Python is"
            " paid by the loop too, so this is the cost an application sees. The handlers take"
            f" turns: each of {caller['runs']} rounds (after a warm-up round) runs every handler"
            " once, and a ratio is the median of that handler's per-round ratios to"
            " `NullHandler`, so that the machine's drift falls on all of them alike. Targets:"
            f" at most {targets.PLAIN_CALLER_TARGET}x `NullHandler` for the plain record and"
            f" {targets.CALLER_TARGET}x for the structured keyed one (two extras and a key);"
            " none for the rich one (10 extras, nested, and a bound field), with each"
            " transport." + measured(caller),
            "",
            "| handler | µs per call | ratio to NullHandler |",
            "|---|---:|---:|",
        ]
        for name, row in caller["results"].items():
            parts.append(f"| {name} | {_fmt(row['median'])} | {row['ratio_to_null']:.2f}x |")
        for name, why in caller.get("skipped", {}).items():
            parts.append(f"| {name} | skipped: {why} | |")
        parts.append("")
    tp = out.get("throughput")
    if tp:
        parts += [
            "## 2. Sustained throughput and 3. CPU per 100k records",
            "",
            f"{tp['records_per_run']:,} records per run, from the first log call (or `send()`)"
            " to the last acknowledgement (for kafkalog: `handler.flush()` returning, with"
            " every record of the run counted as delivered by `handler.stats()`). CPU is"
            " user+sys of the whole process (every thread: kafkalog's worker, kafka-python's"
            " sender, librdkafka's threads) per 100k records; the broker's CPU is not counted."
            " Two records: the plain one (about"
            f" {tp['avg_value_bytes']} bytes of JSON), into kafkalog with the raw loops' acks,"
            " compression, batch size (16384) and linger (5 ms), the raw loops sending values"
            " that are already JSON bytes; and the structured keyed record of issue 19,"
            " `log.info(\"user %s did %d\", uid, n, extra={\"uid\": uid, \"seq\": n})` with"
            " 1,000 distinct uids, into kafkalog configured by `logging.config.dictConfig` with"
            " `key=\"uid\"` and the default options (only acks and compression set). kafkalog's"
            " queue is made large enough for a run, so that a run measures delivery rather than"
            " the spill. The same log calls into a `NullHandler` (the \"log calls alone\" rows)"
            " deliver nothing: they are the ceiling of any handler inside the application. The"
            " implementations of a cell take turns, one run each in each of"
            f" {tp['runs']} rounds after a warm-up run of a tenth of the records, and a kafkalog"
            " row's ratio to its ceiling is the median of its per-round ratios to the log calls"
            " alone with the same record; target for the structured keyed record: at least"
            f" {targets.THROUGHPUT_TARGET}x. The CPU column beside it divides the log calls"
            " alone's CPU per record by kafkalog's (medians): on a machine shared with other"
            " work it moves less than the rates do. The ratio to raw compares medians."
            + measured(tp),
            "",
            "| acks, compression | implementation | records/s | CPU s per 100k |"
            " ratio to log calls alone | the same in CPU | ratio to raw |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for label, cfg in tp["configs"].items():
            for impl, row in cfg["results"].items():
                raw = next((f"{value:.2f}x" for key, value in cfg["throughput_ratios"].items()
                            if key == f"{impl} / raw"), "")
                if impl == "log calls alone (NullHandler)":
                    raw = ", ".join(f"{value:.2f}x {key.rsplit('/ ', 1)[1]}"
                                    for key, value in cfg.get("ceiling_ratios", {}).items())
                ceiling, cpu = row.get("ratio_to_ceiling"), ""
                if ceiling is not None:
                    kind = targets.STRUCTURED if impl.endswith(targets.STRUCTURED) else ""
                    alone = cfg["results"]["log calls alone (NullHandler)" + kind]
                    share = alone["cpu_s_per_100k"]["median"] / row["cpu_s_per_100k"]["median"]
                    cpu = f"{share:.2f}x"
                parts.append(
                    f"| {label} | {impl} | {_fmt(row['records_per_s']['median'], 0)} |"
                    f" {_fmt(row['cpu_s_per_100k']['median'])} |"
                    f" {'' if ceiling is None else f'{ceiling:.2f}x'} | {cpu} | {raw} |")
        for name, why in tp.get("skipped", {}).items():
            parts.append(f"| | {name} | skipped: {why} | | | | |")
        parts.append("")
    lat = out.get("latency")
    if lat:
        parts += [
            "## 4. Latency from the log call to the broker",
            "",
            f"{lat['rate_per_s']:,} records/s, steady, for {lat['seconds_per_run']:.0f} s per"
            f" run, acks={lat['acks']}; the median of {lat['runs']} runs' percentiles. The"
            " topic stamps records with the broker's append time (millisecond resolution);"
            " latency is that minus the time of the log call (or of `send()`)." + measured(lat),
            "",
            "| implementation | p50 ms | p99 ms |",
            "|---|---:|---:|",
        ]
        for impl, row in lat["results"].items():
            parts.append(f"| {impl} | {row['p50_ms']:.1f} | {row['p99_ms']:.1f} |")
        for name, why in lat.get("skipped", {}).items():
            parts.append(f"| {name} | skipped: {why} | |")
        parts.append("")
    mem = out.get("memory")
    if mem:
        verdict = "within" if mem["within_bound"] else "**above**"
        parts += [
            "## 5. Memory with the broker down",
            "",
            f"{mem['records']:,} records logged as fast as possible with default options while"
            " nothing listens on the bootstrap port; the records go to the spill directory"
            f" ({mem['spill_bytes_mib']} MiB of it)." + measured(mem),
            "",
            "| | MiB |",
            "|---|---:|",
            f"| RSS before the loop | {mem['baseline_rss_mib']} |",
            f"| peak RSS | {mem['peak_rss_mib']} |",
            f"| growth | {mem['growth_mib']} |",
            f"| bound: `queue_max_bytes` ({mem['queue_max_bytes_mib']}) + 2 spill batches"
            f" ({mem['spill_batch_mib']} each) | {mem['bound_mib']} |",
            "",
            f"The growth is {verdict} the bound. (`queue_max_records`, default"
            f" {mem['queue_max_records']:,}, is usually reached before `queue_max_bytes`.)",
            "",
        ]
    if out.get("ship"):
        parts += ship_markdown(out)
    if out.get("sink"):
        parts += sink_report.markdown(out)
    return "\n".join(parts)


def ship_markdown(out: dict[str, Any]) -> list[str]:
    """The ``## kafkalog ship`` section: the catch-up table and its ratios to the peers."""
    ship, env = out["ship"], out["environment"]
    f, peers = ship["file"], ship.get("peers", {})
    load = ship["load_average"]
    parts = [
        SHIP_HEADING,
        "",
        f"`kafkalog ship` catching up on a {f['bytes'] / 1e6:,.0f} MB nginx access log"
        f" ({f['lines']:,} lines of {f['avg_line_bytes']} bytes in the combined format, made"
        " by `benchmarks/ship_log.py`), beside kcat and rsyslog. Each shipper ships the whole"
        f" file to a fresh {ship['partitions']}-partition topic of the same broker; after a"
        " discarded warm-up run, one run each (kcat: the median of three, its runs are short"
        " and noisy), interleaved so that the machine's drift falls on both sides of each"
        " ratio. `tox -e bench -- --sections"
        " ship --out benchmarks/results/ship.json` runs this section alone (it is not part of"
        " `--quick`); `KAFKALOG_BENCH_SHIP_MB` changes the size.",
        "",
        "- The agent: `kafkalog ship --path FILE --format raw|nginx --transport T`, otherwise"
        " its defaults (acks=all, no compression, linger 5 ms), timed from its start until its"
        " registry shows the whole file committed, every line acknowledged (the registry is"
        " written every 200 ms, so the end is seen up to that late).",
        "- kcat: `kcat -P -l FILE` (librdkafka's defaults, no parsing: the ceiling), timed"
        " until it exits after its last acknowledgement.",
        "- rsyslog: a foreground `rsyslogd` with `imfile` (`addMetadata` off) and `omkafka`,"
        " raw (`%msg%`) or"
        " parsed by `mmnormalize` with a liblognorm rule for the combined format (ten fields,"
        " `status` and `bytes` as numbers; the record is `$!all-json`, those ten fields alone:"
        " the peer the issue's targets were set against, lighter than the agent's record,"
        " which also carries the message, host, path, inode, offset and timestamp), timed"
        " until the topic holds every line.",
        "",
        "Every rate includes the shipper's start-up. CPU is the shipper's user+sys time, every"
        " thread, per GB (10^9 bytes) of log; the broker's CPU is not counted. Peak RSS is the"
        f" shipper's `VmHWM`. kcat {peers.get('kcat', '?')} and rsyslog"
        f" {peers.get('rsyslog', '?')} use the system's librdkafka"
        f" {peers.get('librdkafka (system)', '?')}; the agent's confluent transport uses"
        f" librdkafka {env['librdkafka']}. Measured {env['date']}; load average (1, 5, 15 min)"
        f" {', '.join(map(str, load['before']))} before the section and"
        f" {', '.join(map(str, load['after']))} after.",
        "",
        "| shipper | MB/s | lines/s | CPU s per GB | peak RSS MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for name, r in ship["results"].items():
        runs = ""
        if "lines_per_s_samples" in r:
            runs = " (runs: " + ", ".join(f"{x:,}" for x in r["lines_per_s_samples"]) + ")"
        parts.append(f"| {name} | {_fmt(r['mb_per_s'], 1)} | {_fmt(r['lines_per_s'], 0)}{runs}"
                     f" | {_fmt(r['cpu_s_per_gb'], 1)} | {_fmt(r['peak_rss_mib'], 0)} |")
    for name, why in ship.get("skipped", {}).items():
        parts.append(f"| {name} | skipped: {why[:300]} | | | |")
    parts += ["", "Targets from the issue, with the confluent transport (kafka-python's ratios"
              " for comparison):", "", "| ratio | goal | this run | |", "|---|---:|---:|---|"]
    for label, e in ship["ratios"].items():
        verdict = ("met" if e["met"] else "not met") if "goal" in e else ""
        parts.append(f"| {label} | {e.get('goal', '')} | {e['ratio']:.2f}x | {verdict} |")
    parts.append("")
    parts += ship_steady.markdown(ship)
    return parts


def write_sections(out: dict[str, Any]) -> None:
    """Put this run's own sections (``## kafkalog ship``, ``## kafkalog sink``) into
    ``docs/performance.md``, leaving the rest of the page as it is."""
    if out.get("ship"):
        _write_part(SHIP_HEADING, ship_markdown(out))
    if out.get("sink"):
        _write_part(sink_report.HEADING, sink_report.markdown(out))


def _write_part(heading: str, lines: list[str]) -> None:
    """Replace the section under ``heading`` in place, else put it before the hand-written
    findings, else at the end."""
    text = DOC.read_text() if DOC.exists() else ""
    section = "\n".join(lines) + "\n"
    start = text.find(heading + "\n")
    if start >= 0:
        end = text.find("\n## ", start)
        text = text[:start] + section + (text[end + 1:] if end >= 0 else "")
    else:
        findings = ANALYSIS.read_text().split("\n", 1)[0] if ANALYSIS.exists() else ""
        at = text.find(findings + "\n") if findings else -1
        head, tail = (text.rstrip("\n") + "\n\n", "") if at < 0 else (text[:at], text[at:])
        text = head + section + tail
    DOC.write_text(text)
    print(f"wrote the {heading[3:]} section of {DOC}")


def write_suite(suite: dict[str, Any]) -> None:
    """Make the page's head, targets, sections 1-5 and chart again from ``suite.json``, keep
    its ship and sink sections as they are, and append the findings (``analysis.md``)."""
    text = DOC.read_text() if DOC.exists() else ""
    findings = ANALYSIS.read_text()
    end = text.find(findings.split("\n", 1)[0] + "\n")
    text = text if end < 0 else text[:end]
    starts = [at for at in (text.find(SHIP_HEADING + "\n"), text.find(sink_report.HEADING + "\n"))
              if at >= 0]
    kept = text[min(starts):].rstrip("\n") + "\n\n" if starts else ""
    core = {key: value for key, value in suite.items() if key not in ("ship", "sink")}
    if "caller_cost" in core and "throughput" in core:
        chart(core, CHART)
    DOC.write_text(markdown(core) + "\n" + kept + findings)
    print(f"wrote {DOC} (ship and sink sections kept)")


def write(out: dict[str, Any]) -> None:
    """Write ``docs/performance.md`` and its chart from a full run's results."""
    if "caller_cost" in out and "throughput" in out:
        chart(out, CHART)
    DOC.write_text(markdown(out) + "\n" + ANALYSIS.read_text())
    print(f"wrote {DOC} and {CHART}")


# Hand-written findings appended to the generated tables (kept apart so a re-run keeps them).
ANALYSIS = Path(__file__).with_name("analysis.md")
