"""The record ledger: which records were sent, which came back from Kafka, and what that means.

Every record an application of the suite logs carries three ``extra=`` fields: ``run`` (one
id per scenario run, so that records of other runs in the same topic are ignored), ``src``
(one writer: a thread of a process) and ``seq`` (0, 1, 2, ... per ``src``), plus the message
key ``k`` (the handler's ``key`` option names it). A record is identified by ``(src, seq)``.

:func:`check_delivery` compares what was sent with what a consumer read back and counts, in
the spirit of Kafka's own system tests:

- **lost**: sent and never consumed; must be 0 in every scenario.
- **duplicates**: extra copies consumed (at-least-once delivery allows them; they are reported).
- **order violations**: per key, the first copy of a record that arrives after a record of the
  same key with a higher ``seq`` (a re-sent copy of an earlier record is a duplicate, not an
  order violation). Consumed records must be given in partition-offset order, as a consumer
  reads them; one key always maps to one partition.
- **unexpected**: consumed records of the run that were never counted as sent (a process
  killed inside a log call may still have queued that record); reported, never a failure.

:func:`record_result` stores a :class:`ScenarioResult` as JSON in the results directory
(``$KAFKALOG_RELIABILITY_DIR``, default ``<repo>/.reliability/``); ``report.py`` turns them
into ``docs/reliability.md``.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import platform
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

RESULTS_ENV = "KAFKALOG_RELIABILITY_DIR"
LONG_ENV = "KAFKALOG_RELIABILITY_LONG"
REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RESULTS_DIR = REPO_ROOT / ".reliability"

# The scenarios of issue 4, in table order. A result belongs to a scenario if its name is the
# scenario's name or starts with it followed by a space (e.g. "prefork server (--preload)").
EXPECTED_SCENARIOS: tuple[str, ...] = (
    "broker bounce",
    "leader failover",
    "network faults",
    "kill loop",
    "prefork server",
    "long outage",
    "bad input storm",
)

RecordId = tuple[str, int]
# How many lost ids a result keeps, to say which ones without bloating the JSON.
LOST_SAMPLE = 20


def long_variant() -> bool:
    """True when the long variants (longer outages, more rounds) were asked for."""
    return os.environ.get(LONG_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def results_dir() -> Path:
    """Where results are written: ``$KAFKALOG_RELIABILITY_DIR`` or ``<repo>/.reliability``."""
    configured = os.environ.get(RESULTS_ENV)
    return Path(configured).expanduser() if configured else DEFAULT_RESULTS_DIR


def scenario_of(name: str) -> str | None:
    """The expected scenario a result name belongs to, or None."""
    for expected in EXPECTED_SCENARIOS:
        if name == expected or name.startswith(expected + " "):
            return expected
    return None


@dataclasses.dataclass(frozen=True)
class ScenarioResult:
    """The figures of one scenario run: what was sent, what came back, how the caller fared."""

    scenario: str  # short name, e.g. "broker bounce"
    sent: int  # records accepted by the handler (log calls made)
    delivered: int  # distinct records consumed back
    lost: int
    duplicates: int  # extra copies consumed
    order_violations: int  # per-key order violations (seq going backwards within a key)
    caller_p99_ms: float | None = None
    caller_max_ms: float | None = None
    peak_rss_mb: float | None = None
    notes: str = ""
    unexpected: int = 0  # consumed records of the run that were not counted as sent
    # Scenario-specific figures (JSON-serialisable), shown below the table in the report.
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def with_(self, **changes: Any) -> ScenarioResult:
        """A copy with ``changes`` (latency, RSS and notes are often known only later)."""
        return dataclasses.replace(self, **changes)

    def describe(self) -> str:
        """One line for assertion messages."""
        text = (
            f"{self.scenario}: sent {self.sent}, delivered {self.delivered}, lost {self.lost}, "
            f"duplicates {self.duplicates}, order violations {self.order_violations}"
        )
        sample = self.details.get("lost_sample")
        return f"{text}; first lost: {sample}" if sample else text

    def to_json(self) -> dict[str, Any]:
        """A JSON-serialisable dict of every field."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ScenarioResult:
        """The inverse of :meth:`to_json`; unknown keys are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


def ids_from_counts(counts: Mapping[str, int]) -> Iterator[RecordId]:
    """Every ``(src, seq)`` of writers that each logged ``seq`` 0..count-1."""
    for src, count in counts.items():
        for seq in range(count):
            yield src, seq


def check_delivery(
    scenario: str,
    sent: Iterable[RecordId],
    consumed: Iterable[Mapping[str, Any]],
    *,
    run: str | None = None,
    key_field: str = "k",
    caller_p99_ms: float | None = None,
    caller_max_ms: float | None = None,
    peak_rss_mb: float | None = None,
    notes: str = "",
    details: Mapping[str, Any] | None = None,
    unexpected_from: Iterable[RecordId] | None = None,
) -> ScenarioResult:
    """Compare the ids ``sent`` with the decoded JSON records ``consumed`` (in offset order).

    Only consumed records whose ``run`` field equals ``run`` count (all, if ``run`` is None).
    The key of a record for the order check is its ``key_field`` value, else its ``src``.
    ``unexpected_from``: the ids that may legitimately come back (default: ``sent``), when
    only some of them are promised (the kill loop promises only acknowledged records).
    """
    expected = set(sent)
    known = expected if unexpected_from is None else set(unexpected_from) | expected
    copies: Counter[RecordId] = Counter()
    highest: dict[Any, int] = {}
    violations = 0
    unidentified = 0
    for record in consumed:
        if run is not None and record.get("run") != run:
            continue
        src, seq = record.get("src"), record.get("seq")
        if not isinstance(src, str) or not isinstance(seq, int):
            unidentified += 1
            continue
        rid = (src, seq)
        copies[rid] += 1
        key = record.get(key_field, src)
        key = key if isinstance(key, (str, int)) else repr(key)
        top = highest.get(key)
        if copies[rid] == 1 and top is not None and seq < top:
            violations += 1
        if top is None or seq > top:
            highest[key] = seq
    delivered = sum(1 for rid in expected if copies[rid])
    lost_ids = sorted(rid for rid in expected if not copies[rid])
    duplicates = sum(n - 1 for n in copies.values() if n > 1)
    unexpected = sum(1 for rid in copies if rid not in known)
    extra: dict[str, Any] = dict(details or {})
    if lost_ids:
        extra["lost_sample"] = [f"{s}#{q}" for s, q in lost_ids[:LOST_SAMPLE]]
    if unidentified:
        extra["unidentified_records"] = unidentified
    return ScenarioResult(
        scenario=scenario,
        sent=len(expected),
        delivered=delivered,
        lost=len(lost_ids),
        duplicates=duplicates,
        order_violations=violations,
        caller_p99_ms=caller_p99_ms,
        caller_max_ms=caller_max_ms,
        peak_rss_mb=peak_rss_mb,
        notes=notes,
        unexpected=unexpected,
        details=extra,
    )


def _slug(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") or "scenario"


def record_result(result: ScenarioResult) -> Path:
    """Write ``result`` as JSON into :func:`results_dir` (one file per scenario name)."""
    directory = results_dir()
    directory.mkdir(parents=True, exist_ok=True)
    data = {
        **result.to_json(),
        "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "long_variant": long_variant(),
        "machine": machine(),
    }
    path = directory / f"{_slug(result.scenario)}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    tmp.replace(path)  # a report never reads half a file
    return path


def load_results(directory: Path | None = None) -> list[dict[str, Any]]:
    """Every stored result (``ScenarioResult`` fields plus ``recorded_at`` etc.), by name."""
    directory = directory or results_dir()
    if not directory.is_dir():
        return []
    rows = []
    for path in sorted(directory.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and "scenario" in data:
            rows.append(data)
    return rows


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
    }


def result_from_summary(
    scenario: str,
    summary: Mapping[str, Any],
    consumed: Iterable[Mapping[str, Any]],
    *,
    notes: str = "",
    details: Mapping[str, Any] | None = None,
) -> ScenarioResult:
    """:func:`check_delivery` for one run of ``app.py``, with its latency and peak RSS."""
    latency = summary.get("latency_ms", {})
    refused = set(summary.get("refused", ()))  # log calls that raised put nothing on the queue
    sent = (rid for rid in ids_from_counts(summary["sent"]) if f"{rid[0]}#{rid[1]}" not in refused)
    return check_delivery(
        scenario,
        sent,
        consumed,
        run=summary["run"],
        caller_p99_ms=latency.get("p99"),
        caller_max_ms=latency.get("max"),
        peak_rss_mb=summary.get("peak_rss_mb"),
        notes=notes,
        details=details,
    )
