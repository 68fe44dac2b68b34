"""A record as the dict of its schema, ``default`` or ``ecs``: the fields read from the
``LogRecord``, trace ids, static fields, extras, bound context and the exception. orjson
encodes the dict; records on the plain fast path (:mod:`kafkalog.formatting.plain`) get the
same bytes without it.
"""

from __future__ import annotations

import logging
import os
import sys
from itertools import islice as _islice
from typing import Any, Final, Protocol

from kafkalog.context import fields_get as _bound_fields
from kafkalog.context import trace_ids as _trace_ids
from kafkalog.formatting.extras import add_bound, add_extras
from kafkalog.formatting.fallback import message_fallback
from kafkalog.formatting.ids import current_host, new_record_id
from kafkalog.formatting.redaction import Redactor
from kafkalog.formatting.sanitize import plain_str, safe_repr, safe_str, type_name
from kafkalog.formatting.schema import (
    ECS_VERSION,
    INIT_KEYS,
    INIT_LAST_KEY,
    INIT_LEN,
    OTEL_TRACE,
    STD_ATTRS,
)

__all__ = ["build_record"]

_no_extras = STD_ATTRS.issuperset
_LogRecord: Final = logging.LogRecord
_modules: Final = sys.modules

# Read for every record that is not plain; a copy of ids.current_host(), renewed after a fork
# by _after_fork_in_child below.
_host = current_host()

# The ECS objects that are the same for many records, built once and shared between records
# (a record's dict is read-only, as to_dict() says): cheaper than building them each time.
# The "process" object of each (pid, process name, thread id, thread name), dropped when
# there are too many and in a forked child.
_ecs_host: dict[str, Any] = {"hostname": _host}
_ECS_VERSION: Final[dict[str, Any]] = {"version": ECS_VERSION}
_ecs_process: dict[tuple[Any, ...], dict[str, Any]] = {}
_ECS_PROCESS_MAX: Final = 1024


class _Formatter(Protocol):
    """What :func:`build_record` reads of the :class:`~kafkalog.JsonFormatter` it works for."""

    _ecs: bool
    _static: dict[str, Any]
    _service: dict[str, Any] | None
    _reserved: frozenset[str]
    _redact: Redactor | None

    def _timestamp(self, created: float) -> str: ...

    def formatException(self, ei: Any) -> str: ...  # noqa: N802 - logging.Formatter's name


def build_record(fmt: _Formatter, record: logging.LogRecord) -> tuple[dict[str, Any], bool]:
    """Return (the dict of ``record`` in ``fmt``'s schema, whether orjson's output must be
    re-checked for an inf/NaN written as null)."""
    # Every attribute is read before record.__dict__ (below): on CPython 3.11 reading
    # __dict__ turns the record's inline attribute values into a dict, after which each
    # attribute read takes the interpreter's slow, unspecialised path.
    ts = fmt._timestamp(record.created)
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
        message = message_fallback(record, exc)
    ecs = fmt._ecs
    level = record.levelname
    logger = record.name
    if ecs:
        where = record.filename
        process_name = record.processName
        thread_id = record.thread
    else:
        where = record.module
    function = record.funcName
    line = record.lineno
    pid = record.process
    thread_name = record.threadName
    exc_info = record.exc_info
    stack = record.stack_info
    rd = record.__dict__
    # A record as LogRecord.__init__ left it (see INIT_LEN): no extras, no kafkalog_id.
    plain = len(rd) == INIT_LEN and next(reversed(rd)) == INIT_LAST_KEY
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
            "process": _process(pid, process_name, thread_id, thread_name),
            "host": _ecs_host,
            "event": {"id": rid},
            "ecs": _ECS_VERSION,
        }
        if fmt._service is not None:
            d["service"] = dict(fmt._service)
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
    if OTEL_TRACE in _modules:
        ids = _trace_ids()
        if ids is not None:
            if ecs:
                d["trace"] = {"id": ids[0]}
                d["span"] = {"id": ids[1]}
            else:
                d["trace_id"], d["span_id"] = ids
    if fmt._static:
        d.update(fmt._static)
    recheck = False
    if not plain:
        if tuple(_islice(rd, INIT_LEN)) == INIT_KEYS:
            # The standard attributes come first, in LogRecord.__init__'s order (as
            # makeRecord leaves them): only what follows them can be an extra, so the
            # loop looks at those few instead of every attribute.
            recheck = add_extras(d, list(_islice(rd.items(), INIT_LEN, None)),
                                 fmt._reserved, fmt._redact)
        elif not _no_extras(rd):
            recheck = add_extras(d, list(rd.items()), fmt._reserved, fmt._redact)
    bound = _bound_fields()  # kafkalog.context; the no-context cost is this get and a test
    if bound:
        recheck = add_bound(d, bound, fmt._reserved, fmt._redact) or recheck
    if exc_info:
        parts = _exception(fmt, record)
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


def _process(pid: Any, name: Any, thread_id: Any, thread_name: Any) -> dict[str, Any]:
    """The ECS ``process`` object (shared, see _ecs_process)."""
    key = (pid, name, thread_id, thread_name)
    try:
        found = _ecs_process.get(key)
    except TypeError:  # an attribute a filter set to something unhashable: not cached
        return {"pid": pid, "name": name, "thread": {"id": thread_id, "name": thread_name}}
    if found is None:
        found = {"pid": pid, "name": name, "thread": {"id": thread_id, "name": thread_name}}
        if len(_ecs_process) >= _ECS_PROCESS_MAX:
            _ecs_process.clear()
        _ecs_process[key] = found
    return found


def _exception(fmt: _Formatter, record: logging.LogRecord) -> tuple[str, str, str] | None:
    """(qualified type, message, formatted traceback) for record.exc_info."""
    ei = record.exc_info
    try:
        etype, evalue, _tb = ei  # type: ignore[misc]
    except Exception:
        return ("<invalid exc_info>", safe_repr(ei), "")
    if etype is None:  # exc_info=True logged outside an except block
        return None
    module = getattr(etype, "__module__", None)
    qualname = getattr(etype, "__qualname__", None) or safe_str(etype)
    # Same naming rule as the traceback module.
    tname = qualname if module in (None, "builtins", "__main__") else f"{module}.{qualname}"
    message = "" if evalue is None else safe_str(evalue)
    text = record.exc_text
    if not text:
        try:
            text = fmt.formatException(ei)
            # Cache like logging.Formatter.format so other handlers reuse it.
            record.exc_text = text
        except Exception as exc:
            text = f"<traceback unavailable: {type_name(exc)}: {safe_str(exc)}>"
    return (plain_str(tname), message, text)


def _after_fork_in_child() -> None:
    # ids.py's own hook has already looked the host up again: it registered first, when this
    # module imported it.
    global _host, _ecs_host  # noqa: PLW0603 - read on the hot path as plain globals
    _host = current_host()
    _ecs_host = {"hostname": _host}
    _ecs_process.clear()  # another pid


if hasattr(os, "register_at_fork"):  # absent on Windows, which has no fork
    os.register_at_fork(after_in_child=_after_fork_in_child)
