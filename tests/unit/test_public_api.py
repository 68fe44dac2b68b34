"""Every import path the docs and examples use keeps working; the old module paths of the
formatter and of redaction still import, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import kafkalog


def test_the_top_level_names() -> None:
    for name in kafkalog.__all__:
        assert getattr(kafkalog, name) is not None, name
    from kafkalog.pipeline import Outcome, Pipeline  # noqa: PLC0415

    assert kafkalog.PipelineConfig is Pipeline(topic="t", spill_dir=None).config.__class__
    assert {o.value for o in Outcome} == {"delivered", "spilled", "dead_lettered", "dropped"}


@pytest.mark.parametrize("module", [
    "kafkalog.context", "kafkalog.metrics", "kafkalog.testing", "kafkalog.contrib",
    "kafkalog.contrib.django", "kafkalog.contrib.flask", "kafkalog.diagnostics",
    "kafkalog.errors", "kafkalog.config", "kafkalog.cli", "kafkalog.pipeline",
    "kafkalog.formatting", "kafkalog.formatting.redaction", "kafkalog.spill",
])
def test_documented_modules_import(module: str) -> None:
    assert importlib.import_module(module) is not None


@pytest.mark.parametrize(("old", "name", "new"), [
    ("kafkalog.formatter", "JsonFormatter", "kafkalog.formatting"),
    ("kafkalog.redaction", "DEFAULT_REDACT_KEYS", "kafkalog.formatting.redaction"),
])
def test_old_module_paths_still_import_with_a_deprecation_warning(
    old: str, name: str, new: str
) -> None:
    code = (
        "import warnings, importlib, kafkalog, kafkalog.formatting\n"  # (kafka-python's own
        "warnings.simplefilter('error', DeprecationWarning)\n"           # warnings come first)
        f"try:\n    importlib.import_module({old!r})\n"
        "except DeprecationWarning as w:\n    print('warned:', w)\n"
        "warnings.simplefilter('ignore', DeprecationWarning)\n"
        f"m = importlib.import_module({old!r})\n"
        f"assert getattr(m, {name!r}) is getattr(importlib.import_module({new!r}), {name!r})\n"
        "print('same object')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    assert f"warned: {old} is deprecated" in out
    assert "same object" in out


def test_python_m_kafkalog_cli_runs() -> None:
    out = subprocess.run([sys.executable, "-m", "kafkalog.cli", "--help"], check=False,
                         capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    for command in ("tail", "check", "spill-info", "replay"):
        assert command in out.stdout
