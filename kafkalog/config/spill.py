"""The spill store's options: where records Kafka can not take yet go, and how they are kept.

``dead_letter_topic`` is here too: it is where the records Kafka refuses for good go instead.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path
from typing import Any

import platformdirs

from kafkalog.config.values import Validator, at_least, one_of, optional, path_part, topic
from kafkalog.errors import ConfigError

# spill_dir's default: a per-application directory chosen with platformdirs.
AUTO_SPILL_DIR = "auto"
SPILL_FSYNC_POLICIES: tuple[str, ...] = ("always", "interval", "never")
SPILL_FULL_POLICIES: tuple[str, ...] = ("drop_oldest", "drop_newest")


def spill_path(spill_dir: str | None, app_name: str | None, topic: str) -> Path | None:
    """The directory the spill store of ``topic`` uses, or None if spilling is off."""
    if spill_dir is None:
        return None
    if spill_dir != AUTO_SPILL_DIR:
        return Path(spill_dir).expanduser()
    app = app_name or default_app_name()
    return Path(platformdirs.user_state_dir("kafkalog")) / app / topic


def default_app_name() -> str:
    """The running program's name, for the default spill directory."""
    argv0 = sys.argv[0] if sys.argv and sys.argv[0] else ""
    path = Path(argv0) if argv0 not in ("", "-", "-c", "-m") else None
    name = path.stem if path is not None else ""
    if path is not None and name == "__main__":  # python -m package: the package's name
        name = path.parent.name
    name = re.sub(r"[^A-Za-z0-9._-]", "_", name).strip("._")
    return name or "python"


def _spill_dir(name: str, value: Any) -> str | None:
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none", "off")):
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    if not isinstance(value, str):
        raise ConfigError(name, f"must be a directory path or None, got {value!r}")
    return value


OPTIONS: dict[str, Validator] = {
    "spill_dir": _spill_dir,
    "app_name": optional(path_part, unset=(None,)),
    "spill_fsync": one_of(SPILL_FSYNC_POLICIES),
    "spill_fsync_interval_ms": at_least(1),
    "spill_max_bytes": at_least(1),
    "spill_segment_bytes": at_least(4096),
    "spill_full_policy": one_of(SPILL_FULL_POLICIES),
    "spill_after_ms": at_least(0),
    "dead_letter_topic": optional(topic),
}
