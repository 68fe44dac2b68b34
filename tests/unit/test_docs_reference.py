"""docs/reference.md must list exactly the handler's options, with their real defaults, and
name exactly the handler's options that PipelineConfig does not take.

The default column is written as a user would pass the value; feeding it through
``HandlerConfig.from_options`` must give the same value the handler uses when the option is
left out. So a renamed option, a new option without a row, or a changed default fails here.

Every relative link of the README, CONTRIBUTING.md and docs/ must also reach an existing file
and, for ``page.md#anchor``, a heading of that page: a renamed heading or page fails here, not
only in the documentation site's strict build.
"""

from __future__ import annotations

import ast
import dataclasses
import re
import unicodedata
from pathlib import Path

import pytest

from kafkalog import HandlerConfig, PipelineConfig

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference.md"
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


_FENCE = re.compile(r"^```.*?^```", flags=re.M | re.S)
_LINK = re.compile(r"\]\((?P<target>[^)\s]+)\)")


def _slug(heading: str) -> str:
    """A heading's anchor, as the site's ``toc`` extension makes it (its default slugify)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def _anchors(page: Path) -> set[str]:
    text = _FENCE.sub("", page.read_text(encoding="utf-8"))
    return {_slug(h) for h in re.findall(r"^#{1,6} (.+?)#*$", text, flags=re.M)}


def _pages() -> list[Path]:
    return [ROOT / "README.md", ROOT / "CONTRIBUTING.md", *sorted((ROOT / "docs").rglob("*.md"))]


@pytest.mark.parametrize("page", _pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_reach_existing_pages_and_headings(page: Path) -> None:
    broken = []
    for match in _LINK.finditer(_FENCE.sub("", page.read_text(encoding="utf-8"))):
        target = match["target"]
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert broken == []
