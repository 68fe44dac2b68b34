"""docs/reference.md must list exactly the handler's options, with their real defaults, and
name exactly the handler's options that PipelineConfig does not take.

The default column is written as a user would pass the value; feeding it through
``HandlerConfig.from_options`` must give the same value the handler uses when the option is
left out. So a renamed option, a new option without a row, or a changed default fails here.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from pathlib import Path

import pytest

from kafkalog import HandlerConfig, PipelineConfig

REFERENCE = Path(__file__).resolve().parents[2] / "docs" / "reference.md"
_ROW = re.compile(r"^\| `(?P<name>[a-z_]+)` \| (?P<type>[^|]+) \| (?P<default>[^|]+) \|"
                  r" (?P<kafka>[^|]+) \| (?P<section>[^|]+) \|$")
_DEFAULT = re.compile(r"^`(?P<literal>[^`]+)`")


def _rows() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        match = _ROW.match(line)
        if match:
            assert match["name"] not in rows, f"option {match['name']} listed twice"
            rows[match["name"]] = {k: v.strip() for k, v in match.groupdict().items()}
    return rows


def test_reference_lists_exactly_the_handler_options() -> None:
    options = {f.name for f in dataclasses.fields(HandlerConfig)}
    documented = set(_rows())
    assert sorted(options - documented) == [], "options missing from docs/reference.md"
    assert sorted(documented - options) == [], "docs/reference.md lists unknown options"


def test_reference_names_the_options_the_pipeline_does_not_take() -> None:
    text = " ".join(REFERENCE.read_text(encoding="utf-8").split())
    match = re.search(r"`kafkalog\.PipelineConfig`.*? except the handler's: (?P<names>[^.]+)\.",
                      text)
    assert match, "docs/reference.md does not say which options PipelineConfig refuses"
    documented = set(re.findall(r"`([a-z_]+)`", match["names"]))
    handler_only = ({f.name for f in dataclasses.fields(HandlerConfig)}
                    - {f.name for f in dataclasses.fields(PipelineConfig)})
    assert documented == handler_only


@pytest.mark.parametrize("name", sorted(_rows()))
def test_reference_default_is_the_real_default(name: str,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKALOG_BOOTSTRAP_SERVERS", raising=False)
    row = _rows()[name]
    assert row["type"] and row["kafka"] and row["section"]
    if name == "topic":
        assert row["default"] == "required"
        return
    match = _DEFAULT.match(row["default"])
    assert match, f"{name}: the default must start with a `literal`, got {row['default']!r}"
    value = ast.literal_eval(match["literal"])
    baseline = HandlerConfig.from_options({"topic": "t"})
    documented = HandlerConfig.from_options({"topic": "t", name: value})
    assert getattr(documented, name) == getattr(baseline, name)


def test_reference_section_links_point_at_existing_headings() -> None:
    config_doc = (REFERENCE.parent / "configuration.md").read_text(encoding="utf-8")
    anchors = {re.sub(r"[^a-z0-9 _-]", "", h.lower()).strip().replace(" ", "-")
               for h in re.findall(r"^#+ (.+)$", config_doc, flags=re.M)}
    for name, row in _rows().items():
        for target in re.findall(r"\((\w[\w.-]*\.md)#([\w-]+)\)", row["section"]):
            page, anchor = target
            if page == "configuration.md":
                assert anchor in anchors, f"{name}: no heading #{anchor} in configuration.md"
