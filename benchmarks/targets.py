"""Issue 19's targets checked against a run's results: the rows of the page's "Targets" table
and the lines CI prints.

Every target is a ratio measured in the same run (so a busy machine slows both sides), except
memory and latency, which are compared with the figures published when the issue was filed
(``benchmarks/published.json``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PUBLISHED = Path(__file__).with_name("published.json")
STRUCTURED = ", structured keyed"  # caller_cost.STRUCTURED (not imported: no kafka needed here)
RICH = ", 10 extras + bound"
CALLER_TARGET = 2.0  # the structured keyed record, per transport
PLAIN_CALLER_TARGET = 1.7  # the plain record; the rich record (10 extras) has none
THROUGHPUT_TARGET = 0.45  # structured keyed records delivered / the same log calls alone


@dataclass(frozen=True)
class Target:
    """One row: what is compared, the goal (None: reported only), this run's figure."""

    what: str
    goal: str
    figure: str
    met: bool | None

    def markdown(self) -> str:
        """The row in the page's table."""
        verdict = "" if self.met is None else ("met" if self.met else "**not met**")
        return f"| {self.what} | {self.goal} | {self.figure} | {verdict} |"

    def line(self) -> str:
        """The row as CI prints it."""
        verdict = "" if self.met is None else (" met" if self.met else " NOT MET")
        return f"{self.what}: {self.figure} (goal {self.goal}){verdict}"


def caller_target(name: str) -> float | None:
    """The caller-cost target of a kafkalog row of section 1, by its record kind."""
    if name.endswith(STRUCTURED):
        return CALLER_TARGET
    if name.endswith(")"):  # "kafkalog (transport)": the plain record
        return PLAIN_CALLER_TARGET
    return None


def caller(out: dict[str, Any]) -> list[Target]:
    """Section 1: each kafkalog row's ratio to NullHandler with the same call."""
    rows = []
    for name, row in out.get("caller_cost", {}).get("results", {}).items():
        if not name.startswith("kafkalog"):
            continue
        goal, ratio = caller_target(name), row["ratio_to_null"]
        rows.append(Target(
            f"caller cost, {name} / NullHandler", "reported" if goal is None else f"<= {goal}x",
            f"{ratio:.2f}x", None if goal is None else ratio <= goal))
    return rows


def throughput(out: dict[str, Any]) -> list[Target]:
    """Sections 2/3: each kafkalog row's delivered rate over the log calls alone; the target
    is on the structured keyed record, the plain one is reported."""
    rows = []
    for label, cfg in out.get("throughput", {}).get("configs", {}).items():
        for name, row in cfg["results"].items():
            ratio = row.get("ratio_to_ceiling")
            if ratio is None:
                continue
            structured = name.endswith(STRUCTURED)
            rows.append(Target(
                f"delivered throughput, {name} / log calls alone ({label})",
                f">= {THROUGHPUT_TARGET}x" if structured else "reported", f"{ratio:.2f}x",
                ratio >= THROUGHPUT_TARGET if structured else None))
    return rows


def published() -> dict[str, Any]:
    """The memory and latency figures published before issue 19."""
    result: dict[str, Any] = json.loads(PUBLISHED.read_text())
    return result


def memory_and_latency(out: dict[str, Any]) -> list[Target]:
    """Memory and latency against the published figures: no worse."""
    before = published()
    rows = []
    mem = out.get("memory")
    if mem:
        for key, what in (("peak_rss_mib", "peak RSS"), ("growth_mib", "RSS growth")):
            old = before["memory"][key]
            rows.append(Target(
                f"memory, {what} logging {mem['records']:,} records with the broker down",
                f"<= {old} MiB", f"{mem[key]} MiB", mem[key] <= old))
    for name, row in out.get("latency", {}).get("results", {}).items():
        old = before["latency"].get(name)
        if old is None:
            continue
        for key in ("p50_ms", "p99_ms"):
            rows.append(Target(f"latency {key[:3]}, {name}", f"<= {old[key]} ms",
                               f"{row[key]:.1f} ms", row[key] <= old[key]))
    return rows


def all_rows(out: dict[str, Any]) -> list[Target]:
    """Every target this run has figures for."""
    return caller(out) + throughput(out) + memory_and_latency(out)


def markdown(out: dict[str, Any]) -> list[str]:
    """The page's "Targets" section (nothing when the run has none of the sections)."""
    rows = all_rows(out)
    if not rows:
        return []
    date = published()["date"]
    return [
        "## Targets",
        "",
        "Issue 19's targets, each with this page's figures. Caller cost and throughput are"
        " ratios measured in the same run; memory and latency are compared with the figures"
        f" published before the issue (the run of {date}, kept in"
        " `benchmarks/published.json`). The caller cost of the rich record (10 extras, nested,"
        " and a bound field) and the delivered throughput of the plain record are reported"
        " without a target.",
        "",
        "| target | goal | this run | |",
        "|---|---:|---:|---|",
        *(row.markdown() for row in rows),
        "",
        "Why, and what is next: [below](#what-the-profile-shows-and-what-is-next).",
        "",
    ]


def summary_lines(out: dict[str, Any]) -> list[str]:
    """The rows as CI prints them, and the plain record's rate over the raw clients'."""
    lines = [row.line() for row in caller(out) + throughput(out)]
    for label, cfg in out.get("throughput", {}).get("configs", {}).items():
        for name, ratio in cfg["throughput_ratios"].items():
            lines.append(f"throughput, {name} kafka ({label}): {ratio:.2f}x (for comparison)")
    return lines + [row.line() for row in memory_and_latency(out)]
