"""tests/oldest-deps.txt, the constraints of ``tox -e oldest``, pins each of kafkalog's own
dependencies at the floor pyproject.toml gives it: a floor raised or lowered without the other
would test versions users may not have."""

from __future__ import annotations

import re
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[2]


def floors() -> dict[str, str]:
    """Each unconditional dependency of pyproject.toml -> its ``>=`` floor."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    out = {}
    for requirement in project["dependencies"]:
        if ";" in requirement:
            continue  # tomli, for Python 3.10 only
        match = re.fullmatch(r"([A-Za-z0-9_.-]+)>=([0-9.]+)(?:,<[0-9.]+)?", requirement)
        assert match, f"{requirement!r}: give each dependency a floor (name>=X[,<Y])"
        out[match.group(1).lower()] = match.group(2)
    return out


def pins() -> dict[str, str]:
    out = {}
    for text in (ROOT / "tests" / "oldest-deps.txt").read_text().splitlines():
        pin = text.split("#", 1)[0].strip()
        if pin:
            name, _, version = pin.partition("==")
            out[name.lower()] = version
    return out


def release(version: str) -> tuple[int, ...]:
    """``3.0`` -> ``(3, 0, 0)``: the same release as ``3.0.0``."""
    parts = [int(part) for part in version.split(".")]
    return tuple(parts + [0] * (3 - len(parts)))


def test_every_dependency_is_pinned_at_its_floor() -> None:
    want, got = floors(), pins()
    assert set(got) == set(want)
    for name, floor in want.items():
        assert release(floor) == release(got[name]), (name, floor, got[name])
