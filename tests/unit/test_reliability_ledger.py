"""The reliability suite's record ledger and report (tests/reliability), without a broker."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability import report
from reliability.ledger import (
    EXPECTED_SCENARIOS,
    ScenarioResult,
    check_delivery,
    ids_from_counts,
    load_results,
    record_result,
)


def rec(src: str, seq: int, key: str = "k0", run: str = "r") -> dict[str, object]:
    return {"run": run, "src": src, "seq": seq, "k": key}


def test_every_record_back_once_is_a_clean_result() -> None:
    consumed = [rec("a", 0), rec("a", 1), rec("b", 0, "k1")]
    result = check_delivery("x", ids_from_counts({"a": 2, "b": 1}), consumed, run="r")
    assert (result.sent, result.delivered, result.lost, result.duplicates) == (3, 3, 0, 0)
    assert result.order_violations == 0


def test_missing_records_are_lost_and_named() -> None:
    result = check_delivery("x", ids_from_counts({"a": 3}), [rec("a", 1)], run="r")
    assert result.lost == 2
    assert result.details["lost_sample"] == ["a#0", "a#2"]
    assert "first lost" in result.describe()


def test_a_resent_earlier_record_is_a_duplicate_not_an_order_violation() -> None:
    consumed = [rec("a", 0), rec("a", 1), rec("a", 2), rec("a", 1), rec("a", 2)]
    result = check_delivery("x", ids_from_counts({"a": 3}), consumed, run="r")
    assert result.duplicates == 2
    assert result.order_violations == 0


def test_a_first_copy_after_a_later_record_of_its_key_is_an_order_violation() -> None:
    consumed = [rec("a", 0), rec("a", 2), rec("a", 1), rec("a", 3, key="other"), rec("a", 4)]
    result = check_delivery("x", ids_from_counts({"a": 5}), consumed, run="r")
    assert result.order_violations == 1


def test_other_runs_are_ignored_and_unknown_ids_counted() -> None:
    consumed = [rec("a", 0), rec("a", 1, run="old"), rec("a", 7), {"run": "r", "message": "?"}]
    result = check_delivery("x", ids_from_counts({"a": 1}), consumed, run="r")
    assert (result.lost, result.unexpected) == (0, 1)
    assert result.details["unidentified_records"] == 1


def test_report_fails_on_loss_and_on_a_missing_scenario(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKALOG_RELIABILITY_DIR", str(tmp_path / "results"))
    out = tmp_path / "reliability.md"
    for name in EXPECTED_SCENARIOS:
        record_result(ScenarioResult(name, 10, 10, 0, 1, 0, caller_p99_ms=0.1,
                                     details={"rounds": [{"policy": "always", "lost": 0}]}))
    assert len(load_results()) == len(EXPECTED_SCENARIOS)
    assert report.main(["--check", "--output", str(out)]) == 0
    text = out.read_text()
    assert "| broker bounce | 10 | 10 | 0 | 1 | 0 | 0.10 |" in text
    assert "| policy | lost |" in text

    record_result(ScenarioResult("kill loop", 10, 9, 1, 0, 0))
    assert report.main(["--check", "--output", str(out)]) == 1
    (tmp_path / "results" / "kill-loop.json").unlink()
    assert report.main(["--check", "--output", str(out)]) == 1
    assert report.main(["--output", str(out)]) == 0  # without --check: only the page
