"""The spill store's options: where records Kafka can not take yet go, and how they are kept.

``dead_letter_topic`` is here too: it is where the records Kafka refuses for good go instead.
"""

from __future__ import annotations

import os
import re
import stat
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


def check_spill_path(path: Path | None) -> None:
    """Raise :class:`ConfigError` naming ``spill_dir`` and ``path`` if the spill store could
    not write there: it is not a directory, or this process may not create files in it (or,
    if it does not exist yet, create it in its nearest existing parent).

    Checked when a pipeline is built, not on the first spill: by then Kafka is down, and the
    records that were to be kept are lost. Nothing is created here.
    """
    if path is None:
        return
    for existing in (path, *path.parents):
        try:
            st = existing.stat()
        except (FileNotFoundError, NotADirectoryError):
            continue
        except OSError as exc:
            raise ConfigError("spill_dir", f"cannot use {path}: {exc}") from exc
        if not stat.S_ISDIR(st.st_mode) and existing == path:
            raise ConfigError("spill_dir", f"{path} is not a directory")
        if not stat.S_ISDIR(st.st_mode):
            raise ConfigError("spill_dir", f"cannot create {path}: {existing} is not a directory")
        problem = _unwritable(existing)
        if problem and existing == path:
            raise ConfigError("spill_dir", f"cannot write to {path}: {problem}")
        if problem:
            raise ConfigError(
                "spill_dir", f"cannot create {path}: {existing} is not writable ({problem})"
            )
        return


def _unwritable(directory: Path) -> str:
    """Why this process cannot create files in ``directory``, or "" if it can."""
    try:
        if os.statvfs(directory).f_flag & os.ST_RDONLY:
            return "read-only file system"
    except OSError:
        pass  # access() below still answers
    effective = os.access in os.supports_effective_ids
    if not os.access(directory, os.W_OK | os.X_OK, effective_ids=effective):
        return "permission denied"
    return ""


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
