"""Turn a :class:`logging.LogRecord` into one JSON document (UTF-8 bytes) for Kafka.

This module has one job: serialise log records quickly and *never* raise while
doing it.  It runs on the application's hot path (inside ``Handler.emit``), so
the common case - a plain record with no extras and no exception - goes through
a single :func:`orjson.dumps` call on a small dict built from precomputed
pieces.  Everything unusual (values orjson cannot encode, oversized records,
broken ``__repr__`` methods, a failing ``getMessage``) is handled on slower
fallback paths that always end in a valid JSON object.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import logging
import math
import os
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from decimal import Decimal
from enum import Enum
from itertools import islice as _islice
from typing import Any, Final
from uuid import UUID

import orjson

from kafkalog.context import fields_get as _bound_fields
from kafkalog.context import trace_ids as _trace_ids
from kafkalog.formatting.redaction import DEFAULT_REDACT_KEYS, Redactor
from kafkalog.formatting.redaction import LEAF_TYPES as _LEAF_TYPES

__all__ = ["JsonFormatter", "new_record_id"]

#: ECS version advertised in ``ecs.version`` by the ``"ecs"`` schema.
ECS_VERSION: Final = "8.11.0"

_SCHEMAS: Final = ("default", "ecs")

# Containers nested deeper than this are replaced by a placeholder string in the
# sanitising walk.  orjson itself stops at 254 levels; 32 is plenty for logs and
# keeps the pure-Python walk's recursion shallow.
_MAX_DEPTH: Final = 32

# orjson only encodes integers in [-2**63, 2**64 - 1]; anything else raises.
_INT_MIN: Final = -(2**63)
_INT_MAX: Final = 2**64 - 1

# Adding the flag to a non-empty object appends exactly these bytes, which lets
# the truncation code do its size accounting without re-serialising.
_TRUNCATED_SUFFIX_LEN: Final = len(b',"truncated":true')

# Last resort if even the minimal record cannot be built: a constant, so it
# cannot fail.
_LAST_RESORT: Final = b'{"message":"[kafkalog: log record could not be serialised]"}'

_dumps = orjson.dumps
_OPT_NON_STR_KEYS: Final = orjson.OPT_NON_STR_KEYS
# orjson 3.12+ returns its output in a buffer of 4 KiB or more that it never trims, so a kept
# record would pin ~10x its length. With a newline appended, slicing it off again makes the
# right-sized copy: one C-level slice, about half the cost of bytes(memoryview(out)).
_OPT_SLICEABLE: Final = orjson.OPT_APPEND_NEWLINE
_floor = math.floor
_isfinite = math.isfinite

# Attributes every LogRecord has, plus those the stdlib adds later ("message"
# and "asctime" are set by Formatter.format, "taskName" exists on 3.12+), plus
# our own pre-assigned id.  Anything else in record.__dict__ came from extra=.
# Computed once: extras detection is then a single C-level issuperset() call.
_STD_ATTRS: Final = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "kafkalog_id",
}
_no_extras = _STD_ATTRS.issuperset
_LogRecord: Final = logging.LogRecord
# A record straight from LogRecord.__init__ has exactly these many keys, the last one being
# _INIT_LAST_KEY; extras (added by makeRecord) and ``message``/``asctime`` (added by a
# Formatter) come after it. So "same length and same last key" means no extras, unless a
# standard attribute was deleted and then set again: a cheaper test than issuperset(), tried
# first, with issuperset() deciding whenever it does not hold.
_INIT_KEYS: Final = tuple(logging.LogRecord("", 0, "", 0, "", (), None).__dict__)
_INIT_LEN: Final = len(_INIT_KEYS)
_INIT_LAST_KEY: Final = _INIT_KEYS[-1]

# "000" .. "999": the microseconds of a timestamp are written as two of these, which is
# cheaper than a format spec ("{us:06d}") on every record.
_DIGITS3: Final = tuple(f"{i:03d}" for i in range(1000))

# Extra values of these exact types can never make orjson fail or silently emit
# null, so records carrying only such extras skip the inf/NaN re-check.
_SIMPLE_TYPES: Final = frozenset({str, int, bool, type(None)})

_DEFAULT_CORE: Final = frozenset(
    {
        "@timestamp",
        "level",
        "logger",
        "message",
        "module",
        "function",
        "line",
        "process",
        "thread_name",
        "host",
        "id",
        "exception",
        "stack",
        "truncated",
        "trace_id",
        "span_id",
    }
)
_ECS_CORE: Final = frozenset(
    {"@timestamp", "message", "log", "process", "host", "event", "ecs", "error", "truncated",
     "trace", "span"}
)

# kafkalog never imports OpenTelemetry; a span can only be active if the application did.
_modules: Final = sys.modules
_OTEL_TRACE: Final = "opentelemetry.trace"

# Fields shrunk (in this order) when a record exceeds max_bytes, before any
# extra is touched.  Paths into the record dict.
_DEFAULT_TRUNCATE: Final = (
    ("message",),
    ("exception", "stacktrace"),
    ("stack",),
    ("exception", "message"),
)
_ECS_TRUNCATE: Final = (
    ("message",),
    ("error", "stack_trace"),
    ("log", "origin", "stack_trace"),
    ("error", "message"),
)


# --------------------------------------------------------------------------- host & ids


def _hostname() -> str:
    try:
        return socket.gethostname()
    except Exception:  # a broken resolver config must not break logging
        return "unknown"


def _new_id_prefix() -> str:
    # 64 random bits per process: two processes colliding is ~2**-64 per pair.
    return os.urandom(8).hex() + "-"


_host = _hostname()
_id_prefix = _new_id_prefix()

# Ids are made 256 at a time: counter value n = block * 256 + low is written as the block
# in hex followed by two hex digits from _HEX2, which is hex(n). A record then costs a
# next() on a list iterator instead of formatting an int (about 5% of a log call).
# itertools.count.__next__ and a list iterator's __next__ are single C calls, atomic under
# the GIL: each block, and each id in it, is handed out once without a lock. Two threads
# that find the current block used up each take a new one; the ids left in the block that
# is replaced are skipped, never repeated.
_HEX2: Final = tuple(f"{i:02x}" for i in range(256))
_id_blocks: Iterator[int] = itertools.count(0)
_ids: Iterator[str] = iter(())


def _new_id_block() -> Iterator[str]:
    """Make the next block of ids the current one and return it."""
    global _ids  # noqa: PLW0603 - read on the hot path as a plain global
    block = next(_id_blocks)
    if block:
        head = f"{_id_prefix}{block:x}"
        ids = iter([head + low for low in _HEX2])
    else:  # 1 to 255: no leading zero, and 0 is not used
        ids = iter([f"{_id_prefix}{n:x}" for n in range(1, 256)])
    _ids = ids
    return ids


# Call site (level, logger, module, function, line, pid, thread name) -> the JSON around a
# plain record's message: from after the timestamp to the message, and from after the
# message to the id. Cleared when full, and in a forked child (its pid and host differ).
_sites: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
_SITES_MAX = 4096


def _site(key: tuple[Any, ...]) -> tuple[bytes, bytes]:
    """The two fixed parts of a plain record's JSON for one call site (see _encode_plain).

    Each value goes through orjson as it would inside the record's dict, so the bytes are the
    same as the dict's.
    """
    level, name, module, function, line, pid, thread_name = (
        _dumps(v, default=_default) for v in key)
    before = b'","level":' + level + b',"logger":' + name + b',"message":'
    after = (b',"module":' + module + b',"function":' + function + b',"line":' + line
             + b',"process":' + pid + b',"thread_name":' + thread_name + b',"host":'
             + _dumps(_host) + b',"id":"')
    if len(_sites) >= _SITES_MAX:
        _sites.clear()
    _sites[key] = (before, after)
    return before, after


def _after_fork_in_child() -> None:
    # The child inherits the parent's prefix and counter position; without a
    # fresh prefix both processes would hand out the same ids.  The hostname
    # is refreshed too (the child may have entered a new UTS namespace).
    global _host, _id_prefix, _id_blocks, _ids  # noqa: PLW0603 - hot-path reads stay plain globals
    _id_prefix = _new_id_prefix()
    _id_blocks = itertools.count(0)
    _ids = iter(())
    _host = _hostname()
    _sites.clear()


if hasattr(os, "register_at_fork"):  # absent on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)


def new_record_id() -> str:
    """Return a new id, unique across threads and (forked) processes.

    Format: 16 lowercase hex digits of per-process randomness, ``-``, then a
    per-process counter in hex, e.g. ``"9f86d081884c7d65-1a"``.  Costs one
    ``next()`` on a block of ids formatted 256 at a time - no ``uuid4`` per
    call.  The random prefix is regenerated in a child after ``os.fork()``.
    """
    rid = next(_ids, None)
    return rid if rid is not None else next(_new_id_block())


# --------------------------------------------------------------------------- value helpers


def _sized(out: bytes) -> bytes:
    """A copy of ``out`` that owns only its length (see _OPT_SLICEABLE); for the slow paths."""
    return bytes(memoryview(out))


def _type_name(obj: object) -> str:
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
    return f"<unrepresentable {_type_name(obj)}>"


def _safe_repr(obj: object) -> str:
    """repr(obj), else str(obj), else a placeholder - never raises."""
    return _first_text(obj, (repr, str))


def _safe_str(obj: object) -> str:
    """str(obj), else repr(obj), else a placeholder - never raises."""
    return _first_text(obj, (str, repr))


def _clean_str(s: str) -> str:
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


def _float_value(f: float) -> float | str:
    # orjson writes inf/NaN as null, which loses information; use the
    # spellings JavaScript and most JSON tooling recognise instead.
    if _isfinite(f):
        return f
    if math.isnan(f):
        return "NaN"
    return "Infinity" if f > 0 else "-Infinity"


def _default(obj: Any) -> Any:
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
    return _safe_repr(obj)


def _sanitize_key(key: object) -> str:
    # Same spelling orjson's OPT_NON_STR_KEYS uses for the common key types.
    if type(key) is str:
        return _clean_str(key)
    if key is None:
        return "null"
    if isinstance(key, bool):
        return "true" if key else "false"
    if isinstance(key, Enum):
        return _sanitize_key(key.value)
    if isinstance(key, int):
        return int.__repr__(key)
    if isinstance(key, float):
        value = _float_value(float.__float__(key))
        return value if isinstance(value, str) else float.__repr__(value)
    if isinstance(key, str):
        return _clean_str(key)
    if isinstance(key, (datetime.date, datetime.time)):
        return _clean_str(key.isoformat())
    return _clean_str(_safe_str(key))


def _sanitize(value: object, depth: int, path: set[int]) -> Any:
    """Deep-copy ``value`` into plain JSON types that orjson always accepts.

    Slow path only, used after orjson has refused a record or emitted null.
    ``path`` holds ids of the containers currently being walked so cycles
    become a placeholder instead of 2**depth copies; depth is bounded too.
    """
    t = type(value)
    if t is str:
        return _clean_str(value)  # type: ignore[arg-type]
    if value is None or t is bool:
        return value
    if t is int:
        return value if _INT_MIN <= value <= _INT_MAX else int.__repr__(value)  # type: ignore[operator]
    if t is float:
        return _float_value(value)  # type: ignore[arg-type]
    try:
        if isinstance(value, Enum):  # before int/str: IntEnum, StrEnum
            if depth >= _MAX_DEPTH:
                return f"<max depth {_MAX_DEPTH} exceeded: {_type_name(value)}>"
            return _sanitize(value.value, depth + 1, path)
        if isinstance(value, str):
            return _clean_str(value)
        if isinstance(value, bool):
            return bool(value)
        if isinstance(value, int):
            return _sanitize(int.__int__(value), depth, path)
        if isinstance(value, float):
            return _float_value(float.__float__(value))
        if isinstance(value, Decimal):
            return str(value)
        if isinstance(value, UUID):
            return str(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", "backslashreplace")
        if isinstance(value, (datetime.date, datetime.time)):
            return _clean_str(value.isoformat())
        is_dataclass = dataclasses.is_dataclass(value) and not isinstance(value, type)
        if isinstance(value, (dict, list, tuple, set, frozenset)) or is_dataclass:
            if depth >= _MAX_DEPTH:
                return f"<max depth {_MAX_DEPTH} exceeded: {_type_name(value)}>"
            marker = id(value)
            if marker in path:
                return f"<cycle: {_type_name(value)}>"
            path.add(marker)
            try:
                d1 = depth + 1
                if isinstance(value, dict):
                    return {
                        _sanitize_key(k): _sanitize(v, d1, path) for k, v in list(value.items())
                    }
                if is_dataclass:
                    # Mirrors orjson: fields starting with "_" are private.
                    return {
                        _clean_str(f.name): _sanitize(getattr(value, f.name, None), d1, path)
                        for f in dataclasses.fields(value)  # type: ignore[arg-type]
                        if not f.name.startswith("_")
                    }
                asdict = getattr(value, "_asdict", None)
                if isinstance(value, tuple) and callable(asdict):
                    return _sanitize(asdict(), depth, path)
                return [_sanitize(v, d1, path) for v in list(value)]  # type: ignore[call-overload]
            finally:
                path.discard(marker)
        if isinstance(value, Mapping):
            return _sanitize(dict(value), depth, path)
    except Exception:
        return f"<unrepresentable {_type_name(value)}>"
    return _clean_str(_safe_repr(value))


def _plain_str(value: object) -> str:
    return _clean_str(value) if isinstance(value, str) else _clean_str(_safe_str(value))


def _marker(removed: int) -> str:
    return f"\u2026[truncated {removed} bytes]"


def _shrink(text: str, old_len: int, over: int) -> tuple[str, int]:
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


# --------------------------------------------------------------------------- formatter


class JsonFormatter(logging.Formatter):
    """Format each log record as one compact JSON object (UTF-8 bytes).

    Args:
        schema: ``"default"`` (flat, short field names) or ``"ecs"`` (Elastic
            Common Schema 8.11 with nested objects).  Anything else raises
            :class:`ValueError`.
        static_fields: fields added to every record, e.g.
            ``{"service": "billing", "env": "prod"}``.  Values are deep-copied
            and made JSON-safe once, here.  With ``schema="default"`` they go
            at the top level after the core fields.  With ``schema="ecs"``,
            ``"service"`` becomes ``service.name`` (or, if it is a mapping, the
            whole ``service`` object), ``"env"``/``"environment"`` become
            ``service.environment``, everything else goes at the top level.
            A static key that names a core field raises :class:`ValueError`;
            non-string keys raise :class:`TypeError`.
        max_bytes: if set, :meth:`encode` keeps its output within this many
            bytes whenever possible (see :meth:`encode`).
        redact_keys: key names whose values are replaced by ``"[REDACTED]"``
            at any depth in extras, bound context and static fields
            (matching rules: :mod:`kafkalog.formatting.redaction`).  Defaults to
            :data:`~kafkalog.formatting.redaction.DEFAULT_REDACT_KEYS`; ``None`` or an
            empty list turns redaction off.  The message text, exception
            text and values written as their ``repr`` are not searched.

    Default schema, in order: ``@timestamp`` (RFC 3339 UTC, microseconds,
    ``Z``), ``level``, ``logger``, ``message``, ``module``, ``function``,
    ``line``, ``process``, ``thread_name``, ``host``, ``id``, the static
    fields, the ``extra=`` fields, then ``exception`` (``type``, ``message``,
    ``stacktrace``) and ``stack`` when present.

    ECS schema: ``@timestamp``, ``message``, ``log.level`` (lower-case Python
    level name, as Elastic's own ``ecs-logging-python`` writes it),
    ``log.logger``, ``log.origin.file.name`` (file name), ``log.origin.file.line``,
    ``log.origin.function``, ``process.pid``, ``process.thread.name``,
    ``host.hostname``, ``event.id``, ``ecs.version``, then ``service`` and
    other static fields, extras, ``error.type``/``error.message``/
    ``error.stack_trace``, and ``log.origin.stack_trace`` for ``stack_info``
    (not an ECS field; ECS has none for a non-error stack).  Dotted names are
    emitted as nested objects, which Elasticsearch indexes identically.

    Extras (``extra=`` keys) are written at the top level.  An extra whose
    name equals a core field (e.g. ``level``, ``host``, ``log``) or a static
    field is never allowed to overwrite it: it is written as
    ``extra_<name>`` (prefixed again while that name is also taken).  The id
    is ``record.kafkalog_id`` when that is a ``str``, else
    :func:`new_record_id`.
    """

    def __init__(
        self,
        schema: str = "default",
        static_fields: Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
        redact_keys: Iterable[str] | None = DEFAULT_REDACT_KEYS,
    ) -> None:
        super().__init__()
        if schema not in _SCHEMAS:
            raise ValueError(f"schema must be one of {_SCHEMAS!r}, got {schema!r}")
        self._ecs = schema == "ecs"
        self._max_bytes: int | None = None
        self.max_bytes = max_bytes
        # (second, "YYYY-MM-DDTHH:MM:SS.") swapped as one tuple, so threads
        # racing on it always read a consistent pair.  The second is a float:
        # the hot path subtracts it from ``record.created`` (a float).
        self._ts_cache: tuple[float, str] = (-(2.0**63), "")
        self._static, self._service = self._prepare_static(static_fields)
        keys = tuple(redact_keys or ())
        self._redact: Redactor | None = Redactor(keys) if keys else None
        if self._redact is not None:
            self._static = self._redact.fields(self._static)
            if self._service is not None:
                self._service = self._redact.fields(self._service)
        core = _ECS_CORE if self._ecs else _DEFAULT_CORE
        reserved = set(core) | set(self._static)
        if self._service is not None:
            reserved.add("service")
        self._reserved: frozenset[str] = frozenset(reserved)
        self._truncate_paths = _ECS_TRUNCATE if self._ecs else _DEFAULT_TRUNCATE
        # What follows the id in a plain record's JSON (see _encode_plain): the static fields,
        # written once here, and the closing brace. None: every record takes _build().
        self._plain_tail: bytes | None = None
        if not self._ecs:
            static = _dumps(self._static, default=_default)[1:-1]  # without the braces
            self._plain_tail = b'"' + (b"," + static if static else b"") + b"}"

    def _prepare_static(
        self, static_fields: Mapping[str, Any] | None
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if static_fields is None:
            return {}, None
        if not isinstance(static_fields, Mapping):
            raise TypeError("static_fields must be a mapping of str to JSON-able values")
        core = _ECS_CORE if self._ecs else _DEFAULT_CORE
        static: dict[str, Any] = {}
        service: dict[str, Any] | None = None
        env_seen = False
        for key, value in static_fields.items():
            if not isinstance(key, str):
                raise TypeError(f"static_fields keys must be str, got {key!r}")
            clean = _sanitize(value, 1, set())
            if self._ecs and key == "service":
                service = service or {}
                if isinstance(clean, dict):
                    service.update(clean)
                else:
                    service["name"] = clean if isinstance(clean, str) else _safe_str(clean)
                continue
            if self._ecs and key in ("env", "environment"):
                if env_seen:
                    raise ValueError("static_fields has both 'env' and 'environment'")
                env_seen = True
                service = service or {}
                service["environment"] = clean
                continue
            if key in core:
                raise ValueError(f"static_fields key {key!r} collides with a core field")
            static[_clean_str(key)] = clean
        return static, service

    @property
    def max_bytes(self) -> int | None:
        """Size cap for :meth:`encode` output in bytes, or ``None`` for no cap.

        Settable (e.g. by a handler that knows the broker's message limit);
        a value that is not a positive ``int`` raises :class:`ValueError`.
        """
        return self._max_bytes

    @max_bytes.setter
    def max_bytes(self, value: int | None) -> None:
        if value is not None and (
            isinstance(value, bool) or not isinstance(value, int) or value <= 0
        ):
            raise ValueError(f"max_bytes must be a positive int or None, got {value!r}")
        self._max_bytes = value

    # ----------------------------------------------------------------- building

    def _timestamp(self, created: float) -> str:
        """``created`` as RFC 3339 UTC with microseconds; refreshes the per-second cache.

        :meth:`_encode_plain` inlines the common case (a record in the cached second) and
        calls this for the rest; both must round the same way.
        """
        sec = _floor(created)
        us = round((created - sec) * 1_000_000)
        if us >= 1_000_000:  # rounding carried into the next second
            sec += 1
            us -= 1_000_000
        cache = self._ts_cache
        if cache[0] != sec:
            # strftime only once per second; the hot path is one f-string.
            cache = (float(sec), time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(sec)))
            self._ts_cache = cache
        return f"{cache[1]}{_DIGITS3[us // 1000]}{_DIGITS3[us % 1000]}Z"

    def _safe_timestamp(self, record: object) -> str:
        try:
            return self._timestamp(record.created)  # type: ignore[attr-defined]
        except Exception:
            return self._timestamp(time.time())  # created missing, NaN, absurd

    @staticmethod
    def _message_fallback(record: logging.LogRecord, exc: Exception) -> str:
        # Typical cause: logger.info("%d", "x").  Keep the template and the
        # args so the bug is visible and the record still ships.
        return (
            f"{_safe_str(record.msg)} [kafkalog: message formatting failed "
            f"({_type_name(exc)}: {_safe_str(exc)}); args={_safe_repr(record.args)[:1000]}]"
        )

    def _exception(self, record: logging.LogRecord) -> tuple[str, str, str] | None:
        """(qualified type, message, formatted traceback) for record.exc_info."""
        ei = record.exc_info
        try:
            etype, evalue, _tb = ei  # type: ignore[misc]
        except Exception:
            return ("<invalid exc_info>", _safe_repr(ei), "")
        if etype is None:  # exc_info=True logged outside an except block
            return None
        module = getattr(etype, "__module__", None)
        qualname = getattr(etype, "__qualname__", None) or _safe_str(etype)
        # Same naming rule as the traceback module.
        tname = qualname if module in (None, "builtins", "__main__") else f"{module}.{qualname}"
        message = "" if evalue is None else _safe_str(evalue)
        text = record.exc_text
        if not text:
            try:
                text = self.formatException(ei)  # type: ignore[arg-type]
                # Cache like logging.Formatter.format so other handlers reuse it.
                record.exc_text = text
            except Exception as exc:
                text = f"<traceback unavailable: {_type_name(exc)}: {_safe_str(exc)}>"
        return (_plain_str(tname), message, text)

    def _encode_plain(self, record: logging.LogRecord, tail: bytes) -> bytes | None:
        """The JSON of a plain record in the default schema, without building a dict; None
        for any other record, which then takes :meth:`_build`.

        Plain: a ``LogRecord`` as ``makeRecord`` leaves it without ``extra=``, a ``str``
        message that formats, no exception or stack, nothing bound with
        :mod:`kafkalog.context` and no active OpenTelemetry span. Its fields other than the
        timestamp, message and id repeat for every call from one line of code, so their JSON
        is made once per call site (see :func:`_site`) and joined with the rest. The bytes
        are the same as :meth:`_build` and orjson give (a property test compares them).
        """
        if type(record) is not _LogRecord:
            return None
        msg = record.msg
        if type(msg) is not str:
            return None
        # As in _build: every attribute is read before record.__dict__.
        created = record.created
        args = record.args
        site_key = (record.levelname, record.name, record.module, record.funcName,
                    record.lineno, record.process, record.threadName)
        if record.exc_info or record.stack_info:
            return None
        rd = record.__dict__
        if len(rd) != _INIT_LEN or next(reversed(rd)) != _INIT_LAST_KEY:
            return None  # extras, or a kafkalog_id
        if _bound_fields() or (_OTEL_TRACE in _modules and _trace_ids() is not None):
            return None  # bound fields, or an active span's ids: _build() adds them
        try:
            message = msg % args if args else msg
        except Exception:
            return None  # _build() writes the template and the args, and why
        try:
            body = _dumps(message)
        except TypeError:
            return None  # e.g. a lone surrogate: _build() escapes it
        # _timestamp() inlined for a record in the cached second (nearly all of them). A
        # difference in [0, 1) means floor(created) is the cached second, so the rounding is
        # exactly _timestamp()'s; anything else (another second, a carry, NaN, a created
        # that is not a float) takes _timestamp().
        cache = self._ts_cache
        try:
            frac = created - cache[0]
        except TypeError:
            frac = -1.0
        if 0.0 <= frac < 1.0 and (us := round(frac * 1_000_000)) < 1_000_000:
            ts = f"{cache[1]}{_DIGITS3[us // 1000]}{_DIGITS3[us % 1000]}Z"
        else:
            ts = self._timestamp(created)
        site = _sites.get(site_key)
        if site is None:
            site = _site(site_key)
        rid = next(_ids, None)  # new_record_id() inlined: this is the hot path
        if rid is None:
            rid = next(_new_id_block())
        out = b"".join((b'{"@timestamp":"', ts.encode(), site[0], body, site[1], rid.encode(),
                        tail))
        limit = self._max_bytes
        if limit is not None and len(out) > limit:
            return None  # _build() and _truncate() shrink it
        return out

    def _build(self, record: logging.LogRecord) -> tuple[dict[str, Any], bool]:
        """Return (record dict, whether orjson output must be re-checked for null)."""
        # Every attribute is read before record.__dict__ (below): on CPython 3.11 reading
        # __dict__ turns the record's inline attribute values into a dict, after which each
        # attribute read takes the interpreter's slow, unspecialised path.
        ts = self._timestamp(record.created)
        msg = record.msg
        try:
            if type(msg) is str and type(record) is _LogRecord:
                # LogRecord.getMessage() inlined, as it is for a str msg: saves a call. A
                # subclass of LogRecord may override getMessage(), so it is called for those.
                args = record.args
                message = msg % args if args else msg
            else:
                message = record.getMessage()
        except Exception as exc:  # e.g. logger.info("%d", "x")
            message = self._message_fallback(record, exc)
        ecs = self._ecs
        level = record.levelname
        logger = record.name
        where = record.filename if ecs else record.module
        function = record.funcName
        line = record.lineno
        pid = record.process
        thread_name = record.threadName
        exc_info = record.exc_info
        stack = record.stack_info
        rd = record.__dict__
        # A record as LogRecord.__init__ left it (see _INIT_LEN): no extras, no kafkalog_id.
        plain = len(rd) == _INIT_LEN and next(reversed(rd)) == _INIT_LAST_KEY
        rid = None if plain else rd.get("kafkalog_id")
        if not isinstance(rid, str):
            rid = new_record_id()
        if ecs:
            d: dict[str, Any] = {
                "@timestamp": ts,
                "message": message,
                "log": {
                    "level": level.lower(),
                    "logger": logger,
                    "origin": {
                        "file": {"name": where, "line": line},
                        "function": function,
                    },
                },
                "process": {"pid": pid, "thread": {"name": thread_name}},
                "host": {"hostname": _host},
                "event": {"id": rid},
                "ecs": {"version": ECS_VERSION},
            }
            if self._service is not None:
                d["service"] = dict(self._service)
        else:
            d = {
                "@timestamp": ts,
                "level": level,
                "logger": logger,
                "message": message,
                "module": where,
                "function": function,
                "line": line,
                "process": pid,
                "thread_name": thread_name,
                "host": _host,
                "id": rid,
            }
        if _OTEL_TRACE in _modules:
            ids = _trace_ids()
            if ids is not None:
                if ecs:
                    d["trace"] = {"id": ids[0]}
                    d["span"] = {"id": ids[1]}
                else:
                    d["trace_id"], d["span_id"] = ids
        if self._static:
            d.update(self._static)
        recheck = False
        if not plain:
            if tuple(_islice(rd, _INIT_LEN)) == _INIT_KEYS:
                # The standard attributes come first, in LogRecord.__init__'s order (as
                # makeRecord leaves them): only what follows them can be an extra, so the
                # loop looks at those few instead of every attribute.
                recheck = self._add_extras(d, list(_islice(rd.items(), _INIT_LEN, None)))
            elif not _no_extras(rd):
                recheck = self._add_extras(d, list(rd.items()))
        bound = _bound_fields()  # kafkalog.context; the no-context cost is this get and a test
        if bound:
            recheck = self._add_bound(d, bound) or recheck
        if exc_info:
            parts = self._exception(record)
            if parts is not None:
                etype, emsg, trace = parts
                if ecs:
                    d["error"] = {"type": etype, "message": emsg, "stack_trace": trace}
                else:
                    d["exception"] = {"type": etype, "message": emsg, "stacktrace": trace}
        if stack:
            if ecs:
                d["log"]["origin"]["stack_trace"] = stack
            else:
                d["stack"] = stack
        return d, recheck

    def _add_extras(self, d: dict[str, Any], items: list[tuple[Any, Any]]) -> bool:
        """Add the extras among a record's ``items`` (attribute name, value) to ``d``."""
        reserved = self._reserved
        redact = self._redact
        if redact is not None:
            decided, field = redact.decided, redact.field
        recheck = False
        for key, value in items:
            if key in _STD_ATTRS:
                continue
            name = key if type(key) is str else _sanitize_key(key)
            # Never overwrite a core/static field or an earlier extra.
            while name in reserved or name in d:
                name = "extra_" + name
            # The recheck below looks at the original value: masking only removes inf/NaN.
            if redact is None:
                d[name] = value
            elif type(value) in _LEAF_TYPES and type(key) is str and decided(key) is False:
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

    def _add_bound(self, d: dict[str, Any], bound: dict[str, Any]) -> bool:
        """Add the fields bound with :mod:`kafkalog.context`, after the extras.

        They lose every clash: a name held by a core, static or extra field keeps its value,
        and the bound one is written as ``extra_<name>`` - unless it equals what is already
        there (say, the same request id bound and passed as an extra), which is not repeated.
        """
        reserved = self._reserved
        redact = self._redact
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
                recheck = t is not float or value - value != 0.0  # same rule as _add_extras
        return recheck

    # ----------------------------------------------------------------- public API

    def to_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """Return the record as a dict in the configured schema.

        Extra values are the caller's original objects (not yet made
        JSON-safe; :meth:`encode` does that) and nested static values may be
        shared between calls, so treat the result as read-only.  Never
        raises: if the record cannot be read, a minimal dict is returned.
        """
        try:
            return self._build(record)[0]
        except Exception as exc:
            return self._minimal_dict(record, None, self._failure_note(record, exc))

    def encode(self, record: logging.LogRecord) -> bytes:
        """Serialise ``record`` to compact UTF-8 JSON bytes.  Never raises.

        The bytes object owns only its length (orjson's own output buffer
        is 4 KiB or more), so records can be kept in a queue without pinning
        more memory than their size.

        Values orjson cannot encode are converted (see the module's helpers):
        datetimes to ISO strings, Decimal/UUID to strings, sets to lists,
        bytes decoded with backslash escapes, out-of-range ints to strings,
        inf/NaN to ``"Infinity"``/``"-Infinity"``/``"NaN"``, lone surrogates
        to ``\\udXXX`` escapes, anything else to its repr (or a placeholder
        when repr and str both fail); cycles and nesting beyond 32 levels
        become placeholders.

        With ``max_bytes``, an oversized record is shrunk - ``message`` first,
        then the traceback/stack, the exception message, then the largest
        extras (each turned into a truncated JSON string) - on UTF-8
        character boundaries with a ``…[truncated N bytes]`` marker, and
        ``"truncated": true`` is added.  If even that cannot fit, a minimal
        record (timestamp, level, logger, id, message) is returned, possibly
        still larger than ``max_bytes``.

        Only ``BaseException``s that are not ``Exception`` (e.g.
        ``KeyboardInterrupt`` raised inside a user ``__repr__``) propagate.
        """
        tail = self._plain_tail
        if tail is not None:
            try:
                out = self._encode_plain(record, tail)
            except Exception:
                out = None  # _build() below handles whatever went wrong, and says so
            if out is not None:
                return out
        try:
            d, recheck = self._build(record)
        except Exception as exc:
            return _sized(self._minimal(record, None, self._failure_note(record, exc)))
        try:
            try:
                out = _dumps(d, default=_default, option=_OPT_SLICEABLE)
            except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
                d, out = self._after_type_error(d, recheck, exc)
            else:
                if recheck and b"null" in out:
                    # orjson writes inf/NaN as null without calling default; only a
                    # walk can tell them apart from a genuine None.
                    d = _sanitize(d, 0, set())
                    out = _dumps(d, option=_OPT_SLICEABLE)
                out = out[:-1]  # without the newline: the right-sized copy
            limit = self._max_bytes
            if limit is not None and len(out) > limit:
                return _sized(self._truncate(record, d, out, limit))
            return out
        except Exception as exc:
            return _sized(
                self._minimal(record, self._id_of(d), self._failure_note(record, exc))
            )

    def format(self, record: logging.LogRecord) -> str:
        """stdlib-compatible entry point: :meth:`encode` decoded to ``str``."""
        return self.encode(record).decode("utf-8", "replace")

    # ----------------------------------------------------------------- slow paths

    @staticmethod
    def _after_type_error(
        d: dict[str, Any], recheck: bool, exc: TypeError
    ) -> tuple[dict[str, Any], bytes]:
        """orjson refused ``d``: retry, else make it JSON-safe. Returns right-sized bytes."""
        retried: bytes | None = None
        if "key must be str" in str(exc):
            # Cheap C-level retry first: int/UUID/datetime/... keys.
            try:
                retried = _dumps(d, default=_default, option=_OPT_NON_STR_KEYS)
            except TypeError:
                retried = None
        if retried is None or (recheck and b"null" in retried):
            # The null check as in encode(): inf/NaN written as null.
            d = _sanitize(d, 0, set())
            return d, _sized(_dumps(d))
        return d, _sized(retried)

    def _id_of(self, d: dict[str, Any]) -> str | None:
        try:
            rid = d["event"]["id"] if self._ecs else d["id"]
            return rid if isinstance(rid, str) else None
        except Exception:
            return None

    @staticmethod
    def _failure_note(record: object, exc: BaseException) -> str:
        try:
            msg = _plain_str(record.getMessage())  # type: ignore[attr-defined]
        except Exception:
            msg = _plain_str(getattr(record, "msg", ""))
        return (
            f"[kafkalog: log record could not be serialised: "
            f"{_type_name(exc)}: {_safe_str(exc)[:500]}] {msg}"
        )

    def _minimal_dict(self, record: object, rid: str | None, message: Any) -> dict[str, Any]:
        if rid is None:
            candidate = getattr(record, "kafkalog_id", None)
            rid = candidate if isinstance(candidate, str) else new_record_id()
        level = _plain_str(getattr(record, "levelname", None))
        logger = _plain_str(getattr(record, "name", None))
        ts = self._safe_timestamp(record)
        if self._ecs:
            return {
                "@timestamp": ts,
                "message": message,
                "log": {"level": level.lower(), "logger": logger},
                "event": {"id": rid},
                "ecs": {"version": ECS_VERSION},
            }
        return {"@timestamp": ts, "level": level, "logger": logger, "id": rid, "message": message}

    def _minimal(
        self, record: object, rid: str | None, message: object, truncated: bool = False
    ) -> bytes:
        """Smallest useful record; respects max_bytes by cutting the message."""
        try:
            text = _plain_str(message)
            m = self._minimal_dict(record, rid, text)
            if truncated:
                m["truncated"] = True
            out = _dumps(m)
            limit = self._max_bytes
            if limit is not None and len(out) > limit:
                if not truncated:
                    m["truncated"] = True
                    out = _dumps(m)
                over = len(out) - limit
                old_len = len(_dumps(text))
                new, new_len = _shrink(text, old_len, over)
                if new_len < old_len:
                    m["message"] = new
                    out = _dumps(m)
            return out
        except Exception:
            return _LAST_RESORT

    def _truncate(
        self, record: logging.LogRecord, d: dict[str, Any], out: bytes, limit: int
    ) -> bytes:
        """Shrink fields of ``d`` until its encoding fits ``limit`` bytes.

        Size bookkeeping is arithmetic (orjson output is compact, so replacing
        one value changes the total by exactly the difference of the two
        values' encodings); the whole record is re-serialised once at the
        end.  Each field is encoded a bounded number of times: linear overall.
        """

        def size(value: Any) -> int:
            return len(_dumps(value, default=_default, option=_OPT_NON_STR_KEYS))

        d["truncated"] = True
        over = len(out) + _TRUNCATED_SUFFIX_LEN - limit

        def shrink(container: dict[str, Any], key: str) -> None:
            nonlocal over
            value = container[key]
            if isinstance(value, str):
                text, old_len = value, size(value)
            else:
                raw = _dumps(value, default=_default, option=_OPT_NON_STR_KEYS)
                text, old_len = raw.decode("utf-8"), len(raw)
            new, new_len = _shrink(text, old_len, over)
            if new_len < old_len:
                container[key] = new
                over -= old_len - new_len

        for path in self._truncate_paths:
            if over <= 0:
                break
            container: Any = d
            for part in path[:-1]:
                container = container.get(part) if isinstance(container, dict) else None
            if isinstance(container, dict) and isinstance(container.get(path[-1]), str):
                shrink(container, path[-1])

        if over > 0:
            # Largest extras first, so few of them are touched.
            fixed = self._reserved
            extras = sorted(((size(v), k) for k, v in d.items() if k not in fixed), reverse=True)
            for _size, key in extras:
                if over <= 0:
                    break
                shrink(d, key)

        if over <= 0:
            final = _dumps(d, default=_default, option=_OPT_NON_STR_KEYS)
            if len(final) <= limit:
                return final
        # Could not fit (or the bookkeeping was off because a repr changed
        # between calls): ship the minimal record with whatever message is left.
        message = d.get("message", "")
        return self._minimal(record, self._id_of(d), message, truncated=True)
