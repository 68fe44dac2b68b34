"""Make any value JSON-safe without ever raising: safe ``repr``/``str``, valid UTF-8 text, keys
and values orjson accepts, and the ``default=`` hook orjson calls for types it does not know.

Everything here is on the slow paths: the formatter only sanitises a record after orjson has
refused it or may have written an inf/NaN as null, and static fields once, at construction.
"""

from __future__ import annotations

import dataclasses
import datetime
import math
from collections.abc import Callable, Mapping
from decimal import Decimal
from enum import Enum
from typing import Any, Final
from uuid import UUID

__all__ = [
    "clean_str",
    "json_default",
    "plain_str",
    "safe_repr",
    "safe_str",
    "sanitize",
    "sanitize_key",
    "type_name",
]

# Containers nested deeper than this are replaced by a placeholder string in the
# sanitising walk.  orjson itself stops at 254 levels; 32 is plenty for logs and
# keeps the pure-Python walk's recursion shallow.
_MAX_DEPTH: Final = 32

# orjson only encodes integers in [-2**63, 2**64 - 1]; anything else raises.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

_isfinite = math.isfinite


def type_name(obj: object) -> str:
    """The qualified name of ``obj``'s type, or ``"object"`` - never raises."""
    try:
        return type(obj).__qualname__
    except Exception:
        return "object"


def _first_text(obj: object, conversions: tuple[Callable[[object], str], ...]) -> str:
    """The first of ``conversions`` of ``obj`` that does not raise, else a placeholder."""
    for convert in conversions:
        try:
            return convert(obj)
        except Exception:  # a user's __repr__/__str__ may raise anything
            continue
    return f"<unrepresentable {type_name(obj)}>"


def safe_repr(obj: object) -> str:
    """repr(obj), else str(obj), else a placeholder - never raises."""
    return _first_text(obj, (repr, str))


def safe_str(obj: object) -> str:
    """str(obj), else repr(obj), else a placeholder - never raises."""
    return _first_text(obj, (str, repr))


def clean_str(s: str) -> str:
    """Return ``s`` as an exact ``str`` that is valid UTF-8.

    Lone surrogates (which orjson refuses) become backslash escapes such as
    ``\\ud800``: unlike U+FFFD this keeps the original code point visible.
    """
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return s.encode("utf-8", "backslashreplace").decode("utf-8")
    # str.__str__ copies a subclass into a plain str without calling any
    # overridden __str__.
    return s if type(s) is str else str.__str__(s)


def plain_str(value: object) -> str:
    """``value`` as valid UTF-8 text: itself if a ``str``, else its safe ``str()``."""
    return clean_str(value) if isinstance(value, str) else clean_str(safe_str(value))


def _float_value(f: float) -> float | str:
    # orjson writes inf/NaN as null, which loses information; use the
    # spellings JavaScript and most JSON tooling recognise instead.
    if _isfinite(f):
        return f
    if math.isnan(f):
        return "NaN"
    return "Infinity" if f > 0 else "-Infinity"


def json_default(obj: Any) -> Any:
    """orjson ``default=`` hook for types orjson does not encode natively.

    Must never raise: an exception here would abort the whole dumps() call.
    orjson calls it again on whatever it returns if that is still foreign.
    """
    try:
        if isinstance(obj, (set, frozenset)):
            return list(obj)
        if isinstance(obj, Decimal):
            return str(obj)  # a float would lose precision
        if isinstance(obj, (bytes, bytearray, memoryview)):
            return bytes(obj).decode("utf-8", "backslashreplace")
        if isinstance(obj, tuple):  # namedtuple & other tuple subclasses
            asdict = getattr(obj, "_asdict", None)
            return asdict() if callable(asdict) else list(obj)
        if isinstance(obj, Mapping):
            return dict(obj)
        # datetime/date/time/UUID/Enum/dataclass are native to orjson; these
        # branches only catch subclasses or objects orjson declined anyway.
        if isinstance(obj, (datetime.date, datetime.time)):
            return obj.isoformat()
        if isinstance(obj, UUID):
            return str(obj)
        if isinstance(obj, Enum):
            return obj.value
    except Exception:
        pass
    return safe_repr(obj)


def sanitize_key(key: object) -> str:
    """``key`` as the ``str`` a JSON object key must be - never raises."""
    # Same spelling orjson's OPT_NON_STR_KEYS uses for the common key types.
    if type(key) is str:
        return clean_str(key)
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, Enum):
        return sanitize_key(key.value)
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        value = _float_value(float.__float__(key))
        return value if isinstance(value, str) else float.__repr__(value)
    if isinstance(key, str):
        return clean_str(key)
    if isinstance(key, (datetime.date, datetime.time)):
        return clean_str(key.isoformat())
    return clean_str(safe_str(key))


def sanitize(value: object, depth: int, path: set[int]) -> Any:
    """Deep-copy ``value`` into plain JSON types that orjson always accepts.

    Slow path only, used after orjson has refused a record or emitted null.
    ``path`` holds ids of the containers currently being walked so cycles
    become a placeholder instead of 2**depth copies; depth is bounded too.
    """
    t = type(value)
    if t is str:
        return clean_str(value)  # type: ignore[arg-type]
    if value is None or t is bool:
        return value
    if t is int:
        return value if _INT_MIN <= value <= _INT_MAX else int.__repr__(value)  # type: ignore[operator]
    if t is float:
        return _float_value(value)  # type: ignore[arg-type]
    try:
        if isinstance(value, Enum):  # before int/str: IntEnum, StrEnum
            if depth >= _MAX_DEPTH:
                return f"<max depth {_MAX_DEPTH} exceeded: {type_name(value)}>"
            return sanitize(value.value, depth + 1, path)
        if isinstance(value, str):
            return clean_str(value)
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return sanitize(int.__int__(value), depth, path)
        if isinstance(value, float):
            return _float_value(float.__float__(value))
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, UUID):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", "backslashreplace")
        if isinstance(value, (datetime.date, datetime.time)):
            return clean_str(value.isoformat())
        is_dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
        if isinstance(value, (dict, list, tuple, set, frozenset)) or is_dataclass:
            if depth >= _MAX_DEPTH:
                return f"<max depth {_MAX_DEPTH} exceeded: {type_name(value)}>"
            marker = id(value)
            if marker in path:
                return f"<cycle: {type_name(value)}>"
            path.add(marker)
            try:
                d1 = depth + 1
                if isinstance(value, dict):
                    return {
                        sanitize_key(k): sanitize(v, d1, path) for k, v in list(value.items())
                    }
                if is_dataclass:
                    # Mirrors orjson: fields starting with "_" are private.
                    return {
                        clean_str(f.name): sanitize(getattr(value, f.name, None), d1, path)
                        for f in dataclasses.fields(value)  # type: ignore[arg-type]
                        if not f.name.startswith("_")
                    }
                asdict = getattr(value, "_asdict", None)
                if isinstance(value, tuple) and callable(asdict):
                    return sanitize(asdict(), depth, path)
                return [sanitize(v, d1, path) for v in list(value)]  # type: ignore[call-overload]
            finally:
                path.discard(marker)
        if isinstance(value, Mapping):
            return sanitize(dict(value), depth, path)
    except Exception:
        return f"<unrepresentable {type_name(value)}>"
    return clean_str(safe_repr(value))
