"""The caller's own fields in a record: ``extra=`` attributes and fields bound with
:mod:`kafkalog.context`, added after the schema's fields without ever overwriting one, and
masked by the redactor.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

from kafkalog.formatting.redaction import LEAF_TYPES, Redactor
from kafkalog.formatting.sanitize import sanitize_key
from kafkalog.formatting.schema import INIT_KEYS, INIT_LEN, STD_ATTRS

__all__ = ["add_bound", "add_extras", "flat_extras"]

_dumps = orjson.dumps

# Extra values of these exact types can never make orjson fail or silently emit
# null, so records carrying only such extras skip the inf/NaN re-check.
_SIMPLE_TYPES: Final = frozenset({str, int, bool, type(None)})

# Extra values flat_extras() passes to orjson as they are: scalars, which hold no keys to
# redact. A float must also be finite (orjson writes inf/NaN as null).
_FLAT_TYPES: Final = frozenset({str, int, bool, float, type(None)})

_INIT_NAMES: Final = list(INIT_KEYS)

# Bound on a formatter's cache of extra names (see flat_extras), in case names are generated.
_FLAT_KEYS_MAX: Final = 4096


def flat_extras(
    rd: dict[str, Any],
    flat_keys: dict[str, bool],
    reserved: frozenset[str],
    redact: Redactor | None,
) -> bytes | None:
    """The JSON object of the extras in a record's ``__dict__`` ``rd``, if they can be written
    exactly as :func:`add_extras` and orjson would write them without either's help, else None.

    They can when every extra is a str, int, bool, None or finite float under a ``str`` name
    that is not a standard attribute, not a core or static field (``reserved``: it would be
    renamed) and not redacted; and orjson takes them as they are (a lone surrogate or an int
    beyond 64 bits it refuses). ``flat_keys`` caches the decision per name.
    """
    names = list(rd)
    if names[:INIT_LEN] != _INIT_NAMES:
        return None  # a standard attribute deleted or set again: extras are not the tail
    flat = _FLAT_TYPES
    extras = {}
    for name in names[INIT_LEN:]:
        ok = flat_keys.get(name) if type(name) is str else False
        if ok is None:
            ok = _flat_name(name, flat_keys, reserved, redact)
        value = rd[name]
        t = type(value)
        if not ok or t not in flat or (t is float and value - value != 0.0):
            return None
        extras[name] = value
    try:
        return _dumps(extras)  # one call for all of them: cheaper than one per value
    except TypeError:  # orjson.JSONEncodeError: the dict path makes the record JSON-safe
        return None


def _flat_name(
    name: str, flat_keys: dict[str, bool], reserved: frozenset[str], redact: Redactor | None
) -> bool:
    """Whether an extra named ``name`` is written under that name and unmasked (cached)."""
    ok = name not in STD_ATTRS and name not in reserved and (
        redact is None or not redact.matches(name))
    if len(flat_keys) >= _FLAT_KEYS_MAX:
        flat_keys.clear()
    flat_keys[name] = ok
    return ok


def add_extras(
    d: dict[str, Any],
    items: list[tuple[Any, Any]],
    reserved: frozenset[str],
    redact: Redactor | None,
) -> bool:
    """Add the extras among a record's ``items`` (attribute name, value) to ``d``.

    A name in ``reserved`` (core and static fields) or already in ``d`` is written as
    ``extra_<name>``, prefixed again while that is taken too. Returns whether orjson's output
    must be checked for an inf/NaN written as null.
    """
    if redact is not None:
        decided, field = redact.decided, redact.field
    recheck = False
    for key, value in items:
        if key in STD_ATTRS:
            continue
        name = key if type(key) is str else sanitize_key(key)
        # Never overwrite a core/static field or an earlier extra.
        while name in reserved or name in d:
            name = "extra_" + name
        # The recheck below looks at the original value: masking only removes inf/NaN.
        if redact is None:
            d[name] = value
        elif type(value) in LEAF_TYPES and type(key) is str and decided(key) is False:
            # What field() returns for a value that holds no keys, under a key already
            # known not to match: the common flat extra skips that call.
            d[name] = value
        else:
            d[name] = field(key, value)
        t = type(value)
        if t not in _SIMPLE_TYPES and not recheck:
            # Finite floats are safe; anything else may hide an inf/NaN
            # that orjson would silently write as null.
            recheck = t is not float or value - value != 0.0
    return recheck


def add_bound(
    d: dict[str, Any],
    bound: dict[str, Any],
    reserved: frozenset[str],
    redact: Redactor | None,
) -> bool:
    """Add the fields bound with :mod:`kafkalog.context`, after the extras.

    They lose every clash: a name held by a core, static or extra field keeps its value,
    and the bound one is written as ``extra_<name>`` - unless it equals what is already
    there (say, the same request id bound and passed as an extra), which is not repeated.
    Returns whether orjson's output must be checked, as :func:`add_extras` does.
    """
    recheck = False
    for key, raw in bound.items():
        # Masked before the comparison, so a secret both bound and passed as an extra
        # compares equal to the masked extra and is written once.
        value = raw if redact is None else redact.field(key, raw)
        name = key
        if name in d:
            try:
                if d[name] is value or bool(d[name] == value):
                    continue
            except Exception:  # a user's __eq__ may raise: keep both then
                pass
        while name in reserved or name in d:
            name = "extra_" + name
        d[name] = value
        t = type(value)
        if t not in _SIMPLE_TYPES and not recheck:
            recheck = t is not float or value - value != 0.0  # same rule as add_extras
    return recheck
