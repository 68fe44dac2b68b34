"""The generic option validators: integers, choices, strings, booleans, mappings, levels, names.

A validator takes the option's name (for its error) and the value as it came, a string or
number from a config file or a Python value, and returns the typed value or raises
:class:`~kafkalog.errors.ConfigError` naming the option. Each slice of the config (transport,
pipeline, spill, formatting) maps its option names to validators built from these.
"""

from __future__ import annotations

import difflib
import logging
import re
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import orjson

from kafkalog.errors import ConfigError

# An option's validator: (option name, value as given) -> the typed value.
Validator = Callable[[str, Any], Any]

# Kafka's own rule for topic names (org.apache.kafka.common.internals.Topic).
_TOPIC_RE = re.compile(r"^[a-zA-Z0-9._-]{1,249}$")
_PLAIN_NAME_RE = re.compile(r"^[A-Za-z0-9._-]+$")
_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")


def validate(validators: Mapping[str, Validator], options: Mapping[str, Any]) -> dict[str, Any]:
    """The typed values of those ``options`` that ``validators`` names; the others are skipped."""
    return {name: check(name, options[name]) for name, check in validators.items()
            if name in options}


def unknown_option(name: str, known: Collection[str]) -> ConfigError:
    """The error for an option name nothing takes, suggesting the closest known name."""
    close = difflib.get_close_matches(name, sorted(known), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(name, f"unknown option{hint}")


def optional(check: Validator, *, unset: tuple[Any, ...] = (None, "")) -> Validator:
    """``check``, except that the values in ``unset`` mean "not set" and give None."""

    def check_unless_unset(name: str, value: Any) -> Any:
        return None if value in unset else check(name, value)

    return check_unless_unset


def at_least(minimum: int) -> Validator:
    """A validator of integers ``>= minimum``."""

    def check_integer(name: str, value: Any) -> int:
        return integer(name, value, minimum=minimum)

    return check_integer


def one_of(choices: Sequence[str]) -> Validator:
    """A validator of one of ``choices``, case-insensitive."""

    def check_choice(name: str, value: Any) -> Any:
        return choice(name, value, choices)

    return check_choice


def integer(name: str, value: Any, *, minimum: int) -> int:
    """An int, a float with no fraction, or a string of digits (``"16_384"``); never a bool."""
    if isinstance(value, bool):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if isinstance(value, str):
        try:
            value = int(value.strip().replace("_", ""))
        except ValueError:
            raise ConfigError(name, f"must be an integer, got {value!r}") from None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if not isinstance(value, int):
        raise ConfigError(name, f"must be an integer, got {value!r}")
    if value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    return value


def string(name: str, value: Any) -> str:
    """A non-empty string."""
    if not isinstance(value, str) or not value:
        raise ConfigError(name, f"must be a non-empty string, got {value!r}")
    return value


def choice(name: str, value: Any, choices: Sequence[str]) -> Any:
    """One of ``choices`` (lower case), given in any case with spaces around."""
    text = value.strip().lower() if isinstance(value, str) else value
    if text not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return text


def upper_choice(name: str, value: Any, choices: Sequence[str]) -> str:
    """One of ``choices`` spelt in capitals, as Kafka spells them, given in any case."""
    text = value.strip().upper() if isinstance(value, str) else value
    if text not in choices:
        raise ConfigError(name, f"must be one of {', '.join(choices)}; got {value!r}")
    return str(text)


def boolean(name: str, value: Any) -> bool:
    """A bool, or one of the usual spellings of true and false."""
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ConfigError(name, f"must be true or false, got {value!r}")


def mapping(name: str, value: Any) -> Mapping[str, Any]:
    """A mapping with string keys, or a JSON object in a string; None is empty."""
    if value is None:
        return {}
    if isinstance(value, str):
        # A JSON object in one string, for config formats that have no mappings (INI files).
        try:
            value = orjson.loads(value)
        except orjson.JSONDecodeError:
            raise ConfigError(name, "must be a mapping or a JSON object string") from None
    if not isinstance(value, Mapping):
        raise ConfigError(name, f"must be a mapping, got {type(value).__name__}")
    for key in value:
        if not isinstance(key, str):
            raise ConfigError(name, f"keys must be strings, got {key!r}")
    return dict(value)


def level(name: str, value: Any) -> int | None:
    """A logging level number or name (custom levels too); None, "" or "none" for no level."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", "none")):
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit():
            return int(text)
        number = logging.getLevelName(text.upper())
        if isinstance(number, int):
            return number
    raise ConfigError(name, f"must be a level name such as 'CRITICAL' or a number, got {value!r}")


def path_part(name: str, value: Any) -> str:
    """A name safe to use as one part of a file path: no separators, not "." or ".."."""
    text = string(name, value)
    if not _PLAIN_NAME_RE.match(text) or text in (".", ".."):
        raise ConfigError(name, f"{text!r} must be a plain name (letters, digits, '.', '_', '-')")
    return text


def topic(name: str, value: Any) -> str:
    """A valid Kafka topic name."""
    text = string(name, value)
    if not _TOPIC_RE.match(text) or text in (".", ".."):
        raise ConfigError(
            name,
            f"{text!r} is not a valid Kafka topic name "
            "(1-249 characters of a-z, A-Z, 0-9, '.', '_', '-')",
        )
    return text
