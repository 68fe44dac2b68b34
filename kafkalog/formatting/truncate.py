"""Shrink an oversized record to ``max_bytes``: cut text on UTF-8 character boundaries with a
``…[truncated N bytes]`` marker, the schema's long fields first, then the largest extras.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any, Final

import orjson

from kafkalog.formatting.sanitize import json_default

__all__ = ["shrink_text", "shrink_to_fit"]

# Adding the flag to a non-empty object appends exactly these bytes, which lets
# the truncation code do its size accounting without re-serialising.
_TRUNCATED_SUFFIX_LEN: Final = len(b',"truncated":true')

_dumps = orjson.dumps
_OPT_NON_STR_KEYS: Final = orjson.OPT_NON_STR_KEYS


def _marker(removed: int) -> str:
    return f"\u2026[truncated {removed} bytes]"


def shrink_text(text: str, old_len: int, over: int) -> tuple[str, int]:
    """Cut ``text`` so its JSON encoding is at least ``over`` bytes shorter.

    ``old_len`` is the JSON size of the value being replaced.  Returns the
    new string (a UTF-8-boundary prefix plus a marker) and its JSON size.
    Removing k raw bytes removes at least k JSON bytes, so one cut usually
    suffices; a few extra rounds cover values whose JSON grows when re-quoted.
    All work is linear in len(text).
    """
    raw = text.encode("utf-8", "surrogatepass")
    n = len(raw)
    mark_len = len(_marker(n).encode("utf-8"))  # upper bound: removed <= n
    need = over
    new, new_len = text, old_len
    for _ in range(6):
        keep = max(0, n - need - mark_len)
        # Step back off UTF-8 continuation bytes so no character is split.
        while 0 < keep < n and (raw[keep] & 0xC0) == 0x80:
            keep -= 1
        new = raw[:keep].decode("utf-8", "replace") + _marker(n - keep)
        new_len = len(_dumps(new))
        gain = old_len - new_len
        if gain >= over or keep == 0:
            break
        need += over - gain
    return new, new_len


def shrink_to_fit(
    d: dict[str, Any],
    out: bytes,
    limit: int,
    paths: tuple[tuple[str, ...], ...],
    fixed: Collection[str],
) -> bytes | None:
    """Shrink fields of ``d`` (encoded as ``out``) until its encoding fits ``limit`` bytes.

    Marks ``d`` ``"truncated": true``, then shrinks the string fields at ``paths`` in order,
    then the largest top-level fields not in ``fixed`` (the extras). Returns the new encoding,
    or None if it still does not fit; ``d`` is changed either way.

    Size bookkeeping is arithmetic (orjson output is compact, so replacing
    one value changes the total by exactly the difference of the two
    values' encodings); the whole record is re-serialised once at the
    end.  Each field is encoded a bounded number of times: linear overall.
    """

    def size(value: Any) -> int:
        return len(_dumps(value, default=json_default, option=_OPT_NON_STR_KEYS))

    d["truncated"] = True
    over = len(out) + _TRUNCATED_SUFFIX_LEN - limit

    def shrink(container: dict[str, Any], key: str) -> None:
        nonlocal over
        value = container[key]
        if isinstance(value, str):
            text, old_len = value, size(value)
        else:
            raw = _dumps(value, default=json_default, option=_OPT_NON_STR_KEYS)
            text, old_len = raw.decode("utf-8"), len(raw)
        new, new_len = shrink_text(text, old_len, over)
        if new_len < old_len:
            container[key] = new
            over -= old_len - new_len

    for path in paths:
        if over <= 0:
            break
        container: Any = d
        for part in path[:-1]:
            container = container.get(part) if isinstance(container, dict) else None
        if isinstance(container, dict) and isinstance(container.get(path[-1]), str):
            shrink(container, path[-1])

    if over > 0:
        # Largest extras first, so few of them are touched.
        extras = sorted(((size(v), k) for k, v in d.items() if k not in fixed), reverse=True)
        for _size, key in extras:
            if over <= 0:
                break
            shrink(d, key)

    if over <= 0:
        final = _dumps(d, default=json_default, option=_OPT_NON_STR_KEYS)
        if len(final) <= limit:
            return final
    return None
