"""The fast path for a plain record in the default schema: its JSON joined from bytes made once
per call site, without building a dict.

Plain: a ``LogRecord`` as ``makeRecord`` leaves it, a ``str`` message that formats, no
exception or stack, nothing bound with :mod:`kafkalog.context` and no active OpenTelemetry span;
its ``extra=`` fields, if any, flat scalars that are written as they are
(:func:`~kafkalog.formatting.extras.flat_extras`). Nearly every log call is one, so this runs on
the application's thread for most records: globals are read as plain module names and the
common cases are inlined.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterator
from typing import Any, Final, Protocol

import orjson

from kafkalog.context import fields_get as _bound_fields
from kafkalog.context import trace_ids as _trace_ids
from kafkalog.formatting.extras import flat_extras
from kafkalog.formatting.ids import current_host, current_ids, new_record_id
from kafkalog.formatting.redaction import Redactor
from kafkalog.formatting.sanitize import json_default
from kafkalog.formatting.schema import DIGITS3, INIT_LAST_KEY, INIT_LEN, OTEL_TRACE

__all__ = ["encode_plain"]

_dumps = orjson.dumps
_LogRecord: Final = logging.LogRecord
_modules: Final = sys.modules


class _Formatter(Protocol):
    """What :func:`encode_plain` reads of the :class:`~kafkalog.JsonFormatter` it works for."""

    _ts_cache: tuple[float, str]
    _max_bytes: int | None
    _reserved: frozenset[str]
    _redact: Redactor | None
    _flat_keys: dict[str, bool]

    def _timestamp(self, created: float) -> str: ...


# Call site (level, logger, module, function, line, pid, thread name) -> the JSON around a
# plain record's message: from after the timestamp to the message, and from after the
# message to the id. Cleared when full, and in a forked child (its pid and host differ).
_sites: dict[tuple[Any, ...], tuple[bytes, bytes]] = {}
_SITES_MAX: Final = 4096
# Call sites whose extras were not flat once (see flat_extras): looking at their extras again
# would only add to what their records cost on the dict path. Cleared like _sites.
_dict_sites: set[tuple[Any, ...]] = set()

# The block of ids this path takes from: the iterator new_record_id() takes from, adopted
# whenever it runs dry (see current_ids), so plain and other records share one sequence.
_ids: Iterator[str] = iter(())


def _site(key: tuple[Any, ...]) -> tuple[bytes, bytes]:
    """The two fixed parts of a plain record's JSON for one call site (see encode_plain).

    Each value goes through orjson as it would inside the record's dict, so the bytes are the
    same as the dict's.
    """
    level, name, module, function, line, pid, thread_name = (
        _dumps(v, default=json_default) for v in key)
    before = b'","level":' + level + b',"logger":' + name + b',"message":'
    after = (b',"module":' + module + b',"function":' + function + b',"line":' + line
             + b',"process":' + pid + b',"thread_name":' + thread_name + b',"host":'
             + _dumps(current_host()) + b',"id":"')
    if len(_sites) >= _SITES_MAX:
        _sites.clear()
    _sites[key] = (before, after)
    return before, after


def _next_block_id() -> str:
    """An id from new_record_id(), which starts a new block if need be; then adopt its block."""
    global _ids  # noqa: PLW0603 - read on the hot path as a plain global
    rid = new_record_id()
    _ids = current_ids()
    return rid


def encode_plain(fmt: _Formatter, record: logging.LogRecord, tail: bytes) -> bytes | None:
    """The JSON of ``record`` in the default schema if it is plain, else None: the record
    then takes :func:`~kafkalog.formatting.build.build_record`.

    ``tail`` is what follows the id: ``fmt``'s static fields and the closing brace. A plain
    record's fields other than the timestamp, message and id repeat for every call from one
    line of code, so their JSON is made once per call site (see :func:`_site`) and joined
    with the rest; flat extras go after the static fields. The bytes are the same as
    ``build_record`` and orjson give (property tests compare them).
    """
    if type(record) is not _LogRecord:
        return None
    msg = record.msg
    if type(msg) is not str:
        return None
    # As in build_record: every attribute is read before record.__dict__.
    created = record.created
    args = record.args
    site_key = (record.levelname, record.name, record.module, record.funcName,
                record.lineno, record.process, record.threadName)
    if record.exc_info or record.stack_info:
        return None
    rd = record.__dict__
    if _bound_fields() or (OTEL_TRACE in _modules and _trace_ids() is not None):
        return None  # bound fields, or an active span's ids: build_record() adds them
    extras = None
    if len(rd) != INIT_LEN or next(reversed(rd)) != INIT_LAST_KEY:
        # Extras (or a kafkalog_id): scalars under plain names are written after the static
        # fields as build_record() would write them; anything else takes build_record(), and
        # so does every later record of a call site that has logged such extras once.
        if site_key in _dict_sites:
            return None
        extras = flat_extras(rd, fmt._flat_keys, fmt._reserved, fmt._redact)
        if extras is None:
            if len(_dict_sites) >= _SITES_MAX:
                _dict_sites.clear()
            _dict_sites.add(site_key)
            return None
    try:
        message = msg % args if args else msg
    except Exception:
        return None  # build_record() writes the template and the args, and why
    try:
        body = _dumps(message)
    except TypeError:
        return None  # e.g. a lone surrogate: build_record() escapes it
    # fmt._timestamp() inlined for a record in the cached second (nearly all of them). A
    # difference in [0, 1) means floor(created) is the cached second, so the rounding is
    # exactly _timestamp()'s; anything else (another second, a carry, NaN, a created
    # that is not a float) takes _timestamp().
    cache = fmt._ts_cache
    try:
        frac = created - cache[0]
    except TypeError:
        frac = -1.0
    if 0.0 <= frac < 1.0 and (us := round(frac * 1_000_000)) < 1_000_000:
        ts = f"{cache[1]}{DIGITS3[us // 1000]}{DIGITS3[us % 1000]}Z"
    else:
        ts = fmt._timestamp(created)
    site = _sites.get(site_key)
    if site is None:
        site = _site(site_key)
    rid = next(_ids, None)  # new_record_id() inlined: this is the hot path
    if rid is None:
        rid = _next_block_id()
    if extras is None:
        out = b"".join((b'{"@timestamp":"', ts.encode(), site[0], body, site[1], rid.encode(),
                        tail))
    else:  # the tail without its closing brace, then the extras' object without its "{"
        out = b"".join((b'{"@timestamp":"', ts.encode(), site[0], body, site[1], rid.encode(),
                        tail[:-1], b",", extras[1:]))
    limit = fmt._max_bytes
    if limit is not None and len(out) > limit:
        return None  # build_record() and truncation shrink it
    return out


def _after_fork_in_child() -> None:
    # The child has another pid, maybe another host, and must not take ids from the parent's
    # block (ids.py gives it a new prefix; this global would still hold the parent's).
    global _ids  # noqa: PLW0603 - read on the hot path as a plain global
    _sites.clear()
    _dict_sites.clear()
    _ids = iter(())


if hasattr(os, "register_at_fork"):  # absent on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
