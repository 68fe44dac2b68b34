"""Turn a :class:`logging.LogRecord` into one JSON document (UTF-8 bytes) for Kafka.

This module has one job: serialise log records quickly and *never* raise while
doing it.  It runs on the application's hot path (inside ``Handler.emit``), so
the common case - a plain record with no extras and no exception - goes through
the per-call-site fast path (:mod:`kafkalog.formatting.plain`), and every other record
through a single :func:`orjson.dumps` call on its dict (:mod:`kafkalog.formatting.build`).
Everything unusual (values orjson cannot encode, oversized records, broken ``__repr__``
methods, a failing ``getMessage``) is handled here on slower fallback paths that always end
in a valid JSON object.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable, Mapping
from typing import Any, Final

import orjson

from kafkalog.formatting.build import build_record
from kafkalog.formatting.fallback import failure_note, minimal_dict, minimal_record
from kafkalog.formatting.plain import encode_plain
from kafkalog.formatting.redaction import DEFAULT_REDACT_KEYS, Redactor
from kafkalog.formatting.sanitize import json_default, sanitize
from kafkalog.formatting.schema import (
    DEFAULT_CORE,
    DEFAULT_TRUNCATE,
    DIGITS3,
    ECS_CORE,
    ECS_TRUNCATE,
    SCHEMAS,
    split_static_fields,
)
from kafkalog.formatting.truncate import shrink_to_fit

__all__ = ["JsonFormatter"]

_dumps = orjson.dumps
_OPT_NON_STR_KEYS: Final = orjson.OPT_NON_STR_KEYS
# orjson 3.12+ returns its output in a buffer of 4 KiB or more that it never trims, so a kept
# record would pin ~10x its length. With a newline appended, slicing it off again makes the
# right-sized copy: one C-level slice, about half the cost of bytes(memoryview(out)).
_OPT_SLICEABLE: Final = orjson.OPT_APPEND_NEWLINE
_floor = math.floor


def _sized(out: bytes) -> bytes:
    """A copy of ``out`` that owns only its length (see _OPT_SLICEABLE); for the slow paths."""
    return bytes(memoryview(out))


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
    ``log.origin.function``, ``process.pid``, ``process.name``,
    ``process.thread.id``, ``process.thread.name``, ``host.hostname``,
    ``event.id``, ``ecs.version``, then ``service`` and other static
    fields, extras, ``error.type``/``error.message``/
    ``error.stack_trace``, and ``log.origin.stack_trace`` for ``stack_info``
    (not an ECS field; ECS has none for a non-error stack).  Dotted names are
    emitted as nested objects, which Elasticsearch indexes identically.

    Extras (``extra=`` keys) are written at the top level.  An extra whose
    name equals a core field (e.g. ``level``, ``host``, ``log``) or a static
    field is never allowed to overwrite it: it is written as
    ``extra_<name>`` (prefixed again while that name is also taken).  The id
    is ``record.kafkalog_id`` when that is a ``str``, else
    :func:`~kafkalog.formatting.new_record_id`.
    """

    def __init__(
        self,
        schema: str = "default",
        static_fields: Mapping[str, Any] | None = None,
        max_bytes: int | None = None,
        redact_keys: Iterable[str] | None = DEFAULT_REDACT_KEYS,
    ) -> None:
        super().__init__()
        if schema not in SCHEMAS:
            raise ValueError(f"schema must be one of {SCHEMAS!r}, got {schema!r}")
        self._ecs = schema == "ecs"
        self._max_bytes: int | None = None
        self.max_bytes = max_bytes
        # (second, "YYYY-MM-DDTHH:MM:SS.") swapped as one tuple, so threads
        # racing on it always read a consistent pair.  The second is a float:
        # the hot path subtracts it from ``record.created`` (a float).
        self._ts_cache: tuple[float, str] = (-(2.0**63), "")
        self._static, self._service = split_static_fields(static_fields, self._ecs)
        keys = tuple(redact_keys or ())
        self._redact: Redactor | None = Redactor(keys) if keys else None
        if self._redact is not None:
            self._static = self._redact.fields(self._static)
            if self._service is not None:
                self._service = self._redact.fields(self._service)
        core = ECS_CORE if self._ecs else DEFAULT_CORE
        reserved = set(core) | set(self._static)
        if self._service is not None:
            reserved.add("service")
        self._reserved: frozenset[str] = frozenset(reserved)
        self._truncate_paths = ECS_TRUNCATE if self._ecs else DEFAULT_TRUNCATE
        # What follows the id in a plain record's JSON (see plain.encode_plain): the static
        # fields, written once here, and the closing brace. None: every record is built.
        self._plain_tail: bytes | None = None
        # Extra name -> whether the fast path may write it as it is (see extras.flat_extras).
        self._flat_keys: dict[str, bool] = {}
        if not self._ecs:
            static = _dumps(self._static, default=json_default)[1:-1]  # without the braces
            self._plain_tail = b'"' + (b"," + static if static else b"") + b"}"

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

    # ----------------------------------------------------------------- timestamp

    def _timestamp(self, created: float) -> str:
        """``created`` as RFC 3339 UTC with microseconds; refreshes the per-second cache.

        :func:`~kafkalog.formatting.plain.encode_plain` inlines the common case (a record in
        the cached second) and calls this for the rest; both must round the same way.
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
        return f"{cache[1]}{DIGITS3[us // 1000]}{DIGITS3[us % 1000]}Z"

    def _safe_timestamp(self, record: object) -> str:
        try:
            return self._timestamp(record.created)  # type: ignore[attr-defined]
        except Exception:
            return self._timestamp(time.time())  # created missing, NaN, absurd

    # ----------------------------------------------------------------- public API

    def to_dict(self, record: logging.LogRecord) -> dict[str, Any]:
        """Return the record as a dict in the configured schema.

        Extra values are the caller's original objects (not yet made
        JSON-safe; :meth:`encode` does that), and nested static values and
        the ECS ``process``, ``host`` and ``ecs`` objects may be shared between
        calls, so treat the result as read-only.  Never
        raises: if the record cannot be read, a minimal dict is returned.
        """
        try:
            return build_record(self, record)[0]
        except Exception as exc:
            return minimal_dict(record, None, failure_note(record, exc), self._safe_timestamp,
                                self._ecs)

    def encode(self, record: logging.LogRecord) -> bytes:
        """Serialise ``record`` to compact UTF-8 JSON bytes.  Never raises.

        The bytes object owns only its length (orjson's own output buffer
        is 4 KiB or more), so records can be kept in a queue without pinning
        more memory than their size.

        Values orjson cannot encode are converted (:mod:`kafkalog.formatting.sanitize`):
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
                out = encode_plain(self, record, tail)
            except Exception:
                out = None  # build_record() below handles whatever went wrong, and says so
            if out is not None:
                return out
        try:
            d, recheck = build_record(self, record)
        except Exception as exc:
            return _sized(self._minimal(record, None, failure_note(record, exc)))
        try:
            try:
                out = _dumps(d, default=json_default, option=_OPT_SLICEABLE)
            except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
                d, out = self._after_type_error(d, recheck, exc)
            else:
                if recheck and b"null" in out:
                    # orjson writes inf/NaN as null without calling default; only a
                    # walk can tell them apart from a genuine None.
                    d = sanitize(d, 0, set())
                    out = _dumps(d, option=_OPT_SLICEABLE)
                out = out[:-1]  # without the newline: the right-sized copy
            limit = self._max_bytes
            if limit is not None and len(out) > limit:
                return _sized(self._truncate(record, d, out, limit))
            return out
        except Exception as exc:
            return _sized(
                self._minimal(record, self._id_of(d), failure_note(record, exc))
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
                retried = _dumps(d, default=json_default, option=_OPT_NON_STR_KEYS)
            except TypeError:
                retried = None
        if retried is None or (recheck and b"null" in retried):
            # The null check as in encode(): inf/NaN written as null.
            d = sanitize(d, 0, set())
            return d, _sized(_dumps(d))
        return d, _sized(retried)

    def _id_of(self, d: dict[str, Any]) -> str | None:
        try:
            rid = d["event"]["id"] if self._ecs else d["id"]
            return rid if isinstance(rid, str) else None
        except Exception:
            return None

    def _minimal(
        self, record: object, rid: str | None, message: object, truncated: bool = False
    ) -> bytes:
        """Smallest useful record; respects max_bytes by cutting the message."""
        return minimal_record(record, rid, message, stamp=self._safe_timestamp, ecs=self._ecs,
                              limit=self._max_bytes, truncated=truncated)

    def _truncate(
        self, record: logging.LogRecord, d: dict[str, Any], out: bytes, limit: int
    ) -> bytes:
        """Shrink fields of ``d`` until its encoding fits ``limit`` bytes (see
        :func:`~kafkalog.formatting.truncate.shrink_to_fit`)."""
        final = shrink_to_fit(d, out, limit, self._truncate_paths, self._reserved)
        if final is not None:
            return final
        # Could not fit (or the bookkeeping was off because a repr changed
        # between calls): ship the minimal record with whatever message is left.
        message = d.get("message", "")
        return self._minimal(record, self._id_of(d), message, truncated=True)
