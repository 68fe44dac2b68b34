"""Mask the values of sensitive keys (passwords, tokens, cookies) before a record is serialised.

A :class:`Redactor` is built once from a list of key names and applied by the formatter to the
fields a caller supplies (``extra=``, bound context, static fields). A key *matches* an entry
when the entry's words appear in the key as whole, consecutive words, case-insensitively:

* a key is split into words at ``_``, ``-``, ``.``, spaces and other punctuation, at camelCase
  humps (``apiKey`` -> ``api key``) and between letters and digits (``password2``);
* ``password`` matches ``password``, ``PASSWORD``, ``db_password``, ``dbPassword``,
  ``password_hash`` and ``password2``, but not ``passwords`` or ``passwordless``;
* ``api_key`` matches ``api_key``, ``X-Api-Key``, ``apiKey`` and ``apikey`` (words may also be
  written run together), but not ``api`` or ``key``.

The value of a matching key is replaced by :data:`MASK`, whatever its type. Values are searched
at any depth: dicts and other mappings, lists, tuples (named tuples by field name), sets and
dataclasses (by field name, as orjson writes them). Objects that are written as their ``repr``
and the message text itself are not searched.

Scanning fails closed: a value that cannot be walked (a mapping whose ``items()`` raises, nesting
deeper than orjson would write) is replaced by a placeholder instead of being written unchecked.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

__all__ = ["DEFAULT_REDACT_KEYS", "MASK", "Redactor"]

#: Keys masked unless ``redact_keys`` says otherwise.
DEFAULT_REDACT_KEYS: Final[tuple[str, ...]] = (
    "password",
    "passwd",
    "secret",
    "token",
    "api_key",
    "authorization",
    "cookie",
    "set-cookie",
)

#: What a masked value is replaced with.
MASK: Final = "[REDACTED]"

# orjson refuses to write containers nested deeper than this, so a walk that goes this far has
# seen everything orjson could write; deeper values become a placeholder (failing closed).
_MAX_DEPTH: Final = 255
_UNSCANNABLE: Final = "[REDACTED: value could not be checked for secrets]"
_TOO_DEEP: Final = "[REDACTED: nested too deep to check for secrets]"

# Per-key decisions are cached: log call sites use a small, fixed vocabulary of keys, so the
# cache turns the word split into one dict lookup. Bounded, in case keys are generated.
_CACHE_MAX: Final = 4096

#: Values of these exact types hold no keys: nothing to walk (the formatter skips them too).
LEAF_TYPES: Final = frozenset({str, int, float, bool, type(None), bytes})

_HUMP = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")
_DIGITS = re.compile(r"(?<=[A-Za-z])(?=[0-9])|(?<=[0-9])(?=[A-Za-z])")
_NOT_ALNUM = re.compile(r"[^0-9a-z]+")


def key_words(key: str) -> tuple[str, ...]:
    """The lower-case words of ``key``: ``"X-ApiKey2"`` -> ``("x", "api", "key", "2")``."""
    spaced = _DIGITS.sub("_", _HUMP.sub("_", key))
    return tuple(w for w in _NOT_ALNUM.split(spaced.lower()) if w)


class Redactor:
    """Masks the values of keys that match any of ``keys`` (see the module docstring).

    ``keys`` must not be empty and every entry needs at least one letter or digit; both are
    :class:`ValueError`. Thread-safe: the only shared state is a cache that is filled, never
    changed.

    .. versionadded:: 0.1.0
    """

    def __init__(self, keys: Iterable[str]) -> None:
        entries = tuple(keys)
        if not entries:
            raise ValueError("redact keys must not be empty (use no Redactor to turn it off)")
        targets: set[str] = set()
        for entry in entries:
            words = key_words(entry) if isinstance(entry, str) else ()
            if not words:
                raise ValueError(f"redact key {entry!r} has no letters or digits")
            # Matching compares run-together words, so "api_key" also finds "apikey".
            targets.add("".join(words))
        self.keys: tuple[str, ...] = entries
        self._targets = frozenset(targets)
        self._longest = max(len(t) for t in targets)
        self._cache: dict[str, bool] = {}
        #: ``decided(key)``: the decision :meth:`matches` made for the str ``key`` before (True:
        #: masked), or None if it has not seen it. The formatter uses it to pass a leaf value
        #: under a known, unmasked key through without calling :meth:`field`.
        self.decided = self._cache.get

    def __repr__(self) -> str:
        return f"Redactor({list(self.keys)!r})"

    # -- matching ---------------------------------------------------------------------------

    def matches(self, key: object) -> bool:
        """True if the value under ``key`` is masked. Non-string keys are matched by ``str()``."""
        if type(key) is str:
            hit = self._cache.get(key)
            if hit is None:
                hit = self._match_words(key_words(key))
                if len(self._cache) < _CACHE_MAX:
                    self._cache[key] = hit
            return hit
        # orjson (or the formatter's fallback) writes other keys as some str() of them; match
        # that spelling, erring towards masking (an Enum member's name includes its class).
        try:
            texts = [str(key)]
            value = getattr(key, "value", None)
            if isinstance(value, str):
                texts.append(value)
        except Exception:  # written as a placeholder then: no name to match
            return False
        return any(self._match_words(key_words(text)) for text in texts)

    def _match_words(self, words: tuple[str, ...]) -> bool:
        targets = self._targets
        longest = self._longest
        for i in range(len(words)):
            run = ""
            for word in words[i:]:
                run += word
                if len(run) > longest:
                    break
                if run in targets:
                    return True
        return False

    # -- masking ----------------------------------------------------------------------------

    def field(self, key: object, value: Any) -> Any:
        """``value`` as it may be written under top-level field ``key``: masked, or with every
        matching key inside it masked (a copy), or ``value`` itself when nothing matched."""
        hit = self._cache.get(key) if type(key) is str else None
        if hit is None:
            hit = self.matches(key)
        if hit:
            return MASK
        if type(value) in LEAF_TYPES:
            return value
        try:
            return self._walk(value, 1, set())
        except RecursionError:
            return _TOO_DEEP
        except Exception:
            return _UNSCANNABLE

    def fields(self, mapping: Mapping[str, Any]) -> dict[str, Any]:
        """A copy of ``mapping`` with :meth:`field` applied to every item."""
        return {key: self.field(key, value) for key, value in mapping.items()}

    def _walk(self, value: Any, depth: int, path: set[int]) -> Any:
        """``value`` with matching keys masked at any depth; ``value`` itself if none matched.

        ``path`` holds the ids of the containers being walked. A cycle is replaced by a
        placeholder: writing the original object there would put its unmasked values back.
        Leaf values and cached key decisions are handled inline: this runs once per container
        of every extra, on the application's thread.
        """
        t = type(value)
        if t in LEAF_TYPES:
            return value
        # A mapping's (key, value) pairs, or None for a sequence (walked item by item).
        # Exact types first: isinstance() against an ABC such as Mapping is comparatively slow.
        items: list[tuple[Any, Any]] | None
        if t is dict:
            items = list(value.items())
        elif t is list or t is tuple:
            items = None
        elif isinstance(value, Mapping):
            items = list(value.items())
        elif isinstance(value, tuple) and callable(getattr(value, "_asdict", None)):
            items = list(value._asdict().items())  # type: ignore[attr-defined]  # named tuple
        elif isinstance(value, (list, tuple, set, frozenset)):
            items = None
        elif dataclasses.is_dataclass(value) and not isinstance(value, type):
            # orjson writes a dataclass as an object of its public fields.
            items = [
                (f.name, getattr(value, f.name))
                for f in dataclasses.fields(value)
                if not f.name.startswith("_")
            ]
        else:
            return value  # written as its repr or a scalar: not searched
        if depth >= _MAX_DEPTH:
            return _TOO_DEEP
        marker = id(value)
        if marker in path:
            return f"<cycle: {t.__qualname__}>"
        path.add(marker)
        leaf = LEAF_TYPES
        walk = self._walk
        try:
            if items is None:
                seq = list(value)
                walked = [
                    item if type(item) in leaf else walk(item, depth + 1, path) for item in seq
                ]
                for new, old in zip(walked, seq, strict=True):
                    if new is not old:
                        return walked
                return value
            cache = self._cache
            # The copy is only made from the first change on: most containers hold no secret.
            out: dict[Any, Any] | None = None
            for index, (key, item) in enumerate(items):
                hit = cache.get(key) if type(key) is str else None
                if hit is None:
                    hit = self.matches(key)
                if hit:
                    new = MASK
                elif type(item) in leaf:
                    new = item
                else:
                    new = walk(item, depth + 1, path)
                if out is not None:
                    out[key] = new
                elif new is not item or hit:
                    out = dict(items[:index])
                    out[key] = new
            # Unchanged: the original object, so orjson writes it exactly as it would have.
            return value if out is None else out
        finally:
            path.discard(marker)
