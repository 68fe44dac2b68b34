"""Fields bound to the current execution context and added to every record logged in it.

One :class:`contextvars.ContextVar` holds an immutable-by-convention ``dict`` of fields.
Binding never mutates that dict: it sets a new one, so a copy of the context taken by
``asyncio.create_task`` (or ``contextvars.copy_context``) keeps seeing the fields it started
with, and a task's own bindings never leak into its parent or its siblings::

    from kafkalog import context

    with context.bound(request_id="r-17", user_id=42):
        log.info("charged")          # carries request_id and user_id

    token = context.bind(tenant="acme")
    try:
        ...
    finally:
        token.reset()                # back to what was bound before

Threads: a new thread starts with an empty context (the standard ``threading`` behaviour up to
Python 3.13). To carry the caller's fields into a worker thread, run the work inside
``contextvars.copy_context().run(...)``.

Precedence when names clash (documented in docs/guides/context.md): standard fields are never
overwritten, then ``static_fields``, then ``extra=``, then bound fields; a field that loses is
kept under ``extra_<name>``, unless it has the same value as the winner.

OpenTelemetry: :func:`trace_ids` reads the active span when the application has imported
``opentelemetry.trace``; kafkalog itself never imports OpenTelemetry.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar, Token
from types import MappingProxyType, TracebackType
from typing import Any, Final

__all__ = ["Binding", "bind", "bound", "clear", "current", "trace_ids", "unbind"]

_EMPTY: Final[dict[str, Any]] = {}

# The formatter reads this on every record: it must stay a plain ContextVar whose default is
# falsy, so that the no-context case costs one get() and one truth test.
_fields: ContextVar[dict[str, Any]] = ContextVar("kafkalog_fields", default=_EMPTY)

#: ``_fields.get`` bound once; the formatter calls it per record.
fields_get: Final = _fields.get


class Binding:
    """What :func:`bind`, :func:`unbind` and :func:`clear` return: a way back.

    :meth:`reset` restores the fields that were bound before the call. Used as a context
    manager, it resets on exit::

        with context.bind(job="nightly"):
            ...

    Reset it in the same thread or task that made it (a ``contextvars`` rule: resetting in
    another context raises :class:`ValueError`), and only once (:class:`RuntimeError`).
    """

    __slots__ = ("_token",)

    def __init__(self, token: Token[dict[str, Any]]) -> None:
        self._token = token

    def reset(self) -> None:
        """Restore the fields bound before this binding was made."""
        _fields.reset(self._token)

    def __enter__(self) -> Binding:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.reset()


def bind(**fields: Any) -> Binding:
    """Add ``fields`` to every record logged from now on in this context.

    A name bound again takes the new value. Returns a :class:`Binding` whose ``reset()`` (or
    ``with`` exit) undoes this call.
    """
    current_fields = _fields.get()
    # ``fields`` is a fresh dict made for this call, so it can be stored as it is.
    return Binding(_fields.set({**current_fields, **fields} if current_fields else fields))


def unbind(*names: str) -> Binding:
    """Stop adding the fields ``names`` (names that are not bound are ignored)."""
    current_fields = _fields.get()
    return Binding(_fields.set({k: v for k, v in current_fields.items() if k not in names}))


def clear() -> Binding:
    """Remove every bound field in this context."""
    return Binding(_fields.set(_EMPTY))


@contextmanager
def bound(**fields: Any) -> Iterator[Mapping[str, Any]]:
    """Bind ``fields`` inside a ``with`` block only; yields the fields now bound.

    Unlike ``with bind(...)``, nothing is bound until the block is entered.
    """
    binding = bind(**fields)
    try:
        yield current()
    finally:
        binding.reset()


def current() -> Mapping[str, Any]:
    """The fields bound in this context, as a read-only mapping."""
    return MappingProxyType(_fields.get())


# The last span context seen and its ids: records logged in one span (the common case) skip
# the formatting. Swapped as one tuple, so threads always read a matching pair.
_last_span: tuple[object, tuple[str, str] | None] = (None, None)


def trace_ids() -> tuple[str, str] | None:
    """``(trace_id, span_id)`` of the active OpenTelemetry span in hex, or ``None``.

    ``None`` when ``opentelemetry.trace`` has not been imported by the application (kafkalog
    never imports it, so an application without OpenTelemetry pays nothing), when no span is
    active, or when the span is not valid (e.g. the no-op tracer's). Never raises.
    """
    global _last_span  # noqa: PLW0603 - a one-entry cache read on the hot path
    trace = sys.modules.get("opentelemetry.trace")
    if trace is None:
        return None
    try:
        span_context = trace.get_current_span().get_span_context()
        last = _last_span
        if last[0] is span_context:
            return last[1]
        ids = None
        if span_context.is_valid:
            ids = format(span_context.trace_id, "032x"), format(span_context.span_id, "016x")
        _last_span = (span_context, ids)
        return ids
    except Exception:  # a half-imported or broken OpenTelemetry must not break logging
        return None
