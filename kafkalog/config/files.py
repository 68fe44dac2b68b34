"""Reading an options file: TOML, as ``kafkalog ship --config`` and ``kafkalog sink --config``
take it. A file that cannot be read or parsed raises :class:`~kafkalog.errors.ConfigError`
naming the file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from kafkalog.errors import ConfigError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

__all__ = ["read_toml"]


def read_toml(path: Path) -> dict[str, Any]:
    """The tables and values of the TOML file at ``path``."""
    try:
        with open(path, "rb") as f:
            data: dict[str, Any] = tomllib.load(f)
    except OSError as exc:
        raise ConfigError("config", f"cannot read {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("config", f"{path} is not valid TOML: {exc}") from None
    return data
