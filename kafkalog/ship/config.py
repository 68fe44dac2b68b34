"""The file agent's configuration: its inputs, its own options, and the pipeline's.

From the command line (one input) or a TOML file (several). Each input names its paths, topic,
format, multiline rule, key and static fields. The top-level options are the agent's own
(``state_dir``...) and, under the handler's names, the delivery pipeline's (``acks``,
``compression_type``, security, ``spill_*``...), validated by
:class:`~kafkalog.config.PipelineConfig`. A bad file or option raises
:class:`~kafkalog.errors.ConfigError` naming it, at start-up.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kafkalog.config import SCHEMAS, PipelineConfig
from kafkalog.config.files import read_toml
from kafkalog.config.values import (
    at_least,
    boolean,
    mapping,
    one_of,
    optional,
    string,
    topic,
    unknown_option,
)
from kafkalog.errors import ConfigError
from kafkalog.ship.multiline import check_rule
from kafkalog.ship.parsers import FORMATS

READ_FROM = ("head", "tail")
REGISTRY_POLICIES = ("fail", "head", "tail")
# The pipeline options the agent sets differently from the handler, unless the user does:
# the agent can wait for room (a full queue slows reading, nothing is dropped), and its spill
# lives in the state directory.
AGENT_PIPELINE_DEFAULTS: Mapping[str, Any] = {"overflow_policy": "block",
                                               "block_timeout_ms": 1000}


@dataclasses.dataclass(frozen=True)
class InputConfig:
    """One input: files to follow and how their lines become records."""

    name: str
    paths: tuple[str, ...]
    topic: str
    exclude: tuple[str, ...] = ()
    format: str = "raw"
    multiline: str | None = None
    multiline_timeout_ms: int = 5000
    key: str | None = None  # "path", or a field of the record
    static_fields: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    read_from: str = "head"
    schema: str = "default"
    follow_symlinks: bool = False


@dataclasses.dataclass(frozen=True)
class ShipConfig:
    """Everything ``kafkalog ship`` runs with, validated."""

    inputs: tuple[InputConfig, ...]
    state_dir: Path
    pipeline_options: Mapping[str, Any]
    scan_interval_ms: int = 1000
    commit_interval_ms: int = 200
    close_inactive_ms: int = 300_000
    max_open_files: int = 1024
    registry_on_corrupt: str = "fail"
    inotify: bool = True  # where the platform has it; else the globs are only scanned
    source: str = "command line"

    def pipeline_config(self, topic_name: str) -> PipelineConfig:
        """The delivery pipeline's config for ``topic_name`` (one pipeline per topic)."""
        options = {**AGENT_PIPELINE_DEFAULTS, **self.pipeline_options, "topic": topic_name}
        options.setdefault("spill_dir", str(self.state_dir / "spill"))
        return PipelineConfig.from_options(options)


def _multiline(name: str, value: Any) -> str | None:
    if value in (None, "", "none"):
        return None
    rule = string(name, value)
    try:
        check_rule(rule)
    except ValueError as exc:
        raise ConfigError(name, str(exc)) from None
    return rule


_INPUT_CHECKS: dict[str, Any] = {
    "name": string,
    "topic": topic,
    "format": one_of(FORMATS),
    "multiline": _multiline,
    "multiline_timeout_ms": at_least(1),
    "key": optional(string),
    "static_fields": mapping,
    "read_from": one_of(READ_FROM),
    "schema": one_of(SCHEMAS),
    "follow_symlinks": boolean,
}
_AGENT_CHECKS: dict[str, Any] = {
    "scan_interval_ms": at_least(10),
    "commit_interval_ms": at_least(10),
    "close_inactive_ms": at_least(100),
    "max_open_files": at_least(1),
    "registry_on_corrupt": one_of(REGISTRY_POLICIES),
    "inotify": boolean,
}
_INPUT_FIELDS = {f.name for f in dataclasses.fields(InputConfig)}


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, Sequence) or not all(isinstance(p, str) and p for p in items):
        raise ConfigError(name, f"must be a glob or a list of globs, got {value!r}")
    return tuple(items)


def input_config(options: Mapping[str, Any], *, where: str) -> InputConfig:
    """One input from its options; errors name ``where`` (e.g. ``input[2]``) and the option."""
    values: dict[str, Any] = {}
    for name, value in options.items():
        label = f"{where}.{name}"
        if name in ("paths", "exclude"):
            values[name] = _patterns(label, value)
        elif name in _INPUT_CHECKS:
            values[name] = _INPUT_CHECKS[name](label, value)
        else:
            raise unknown_option(label, {f"{where}.{n}" for n in _INPUT_FIELDS})
    for required in ("paths", "topic"):
        if not values.get(required):
            raise ConfigError(f"{where}.{required}", "is required")
    values.setdefault("name", where)
    return InputConfig(**values)


def ship_config(options: Mapping[str, Any], inputs: Sequence[Mapping[str, Any]], *,
                source: str = "command line") -> ShipConfig:
    """Validate the agent's top-level ``options`` and its ``inputs``."""
    rest = dict(options)
    state_dir = rest.pop("state_dir", None)
    if not state_dir:
        raise ConfigError("state_dir", "is required: the directory for the agent's offsets")
    agent = {name: check(name, rest.pop(name)) for name, check in _AGENT_CHECKS.items()
             if name in rest}
    if not inputs:
        raise ConfigError("input", f"{source} defines no input")
    parsed = tuple(input_config(each, where=f"input[{i}]") for i, each in enumerate(inputs))
    names = [i.name for i in parsed]
    if len(set(names)) != len(names):
        raise ConfigError("input.name", f"input names must differ, got {names}")
    config = ShipConfig(inputs=parsed, state_dir=Path(str(state_dir)).expanduser(),
                        pipeline_options=rest, source=source, **agent)
    for each in parsed:  # every topic's pipeline options, checked now rather than at first use
        config.pipeline_config(each.topic)
    return config


def load_toml(path: Path) -> ShipConfig:
    """A :class:`ShipConfig` from a TOML file: top-level options and ``[[input]]`` tables."""
    data = read_toml(path)
    inputs = data.pop("input", [])
    if not isinstance(inputs, list) or not all(isinstance(i, dict) for i in inputs):
        raise ConfigError("input", f"{path}: 'input' must be [[input]] tables")
    return ship_config(data, inputs, source=str(path))
