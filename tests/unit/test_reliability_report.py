"""Where the reliability report is written: beside the results, the tracked page only when
asked, and ``--check`` still fails on a loss."""

from __future__ import annotations

from pathlib import Path

import pytest
from reliability import report
from reliability.ledger import (
    DEFAULT_RESULTS_DIR,
    EXPECTED_SCENARIOS,
    ScenarioResult,
    record_result,
)


@pytest.fixture
def results(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    directory = tmp_path / "results"
    monkeypatch.setenv("KAFKALOG_RELIABILITY_DIR", str(directory))
    for name in EXPECTED_SCENARIOS:
        record_result(ScenarioResult(name, 10, 10, 0, 0, 0))
    return directory


def test_the_default_report_goes_beside_the_results_not_into_docs(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = tmp_path / "docs" / "reliability.md"
    monkeypatch.setattr(report, "PUBLISHED", published)
    assert report.main(["--check"]) == 0
    assert (results / "reliability.md").read_text().startswith("# Reliability")
    assert not published.exists()


def test_the_tracked_page_is_written_only_with_publish(
    results: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    published = tmp_path / "docs" / "reliability.md"
    monkeypatch.setattr(report, "PUBLISHED", published)
    assert report.main(["--check", "--publish"]) == 0
    assert "| broker bounce | 10 | 10 | 0 |" in published.read_text()


def test_the_default_results_directory_is_not_tracked() -> None:
    ignored = (report.REPO_ROOT / ".gitignore").read_text(encoding="utf-8").splitlines()
    assert DEFAULT_RESULTS_DIR.relative_to(report.REPO_ROOT).as_posix() + "/" in ignored


def test_check_still_fails_on_a_loss_wherever_the_report_goes(results: Path) -> None:
    record_result(ScenarioResult("kill loop", 10, 9, 1, 0, 0))
    assert report.main(["--check"]) == 1
    assert "kill loop | 10 | 9 | 1 |" in (results / "reliability.md").read_text()
