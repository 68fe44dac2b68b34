"""The handler's own options: how a LogRecord becomes the record's key and JSON, and which
records wait for Kafka's acknowledgement.

The delivery pipeline never sees these: it takes records as ready-made bytes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from kafkalog.config.values import Validator, at_least, level, mapping, one_of
from kafkalog.errors import ConfigError
from kafkalog.formatting.redaction import key_words
from kafkalog.formatting.schema import SCHEMAS

KeyFunc = Callable[[logging.LogRecord], str | bytes | None]



def _key(name: str, value: Any) -> str | KeyFunc | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        if not value.isidentifier():
            raise ConfigError(
                name, f"{value!r} is not a record attribute name (use extra={{...}} names)"
            )
        return value
    if callable(value):
        return value  # type: ignore[no-any-return]
    raise ConfigError(name, f"must be an attribute name or a callable, got {value!r}")


def _redact_keys(name: str, value: Any) -> tuple[str, ...]:
    """None/""/"none"/"off"/[] turn redaction off; a string is a comma-separated list."""
    if value is None:
        return ()
    if isinstance(value, str):
        if value.strip().lower() in ("", "none", "off"):
            return ()
        items: list[Any] = value.split(",")
    elif isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
    else:
        raise ConfigError(
            name, f"must be a list of key names or a comma-separated string, got {value!r}"
        )
    keys: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ConfigError(name, f"entries must be strings, got {item!r}")
        text = item.strip()
        if not text and isinstance(value, str):
            continue  # "password, token," - a trailing comma
        if not key_words(text):
            raise ConfigError(name, f"{item!r} has no letters or digits")
        if text not in keys:
            keys.append(text)
    return tuple(keys)


OPTIONS: dict[str, Validator] = {
    "key": _key,
    "sync_level": level,
    "sync_timeout_ms": at_least(0),
    "schema": one_of(SCHEMAS),
    "static_fields": mapping,
    "redact_keys": _redact_keys,
}
