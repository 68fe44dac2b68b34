"""Multi-line events (``--multiline``): per file, the continuation lines of a traceback, a stack
trace or a panic are joined into the event that starts them.

A :class:`Joiner` is fed a file's lines in order and hands back complete events with the byte
range of the file they cover; the unfinished event waits for its next line, a timeout or the
file's end. Its first byte (:attr:`Joiner.pending_start`) is as far as the agent may commit.
A rule looks at each line once and says what it is; what the rule says is in the constants
below. Blank lines a rule has to look past (is the exception chained?) count in the event's
byte range but not in its data unless the event goes on after them.
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Iterable
from typing import Final

__all__ = ["RULES", "Event", "Joiner", "check_rule"]

#: The named rules; a rule may also be ``regex:PATTERN``.
RULES: Final[tuple[str, ...]] = ("python", "java", "go")


@dataclasses.dataclass(slots=True)
class Event:
    """One event: its lines joined with ``b"\\n"`` (no final newline), the offset of its first
    byte in the file and the offset just past its last line's newline. ``truncated``: the
    event was longer than ``max_bytes`` and ``data`` is cut (at a UTF-8 character boundary)."""

    data: bytes
    start: int
    end: int
    truncated: bool = False


# What a rule says of a line.
_START: Final = 0  # it starts a new event
_CONT: Final = 1  # it continues the pending event
_HOLD: Final = 2  # it continues the pending event if a later line does (a blank line)
_LAST: Final = 3  # it continues the pending event and completes it

class _Rule:
    """A rule: called with each line, says what it is; most rules keep a state (where in a
    traceback they are), which :meth:`reset` forgets."""

    state = 0  # 0 is each rule's _NORMAL: between events

    def __call__(self, line: bytes) -> int:
        raise NotImplementedError

    def reset(self) -> None:
        self.state = 0


def _blank(line: bytes) -> bool:
    return not line or line.isspace()


class _PythonRule(_Rule):
    """CPython's tracebacks: ``Traceback (most recent call last):``, indented frames, the
    ``ExcType: message`` line, and the chained ones after "During handling of the above
    exception..." / "The above exception was the direct cause..."; exception groups; the
    ``Stack (most recent call last):`` of ``stack_info``. All belong to the line before the
    traceback (the log call's). Other indented lines continue the event too."""

    _NORMAL, _TRACEBACK, _BLOCK, _AFTER, _GAP, _CHAIN = range(6)
    _TB_HEAD = b"Traceback (most recent call last):"
    _STACK_HEAD = b"Stack (most recent call last):"
    _GROUP_HEAD = b"+ Exception Group Traceback (most recent call last):"
    _CHAIN_HEADS = (
        b"During handling of the above exception, another exception occurred:",
        b"The above exception was the direct cause of the following exception:",
    )

    def __init__(self) -> None:
        self.state = self._NORMAL

    def __call__(self, line: bytes) -> int:
        state = self.state
        if state == self._NORMAL:
            return self._normal(line, fresh=False)
        indented = line[:1] in (b" ", b"\t")
        if state == self._TRACEBACK:
            if indented:
                return _CONT
            if _blank(line):  # a traceback cut short of its exception line
                self.state = self._GAP
                return _HOLD
            self.state = self._AFTER  # "ExcType: message"
            return _CONT
        if indented and state != self._CHAIN:  # frames; indented lines after the exception
            return _CONT
        if _blank(line):
            if state == self._CHAIN:
                return _CONT
            self.state = self._GAP
            return _HOLD
        if state == self._GAP and line.startswith(self._CHAIN_HEADS):
            self.state = self._CHAIN
            return _CONT
        if state == self._CHAIN:
            if line.startswith(self._TB_HEAD):
                self.state = self._TRACEBACK
                return _CONT
            if line.lstrip().startswith(self._GROUP_HEAD):
                self.state = self._BLOCK
                return _CONT
        if line.startswith(self._STACK_HEAD):  # logging writes stack_info after the exception
            self.state = self._BLOCK
            return _CONT
        return self._normal(line, fresh=True)

    def _normal(self, line: bytes, *, fresh: bool) -> int:
        """``fresh``: the pending event holds a traceback already, so a new one is a new
        event."""
        self.state = self._NORMAL
        if line.startswith(self._TB_HEAD):
            self.state = self._TRACEBACK
            return _START if fresh else _CONT
        if line[:1] in (b" ", b"\t"):
            if line.lstrip().startswith(self._GROUP_HEAD):
                self.state = self._BLOCK
                return _START if fresh else _CONT
            return _CONT
        if line.startswith(self._STACK_HEAD):
            self.state = self._BLOCK
            return _CONT
        return _START


class _JavaRule(_Rule):
    """Java stack traces: the exception line (``pkg.SomeException: message``) continues the
    log line before it; frames (``\\tat ...``), ``Caused by:``, ``Suppressed:``, ``... N
    more`` and any indented line within the trace continue it. ``Exception in thread ...``
    (the JVM's own report) starts an event."""

    _NORMAL, _HEADER, _TRACE = range(3)
    _FRAME = re.compile(
        rb"[ \t]+(?:at |\.\.\. \d+ (?:more|common frames omitted)|Caused by: |Suppressed: "
        rb"|Wrapped by: )|(?:Caused by|Wrapped by): "
    ).match
    _HEADER_LINE = re.compile(
        rb"(?:[A-Za-z_$][\w$]*\.)+[A-Za-z_$][\w$]*(?:Exception|Error|Throwable)(?::|\s*$)"
    ).match
    _THREAD = b"Exception in thread "

    def __init__(self) -> None:
        self.state = self._NORMAL

    def __call__(self, line: bytes) -> int:
        state = self.state
        if state == self._TRACE and line[:1] in (b" ", b"\t"):
            return _CONT
        if self._FRAME(line):
            self.state = self._TRACE
            return _CONT
        if line.startswith(self._THREAD):
            self.state = self._HEADER
            return _START
        if self._HEADER_LINE(line):
            self.state = self._HEADER
            # after a trace, another exception line is another exception
            return _CONT if state == self._NORMAL else _START
        self.state = self._NORMAL
        return _START


class _GoRule(_Rule):
    """Go panics and fatal errors: ``panic: ...`` (or ``fatal error: ...``) starts an event
    that takes its own lines, the ``goroutine N [state]:`` blocks after blank lines, their
    frames (a function line, an indented file line) and ``created by`` lines, up to ``exit
    status N`` (``go run``'s) or the first line after a block that is none of these."""

    _NORMAL, _PANIC, _GAP, _STACKS = range(4)
    _PANIC_HEADS = (b"panic: ", b"fatal error: ")
    _GOROUTINE = re.compile(rb"goroutine \d+ (?:[^\[]* )?\[[^\]]*\]:").match
    _FRAME = re.compile(rb"[^\s(]+\(.*\)\s*$|created by |\.\.\.additional frames elided").match
    _EXIT = re.compile(rb"exit status \d+\s*$").match

    def __init__(self) -> None:
        self.state = self._NORMAL

    def __call__(self, line: bytes) -> int:
        state = self.state
        if state != self._NORMAL:
            if _blank(line):
                self.state = self._GAP
                return _HOLD
            if self._EXIT(line):
                self.state = self._NORMAL
                return _LAST
            if state == self._PANIC:  # "[signal SIGSEGV ...]", "\tpanic: ... [recovered]"
                return _CONT
            if state == self._GAP and self._GOROUTINE(line):
                self.state = self._STACKS
                return _CONT
            if state == self._STACKS and (line[:1] in (b"\t", b" ") or self._FRAME(line)):
                return _CONT
        if line.startswith(self._PANIC_HEADS):
            self.state = self._PANIC
        elif self._GOROUTINE(line):
            self.state = self._STACKS
        else:
            self.state = self._NORMAL
        return _START


class _PatternRule(_Rule):
    """``regex:PATTERN``: a line in which PATTERN is found (``re.search``, on the line's bytes)
    starts an event; any other line continues it."""

    def __init__(self, pattern: str) -> None:
        self._search = re.compile(pattern.encode("utf-8", "surrogateescape")).search

    def __call__(self, line: bytes) -> int:
        return _START if self._search(line) else _CONT


def _make_rule(rule: str) -> _Rule:
    if rule == "python":
        return _PythonRule()
    if rule == "java":
        return _JavaRule()
    if rule == "go":
        return _GoRule()
    if rule.startswith("regex:"):
        pattern = rule[len("regex:"):]
        if not pattern:
            raise ValueError(f"multiline rule {rule!r}: the pattern is empty")
        try:
            return _PatternRule(pattern)
        except (re.error, OverflowError, RecursionError) as exc:
            raise ValueError(f"multiline rule {rule!r}: bad regex: {exc}") from None
    raise ValueError(
        f"unknown multiline rule {rule!r}: expected one of {', '.join(RULES)} or regex:PATTERN"
    )


def check_rule(rule: str) -> None:
    """Raise ValueError naming the problem if ``rule`` is not a multiline rule."""
    _make_rule(rule)


def _cut(data: bytes, limit: int) -> bytes:
    """``data`` cut to at most ``limit`` bytes, not inside a UTF-8 character."""
    cut = limit
    # back over at most 3 continuation bytes (0b10xxxxxx): a character is 4 bytes at most
    while cut > 0 and cut > limit - 3 and 0x80 <= data[cut] < 0xC0:
        cut -= 1
    return data[:cut]


class Joiner:
    """Per file: joins continuation lines into the event that starts them.

    ``rule``: None (every line is an event), one of :data:`RULES`, or ``regex:PATTERN``
    (PATTERN matches the lines that start an event); a bad one raises ValueError naming it.
    The pending event is complete when a line starts the next one, when ``timeout_s`` has
    passed since its last line (:meth:`flush_due`), or on :meth:`flush`. An event longer than
    ``max_bytes`` is cut, marked ``truncated`` and handed back at once; the lines that still
    continue it start a new event.
    """

    def __init__(
        self,
        rule: str | None,
        *,
        timeout_s: float = 5.0,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be positive, not {max_bytes}")
        self._rule: _Rule | None = None if rule is None else _make_rule(rule)
        self._timeout_s = timeout_s
        self._max_bytes = max_bytes
        self._clock = clock
        self._parts: list[bytes] = []  # the pending event's lines, held blank lines included
        self._kept = 0  # how many of _parts are its data: the held blank lines come after
        self._size = 0  # bytes of b"\n".join(_parts)
        self._start = -1  # the pending event's first byte; -1: none
        self._end = 0
        self._truncated = False
        self._deadline = 0.0

    @property
    def pending_start(self) -> int | None:
        """The offset of the unfinished event's first byte, or None."""
        return None if self._start < 0 else self._start

    def feed(self, line: bytes, start: int, end: int) -> list[Event]:
        """Take the next line of the file (without its newline) and the offsets of its first
        byte and of the byte after its newline; return the events it completes."""
        rule = self._rule
        if rule is None:
            if len(line) > self._max_bytes:
                return [Event(_cut(line, self._max_bytes), start, end, True)]
            return [Event(line, start, end)]
        events: list[Event] = []
        self._take(rule(line), line, start, end, events)
        if self._start >= 0:
            self._deadline = self._clock() + self._timeout_s
        return events

    def feed_lines(self, lines: Iterable[tuple[bytes, int, int]]) -> list[Event]:
        """:meth:`feed` for a batch of ``(line, start, end)`` (as a file reader returns them):
        the events they complete, in order."""
        max_bytes = self._max_bytes
        rule = self._rule
        if rule is None:
            return [
                Event(line, start, end) if len(line) <= max_bytes
                else Event(_cut(line, max_bytes), start, end, True)
                for line, start, end in lines
            ]
        events: list[Event] = []
        take = self._take
        for line, start, end in lines:
            take(rule(line), line, start, end, events)
        if self._start >= 0:
            self._deadline = self._clock() + self._timeout_s
        return events

    def flush_due(self) -> list[Event]:
        """The pending event, if ``timeout_s`` has passed since its last line; the rule then
        starts over."""
        if self._start >= 0 and self._clock() >= self._deadline:
            return self.flush()
        return []

    def flush(self) -> list[Event]:
        """The pending event now (the file is closed, the agent stops); the rule starts over."""
        if self._rule is not None:
            self._rule.reset()
        return [self._close()] if self._start >= 0 else []

    def _take(self, kind: int, line: bytes, start: int, end: int, events: list[Event]) -> None:
        """Add a line the rule called ``kind`` to the pending event; append to ``events`` what
        it completes."""
        if self._start < 0:
            self._open(line, start, end, events)
            if kind == _LAST and self._start >= 0:
                events.append(self._close())
            return
        if kind == _START:
            events.append(self._close())
            self._open(line, start, end, events)
            return
        if kind != _HOLD:
            self._kept = len(self._parts) + 1
        self._append(line, end, events)
        if kind == _LAST and self._start >= 0:
            events.append(self._close())

    def _open(self, line: bytes, start: int, end: int, events: list[Event]) -> None:
        self._start = start
        self._end = end
        if len(line) > self._max_bytes:
            self._parts = [_cut(line, self._max_bytes)]
            self._kept = 1
            self._truncated = True
            events.append(self._close())
            return
        self._parts = [line]
        self._kept = 1
        self._size = len(line)

    def _append(self, line: bytes, end: int, events: list[Event]) -> None:
        self._end = end
        size = self._size + 1 + len(line)
        if size <= self._max_bytes:
            self._parts.append(line)
            self._size = size
            return
        room = self._max_bytes - self._size - 1
        if room > 0:
            self._parts.append(_cut(line, room))
        else:
            self._kept = min(self._kept, len(self._parts))
        self._truncated = True
        events.append(self._close())

    def _close(self) -> Event:
        parts = self._parts
        data = parts[0] if self._kept == 1 else b"\n".join(parts[: self._kept])
        event = Event(data, self._start, self._end, self._truncated)
        self._parts = []
        self._kept = self._size = 0
        self._start = -1
        self._truncated = False
        return event
