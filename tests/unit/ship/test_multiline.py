"""Multi-line events (kafkalog.ship.multiline): real tracebacks from CPython 3.11, Java 17 and
Go 1.21 joined into the event of the line that starts them, the byte ranges of the events,
timeouts, the size limit, and that no rule loses or repeats a byte whatever the input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalog.ship.multiline import RULES, Event, Joiner, check_rule


def lines_of(text: bytes, offset: int = 0) -> list[tuple[bytes, int, int]]:
    """(line, start, end) for each line of ``text``, as a file reader hands them over."""
    out = []
    for line in text.split(b"\n")[:-1]:  # only b"\n" ends a line (a b"\r" stays in it)
        out.append((line, offset, offset + len(line) + 1))
        offset += len(line) + 1
    return out


def join(rule: str | None, text: bytes, max_bytes: int = 1 << 20) -> list[Event]:
    joiner = Joiner(rule, max_bytes=max_bytes, clock=lambda: 0.0)
    events = []
    for line, start, end in lines_of(text):
        events += joiner.feed(line, start, end)
    return events + joiner.flush()


def texts(rule: str | None, text: bytes) -> list[bytes]:
    return [event.data for event in join(rule, text)]


# CPython 3.11, logging.exception() after an exception chained twice ("During handling" and
# "direct cause"), with the 3.11 position markers.
PY_CHAINED = b"""\
2026-12-04 17:38:37,117 ERROR app.orders: failed to price order 42
Traceback (most recent call last):
  File "/srv/app/orders.py", line 14, in handle
    return order["items"][0]["price"] * order["qty"]
           ~~~~~~~~~~~~~~~~~^^^^^^^^^
KeyError: 'price'

During handling of the above exception, another exception occurred:

Traceback (most recent call last):
  File "/srv/app/orders.py", line 9, in read_config
    return load(path)
           ^^^^^^^^^^
  File "/srv/app/orders.py", line 5, in load
    with open(path) as f:
         ^^^^^^^^^^
FileNotFoundError: [Errno 2] No such file or directory: '/etc/orders/missing.json'

The above exception was the direct cause of the following exception:

Traceback (most recent call last):
  File "/srv/app/orders.py", line 18, in <module>
    handle({"items": [{"sku": "A-1"}], "qty": 2})
  File "/srv/app/orders.py", line 16, in handle
    read_config("/etc/orders/missing.json")
  File "/srv/app/orders.py", line 11, in read_config
    raise RuntimeError(f"cannot read config {path!r}") from exc
RuntimeError: cannot read config '/etc/orders/missing.json'
"""

# CPython 3.11: an ExceptionGroup, then a record logged with stack_info=True.
PY_GROUP_AND_STACK = b"""\
2026-12-04 17:45:59,912 ERROR app.jobs: batch 7 failed
  + Exception Group Traceback (most recent call last):
  |   File "/srv/app/jobs.py", line 6, in <module>
  |     raise ExceptionGroup("2 jobs failed", [ValueError("job 3"), TimeoutError("job 5")])
  | ExceptionGroup: 2 jobs failed (2 sub-exceptions)
  +-+---------------- 1 ----------------
    | ValueError: job 3
    +---------------- 2 ----------------
    | TimeoutError: job 5
    +------------------------------------
"""
PY_STACK = b"""\
2026-12-04 17:45:59,914 WARNING app.jobs: slow batch
Stack (most recent call last):
  File "/srv/app/jobs.py", line 9, in <module>
    log.warning("slow batch", stack_info=True)
"""


def test_python_chained_traceback_is_one_event_with_its_log_line() -> None:
    before = b"2026-12-04 17:38:37,100 INFO app.orders: pricing order 42\n"
    after = b"2026-12-04 17:38:37,200 INFO app.orders: next order\n"
    events = join("python", before + PY_CHAINED + after)
    assert [e.data for e in events] == [
        before.rstrip(b"\n"), PY_CHAINED.rstrip(b"\n"), after.rstrip(b"\n")
    ]
    assert [(e.start, e.end) for e in events] == [
        (0, len(before)),
        (len(before), len(before) + len(PY_CHAINED)),
        (len(before) + len(PY_CHAINED), len(before) + len(PY_CHAINED) + len(after)),
    ]


def test_python_exception_group_and_stack_info() -> None:
    after = b"2026-12-04 17:45:59,915 INFO app.jobs: done\n"
    assert texts("python", PY_GROUP_AND_STACK + PY_STACK + after) == [
        PY_GROUP_AND_STACK.rstrip(b"\n"), PY_STACK.rstrip(b"\n"), after.rstrip(b"\n")
    ]


def test_python_traceback_alone_and_two_in_a_row() -> None:
    tb = (b'Traceback (most recent call last):\n  File "x.py", line 1, in <module>\n'
          b"ZeroDivisionError: division by zero\n")
    assert texts("python", tb + tb) == [tb.rstrip(b"\n")] * 2


def test_python_blank_line_after_an_exception_is_counted_but_not_shipped() -> None:
    tb = b"E boom\nTraceback (most recent call last):\n  File \"x.py\", line 1\nValueError: x\n"
    text = tb + b"\n\n" + b"I next\n"
    events = join("python", text)
    assert [e.data for e in events] == [tb.rstrip(b"\n"), b"I next"]
    assert events[0].end == len(tb) + 2 == events[1].start


# Java 17: logback-style log line, then e.printStackTrace() of an exception with a cause.
JAVA_CAUSED_BY = b"""\
2024-05-01 12:00:00.123 ERROR [main] com.example.orders.OrderService - Request failed
java.lang.IllegalStateException: Failed to load order 42
\tat com.example.orders.OrderRepository.load(OrderRepository.java:41)
\tat com.example.orders.OrderService.get(OrderService.java:27)
\tat java.base/java.util.stream.Streams$IntStreamBuilderImpl.forEachRemaining(Streams.java:502)
\tat java.base/java.util.stream.IntPipeline$Head.forEach(IntPipeline.java:617)
\tat com.example.orders.Main.main(Main.java:7)
\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke0(Native Method)
\tat java.base/jdk.internal.reflect.NativeMethodAccessorImpl.invoke(NativeMethodAccessorImpl.java:77)
\tat java.base/jdk.internal.reflect.DelegatingMethodAccessorImpl.invoke(DelegatingMethodAccessorImpl.java:43)
\tat java.base/java.lang.reflect.Method.invoke(Method.java:569)
\tat jdk.compiler/com.sun.tools.javac.launcher.Main.execute(Main.java:419)
\tat jdk.compiler/com.sun.tools.javac.launcher.Main.run(Main.java:192)
\tat jdk.compiler/com.sun.tools.javac.launcher.Main.main(Main.java:132)
Caused by: java.sql.SQLException: Connection refused: db.internal:5432
\tat com.example.orders.OrderRepository.query(OrderRepository.java:58)
\tat com.example.orders.OrderRepository.load(OrderRepository.java:39)
\t... 12 more
"""  # noqa: E501 (the JVM's own frames)
JAVA_SUPPRESSED = b"""\
2024-05-01 12:00:01.002 WARN  [kafka-producer] c.e.Sender - send failed, retrying
java.util.concurrent.TimeoutException: no ack after 30000 ms
\tat Sender.send(Sender.java:6)
\tat Sender.main(Sender.java:10)
\tSuppressed: java.io.IOException: close failed: broken pipe
\t\tat Sender$Conn.close(Sender.java:3)
\t\t... 9 more
"""
JAVA_UNCAUGHT = b"""\
Exception in thread "main" java.lang.IllegalArgumentException: topic must not be empty
\tat Sender.main(Sender.java:13)
"""


def test_java_stack_traces_join_the_log_line_before_them() -> None:
    info = b"2024-05-01 12:00:01.050 INFO  [main] c.e.Sender - giving up\n"
    assert texts("java", JAVA_CAUSED_BY + JAVA_SUPPRESSED + info + JAVA_UNCAUGHT) == [
        JAVA_CAUSED_BY.rstrip(b"\n"), JAVA_SUPPRESSED.rstrip(b"\n"), info.rstrip(b"\n"),
        JAVA_UNCAUGHT.rstrip(b"\n"),
    ]


def test_java_logback_common_frames_and_a_second_exception() -> None:
    trace = (b"2024-05-01 12:00:02 ERROR x - failed\n"
             b"org.springframework.dao.DataAccessException: q\n"
             b"\tat a.B.c(B.java:1)\nWrapped by: java.lang.RuntimeException: w\n"
             b"\tat a.B.d(B.java:2)\n\t... 42 common frames omitted\n")
    second = b"java.lang.NullPointerException\n\tat a.B.e(B.java:3)\n"
    assert texts("java", trace + second) == [trace.rstrip(b"\n"), second.rstrip(b"\n")]


# Go 1.21: `go run` of a nil pointer dereference in a goroutine, and an explicit panic with
# GOTRACEBACK=all.
GO_NIL = b"""\
panic: runtime error: invalid memory address or nil pointer dereference
[signal SIGSEGV: segmentation violation code=0x1 addr=0x0 pc=0x4a63df]

goroutine 6 [running]:
main.(*Server).handle(...)
\t/src/app/main.go:7
main.main.func1()
\t/src/app/main.go:13 +0x1f
created by main.main in goroutine 1
\t/src/app/main.go:13 +0xc5
exit status 2
"""
GO_ALL = b"""\
panic: config "/etc/app.toml": missing key "listen"

goroutine 1 [running]:
main.main()
\t/src/app/main.go:16 +0x119

goroutine 6 [chan receive]:
main.worker(...)
\t/src/app/main.go:9
created by main.main in goroutine 1
\t/src/app/main.go:14 +0xb0
"""


def test_go_panic_is_one_event_up_to_exit_status() -> None:
    log = b"2026/12/04 17:38:45 handling request\n"
    joiner = Joiner("go", max_bytes=1 << 20)
    events = joiner.feed_lines(lines_of(log + GO_NIL))
    # complete at "exit status": nothing waits for a next line or a timeout
    assert [e.data for e in events] == [log.rstrip(b"\n"), GO_NIL.rstrip(b"\n")]
    assert joiner.pending_start is None


def test_go_panic_without_exit_status_ends_at_the_next_log_line() -> None:
    after = b"\n2026/12/04 17:39:00 starting workers (restart 1)\n"
    events = join("go", GO_ALL + after)
    assert [e.data for e in events] == [GO_ALL.rstrip(b"\n"), after.strip(b"\n")]
    assert events[0].end == len(GO_ALL) + 1  # the blank line after the block is counted


def test_go_fatal_error() -> None:
    text = (b"fatal error: all goroutines are asleep - deadlock!\n\ngoroutine 1 [chan receive]:\n"
            b"main.main()\n\t/src/app/main.go:5 +0x25\nexit status 2\n")
    assert texts("go", text) == [text.rstrip(b"\n")]


def test_regex_rule_starts_an_event_where_the_pattern_is_found() -> None:
    text = b"[2024-05-01] a\n  more\nplain\n[2024-05-02] b\n"
    assert texts(r"regex:^\[\d{4}-", text) == [b"[2024-05-01] a\n  more\nplain", b"[2024-05-02] b"]
    utf8 = "x\ncaf\u00e9 y\nz\n".encode()
    assert texts("regex:caf\u00e9", utf8) == [b"x", "caf\u00e9 y\nz".encode()]


def test_no_rule_is_one_event_a_line() -> None:
    text = b"a\n\n  b\nTraceback (most recent call last):\n"
    events = join(None, text)
    assert [(e.data, e.start, e.end) for e in events] == [
        (b"a", 0, 2), (b"", 2, 3), (b"  b", 3, 7), (b"Traceback (most recent call last):", 7, 42)
    ]
    joiner = Joiner(None, max_bytes=100)
    assert joiner.feed_lines(lines_of(text)) == events
    assert joiner.pending_start is None


def test_pending_start_is_the_first_byte_of_the_unfinished_event() -> None:
    joiner = Joiner("java", max_bytes=1 << 20)
    lines = lines_of(JAVA_CAUSED_BY + b"next line\n")
    assert joiner.pending_start is None
    joiner.feed_lines(lines[:3])
    assert joiner.pending_start == 0
    events = joiner.feed_lines(lines[3:])
    assert [e.end for e in events] == [len(JAVA_CAUSED_BY)]
    assert joiner.pending_start == len(JAVA_CAUSED_BY)


def test_the_timeout_completes_the_pending_event() -> None:
    now = [100.0]
    joiner = Joiner("python", timeout_s=5.0, max_bytes=1 << 20, clock=lambda: now[0])
    for line, start, end in lines_of(b"E boom\nTraceback (most recent call last):\n"):
        assert joiner.feed(line, start, end) == []
    now[0] = 104.9
    assert joiner.flush_due() == []
    joiner.feed(b'  File "x.py", line 1', 42, 64)  # a new line restarts the timeout
    now[0] = 109.8
    assert joiner.flush_due() == []
    now[0] = 109.9
    assert joiner.flush_due() == [
        Event(b'E boom\nTraceback (most recent call last):\n  File "x.py", line 1', 0, 64)
    ]
    assert joiner.flush_due() == []
    assert joiner.pending_start is None


def test_flush_hands_back_the_pending_event_once() -> None:
    joiner = Joiner("regex:^x", max_bytes=100)
    joiner.feed(b"x1", 0, 3)
    assert joiner.flush() == [Event(b"x1", 0, 3)]
    assert joiner.flush() == []


def test_an_event_over_max_bytes_is_cut_and_handed_back_at_once() -> None:
    text = b"E start\n" + b"  frame line\n" * 10 + b"E next\n"
    events = join("python", text, max_bytes=30)
    assert events[0] == Event(b"E start\n  frame line\n  frame l", 0, 8 + 13 * 2, True)
    assert all(len(e.data) <= 30 for e in events)
    assert [e.truncated for e in events][-1] is False
    # not a byte lost or counted twice
    assert [e.start for e in events[1:]] == [e.end for e in events[:-1]]
    assert events[-1].end == len(text)


def test_a_single_line_over_max_bytes_is_cut_at_a_character_boundary() -> None:
    line = "\u20ac".encode() * 5  # 3 bytes each
    assert join(None, line + b"\n", max_bytes=10) == [Event(line[:9], 0, 16, True)]
    assert join("java", line + b"\n", max_bytes=10) == [Event(line[:9], 0, 16, True)]


def test_bad_rules_are_value_errors_naming_them() -> None:
    assert RULES == ("python", "java", "go")
    for rule in (*RULES, "regex:^\\d"):
        check_rule(rule)
    with pytest.raises(ValueError, match="'cobol'"):
        check_rule("cobol")
    with pytest.raises(ValueError, match=r"'regex:\(unclosed': bad regex"):
        check_rule("regex:(unclosed")
    with pytest.raises(ValueError, match="pattern is empty"):
        check_rule("regex:")
    with pytest.raises(ValueError, match="'perl'"):
        Joiner("perl", max_bytes=10)
    with pytest.raises(ValueError, match="max_bytes"):
        Joiner(None, max_bytes=0)


# --------------------------------------------------------------------------- properties

_LINES = st.one_of(
    st.binary(max_size=40),
    st.sampled_from([
        b"", b"  ", b"\r", b"Traceback (most recent call last):", b'  File "x.py", line 1',
        b"ValueError: x", b"During handling of the above exception, another exception occurred:",
        b"  + Exception Group Traceback (most recent call last):",
        b"Stack (most recent call last):",
        b"java.lang.IllegalStateException: x", b"\tat a.B.c(B.java:1)", b"Caused by: x.Y: z",
        b"\t... 3 more", b'Exception in thread "main" java.lang.Error', b"panic: boom",
        b"goroutine 1 [running]:", b"main.main()", b"created by main.main", b"exit status 2",
        b"2024-05-01 12:00:00 INFO ok", "caf\u00e9 \u20ac".encode(), b"\xff\xfe\x00",
    ]),
)


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from([None, *RULES, r"regex:^\d", "regex:x*"]),
    st.lists(_LINES, max_size=40),
    st.integers(min_value=1, max_value=60),
    st.booleans(),
)
def test_every_byte_is_in_exactly_one_event_whatever_the_lines(
    rule: str | None, lines: list[bytes], max_bytes: int, batched: bool
) -> None:
    lines = [line.replace(b"\n", b"") for line in lines]
    text = b"".join(line + b"\n" for line in lines)
    joiner = Joiner(rule, max_bytes=max_bytes, clock=lambda: 0.0)
    fed = lines_of(text)
    if batched:
        events = joiner.feed_lines(fed)
    else:
        events = [event for item in fed for event in joiner.feed(*item)]
    events += joiner.flush()
    assert joiner.pending_start is None
    position = 0
    for event in events:
        assert event.start == position < event.end
        assert len(event.data) <= max_bytes
        covered = text[event.start:event.end - 1]  # its lines, joined by their newlines
        if event.truncated:
            assert covered.startswith(event.data)
        else:
            # all of it, but blank lines looked past at its end
            assert covered.startswith(event.data)
            assert not covered[len(event.data):].strip()
        position = event.end
    assert position == len(text)
