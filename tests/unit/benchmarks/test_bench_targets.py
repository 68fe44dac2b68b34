"""benchmarks/targets.py: issue 19's verdicts from a run's results (no broker, no timing)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[3]


def _load() -> ModuleType:
    # benchmarks/ is not a test path; load the one module by file (it imports only stdlib).
    spec = importlib.util.spec_from_file_location("bench_targets", ROOT / "benchmarks" /
                                                  "targets.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_targets"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


targets = _load()


def _rate(median: float) -> dict[str, Any]:
    return {"records_per_s": {"median": median}, "cpu_s_per_100k": {"median": 1.0}}


def _results() -> dict[str, Any]:
    published = targets.published()
    lat_kp = published["latency"]["kafkalog (kafka-python)"]
    return {
        "caller_cost": {"results": {
            "NullHandler": {"ratio_to_null": 1.0},
            "kafkalog (kafka-python)": {"ratio_to_null": 1.7},
            "kafkalog (confluent)": {"ratio_to_null": 1.71},
            "NullHandler, structured keyed": {"ratio_to_null": 1.0},
            "kafkalog (confluent), structured keyed": {"ratio_to_null": 2.01},
            "kafkalog (confluent), 10 extras + bound": {"ratio_to_null": 4.9},
        }},
        "throughput": {"configs": {"acks=all, lz4": {
            "results": {
                "log calls alone (NullHandler)": _rate(200_000),
                "kafkalog (confluent)": {**_rate(60_000), "ratio_to_ceiling": 0.3},
                "raw confluent-kafka": _rate(150_000),
                "kafkalog (kafka-python), structured keyed":
                    {**_rate(90_000), "ratio_to_ceiling": 0.45},
                "kafkalog (confluent), structured keyed":
                    {**_rate(80_000), "ratio_to_ceiling": 0.44},
            },
            "throughput_ratios": {"kafkalog (confluent) / raw": 0.4},
        }}},
        "latency": {"results": {
            "kafkalog (kafka-python)": {"p50_ms": lat_kp["p50_ms"],
                                        "p99_ms": lat_kp["p99_ms"] + 0.01},
            "raw kafka-python": {"p50_ms": 1.0, "p99_ms": 99.0},
        }},
        "memory": {"records": 1_000_000,
                   "peak_rss_mib": published["memory"]["peak_rss_mib"] - 1,
                   "growth_mib": published["memory"]["growth_mib"] + 0.1},
    }


def _verdicts() -> dict[str, bool | None]:
    return {row.what: row.met for row in targets.all_rows(_results())}


CELL = "log calls alone (acks=all, lz4)"
MEMORY = "logging 1,000,000 records with the broker down"


@pytest.mark.parametrize(("what", "met"), [
    # Caller cost: each record against its own target; the rich record is only reported.
    ("caller cost, kafkalog (kafka-python) / NullHandler", True),
    ("caller cost, kafkalog (confluent) / NullHandler", False),
    ("caller cost, kafkalog (confluent), structured keyed / NullHandler", False),
    ("caller cost, kafkalog (confluent), 10 extras + bound / NullHandler", None),
    # Throughput: the structured keyed record at least 0.45x; the plain one reported.
    (f"delivered throughput, kafkalog (kafka-python), structured keyed / {CELL}", True),
    (f"delivered throughput, kafkalog (confluent), structured keyed / {CELL}", False),
    (f"delivered throughput, kafkalog (confluent) / {CELL}", None),
    # Memory and latency: no worse than the published figures.
    ("latency p50, kafkalog (kafka-python)", True),
    ("latency p99, kafkalog (kafka-python)", False),
    (f"memory, peak RSS {MEMORY}", True),
    (f"memory, RSS growth {MEMORY}", False),
])
def test_each_target_has_its_verdict(what: str, met: bool | None) -> None:
    assert _verdicts()[what] is met


def test_only_kafkalog_rows_with_a_figure_to_compare_are_targets() -> None:
    verdicts = _verdicts()
    assert not any(what.startswith("caller cost, NullHandler") for what in verdicts)
    assert not any("raw" in what for what in verdicts)  # the raw loops have no target
    # Rows without a ratio to a ceiling (the ceiling itself, the raw loops) are not targets.
    assert sum(what.startswith("delivered throughput") for what in verdicts) == 3


def test_the_table_shows_every_verdict_and_is_left_out_without_figures() -> None:
    lines = targets.markdown(_results())
    assert lines[0] == "## Targets"
    rows = [line for line in lines if line.startswith("| caller cost") or
            line.startswith("| delivered") or line.startswith("| memory") or
            line.startswith("| latency")]
    assert len(rows) == len(targets.all_rows(_results())) == 11
    assert sum(row.endswith("| **not met** |") for row in rows) == 5
    assert targets.markdown({"quick": True}) == []
    printed = targets.summary_lines(_results())
    assert any(line.endswith("NOT MET") for line in printed)
    assert "throughput, kafkalog (confluent) / raw kafka (acks=all, lz4): 0.40x" \
           " (for comparison)" in printed
