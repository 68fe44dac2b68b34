"""The ``kafkalog tail`` command without a broker: parsing, filters, output, the read loop."""

from __future__ import annotations

import datetime as dt
import io
import re

import kafka.errors
import orjson
import pytest
from rich.console import Console

import kafkalog.client.reader
from kafkalog.cli.common import EXIT_DNS, EXIT_REFUSED, EXIT_USAGE
from kafkalog.cli.main import build_parser, main
from kafkalog.cli.tail import _start_at, _tail_loop, parse_since
from kafkalog.cli.tail_records import (
    DedupeWindow,
    LogLine,
    RecordFilter,
    TailPrinter,
    level_number,
)
from kafkalog.client.reader import ConsumedRecord

NOW = 1_800_000_000.0


def consumed(value: bytes | dict[str, object], offset: int = 0) -> ConsumedRecord:
    data = value if isinstance(value, bytes) else orjson.dumps(value)
    return ConsumedRecord(partition=0, offset=offset, timestamp_ms=1_700_000_000_000, key=None,
                          value=data)


DEFAULT_RECORD = {
    "@timestamp": "2026-03-01T12:34:56.789012Z", "level": "ERROR", "logger": "billing.api",
    "message": "lookup failed", "module": "api", "id": "abc-1", "uid": "u-1",
    "exception": {"type": "KeyError", "message": "'invoice'",
                  "stacktrace": "Traceback (most recent call last):\n  File \"x.py\", line 1, "
                                "in <module>\nKeyError: 'invoice'"},
}
ECS_RECORD = {
    "@timestamp": "2026-03-01T12:34:56.789012Z", "message": "slow query",
    "log": {"level": "warning", "logger": "app.db"}, "event": {"id": "ecs-7"},
    "ecs": {"version": "8.11.0"}, "service": {"name": "billing"}, "table": "users",
}


# -- --since ---------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("text", "seconds_back"),
    [("10m", 600), ("90s", 90), ("1h30m", 5400), ("2d", 172800), ("500ms", 0.5), ("1w", 604800),
     ("1.5h", 5400), ("1h 30m", 5400)],
)
def test_since_accepts_durations(text: str, seconds_back: float) -> None:
    assert parse_since(text, now=NOW) == pytest.approx(NOW - seconds_back)


def test_since_accepts_iso_times_and_reads_a_missing_zone_as_utc() -> None:
    expected = dt.datetime(2027, 1, 15, 8, tzinfo=dt.timezone.utc).timestamp()
    assert parse_since("2027-01-15T08:00:00Z") == expected
    assert parse_since("2027-01-15T08:00:00") == parse_since("2027-01-15T08:00:00+00:00")
    assert parse_since("2027-01-15T09:00:00+01:00") == parse_since("2027-01-15T08:00:00Z")


@pytest.mark.parametrize("text", ["", "ten minutes", "10x", "m10", "-5m", "2027-13-40"])
def test_since_rejects_what_it_cannot_read(text: str) -> None:
    with pytest.raises(ValueError, match="duration"):
        parse_since(text, now=NOW)


# -- arguments -------------------------------------------------------------------------------------

def test_tail_arguments_and_their_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KAFKALOG_BOOTSTRAP_SERVERS", raising=False)
    args = build_parser().parse_args(["tail", "--topic", "logs"])
    assert args.topic == "logs"
    assert args.group is None
    assert args.follow is False
    assert args.json is False
    assert args.dedupe is False
    assert args.lines == 10
    assert args.from_beginning is False
    args = build_parser().parse_args([
        "tail", "--topic", "logs", "--bootstrap-servers", "a:1,b:2", "--group", "g",
        "--from-beginning", "-f", "--level", "WARNING", "--logger", "app", "--grep", "x+",
        "--json", "--dedupe", "--dedupe-window", "5",
    ])
    assert (args.bootstrap_servers, args.group, args.follow, args.level) == ("a:1,b:2", "g",
                                                                            True, "WARNING")
    assert (args.logger, args.grep, args.json, args.dedupe_window) == ("app", "x+", True, 5)


@pytest.mark.parametrize(
    "option", [["--since", "yesterday"], ["--level", "LOUD"], ["--grep", "(unclosed"]]
)
def test_bad_filter_values_exit_with_usage_before_connecting(
    option: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    # Port 1 on loopback: if tail tried to connect, it would fail with another code.
    code = main(["tail", "--topic", "t", "--bootstrap-servers", "127.0.0.1:1", *option])
    assert code == EXIT_USAGE
    assert "kafkalog tail:" in capsys.readouterr().err


def test_zero_lines_with_follow_starts_at_the_end() -> None:
    args = build_parser().parse_args(["tail", "--topic", "logs", "-n", "0", "-f"])
    assert (args.lines, args.follow) == (0, True)
    start = _start_at(args)
    assert (start.beginning, start.since_ms, start.last) == (False, None, 0)


@pytest.mark.parametrize(
    ("servers", "code", "kind"),
    [("127.0.0.1:1", EXIT_REFUSED, "(refused)"),
     ("127.0.0.1:1,127.0.0.1:2", EXIT_REFUSED, "(refused)"),
     ("no-such-host.invalid:9092", EXIT_DNS, "(dns)")],
)
def test_a_refused_port_or_an_unknown_name_fails_at_once_with_checks_code(
    servers: str, code: int, kind: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    def no_consumer(*args: object, **kwargs: object) -> None:
        raise AssertionError("the consumer was built: it retries until --timeout")

    # tail imports the reader when it runs (the command's parser imports no Kafka client).
    monkeypatch.setattr(kafkalog.client.reader, "TopicReader", no_consumer)
    assert main(["tail", "--topic", "t", "--bootstrap-servers", servers]) == code
    err = capsys.readouterr().err
    assert kind in err
    assert "kafkalog check" in err


# -- reading records -------------------------------------------------------------------------------

def test_log_line_reads_the_default_schema() -> None:
    line = LogLine(consumed(DEFAULT_RECORD))
    assert (line.level, line.logger, line.message) == ("ERROR", "billing.api", "lookup failed")
    assert line.record_id == "abc-1"
    assert line.timestamp == "2026-03-01 12:34:56.789"
    assert line.traceback is not None and line.traceback.endswith("KeyError: 'invoice'")
    assert line.extras() == {"uid": "u-1"}


def test_log_line_reads_the_ecs_schema() -> None:
    line = LogLine(consumed(ECS_RECORD))
    assert (line.level, line.logger, line.message) == ("WARNING", "app.db", "slow query")
    assert line.record_id == "ecs-7"
    assert line.extras() == {"table": "users"}


def test_log_line_of_plain_text_is_its_text() -> None:
    line = LogLine(consumed(b"2026-03-01 INFO plain text from a stdlib formatter"))
    assert line.fields is None
    assert line.message == "2026-03-01 INFO plain text from a stdlib formatter"
    assert line.level is None
    assert line.timestamp == "2023-11-14 22:13:20.000"  # Kafka's timestamp instead


def test_level_names_include_aliases() -> None:
    assert level_number("warn") == level_number("WARNING") == 30
    assert level_number("fatal") == 50
    assert level_number("LOUD") is None


# -- filters and dedupe ----------------------------------------------------------------------------

def test_level_filter_keeps_that_level_and_above_and_drops_unknown_levels() -> None:
    only_warnings = RecordFilter(min_level=30)
    assert only_warnings.matches(LogLine(consumed(DEFAULT_RECORD)))  # ERROR
    assert only_warnings.matches(LogLine(consumed(ECS_RECORD)))  # warning
    assert not only_warnings.matches(LogLine(consumed({**DEFAULT_RECORD, "level": "INFO"})))
    assert not only_warnings.matches(LogLine(consumed({**DEFAULT_RECORD, "level": "TRACE"})))
    assert not only_warnings.matches(LogLine(consumed(b"not json")))


def test_logger_filter_follows_the_logger_hierarchy() -> None:
    selector = RecordFilter(logger="app")
    for name, expected in (("app", True), ("app.db", True), ("application", False),
                           ("other.app", False)):
        line = LogLine(consumed({**DEFAULT_RECORD, "logger": name}))
        assert selector.matches(line) is expected, name


def test_grep_searches_the_message_and_the_traceback() -> None:
    line = LogLine(consumed(DEFAULT_RECORD))
    assert RecordFilter(pattern=re.compile("lookup")).matches(line)
    assert RecordFilter(pattern=re.compile(r"KeyError: 'inv")).matches(line)
    assert not RecordFilter(pattern=re.compile("billing")).matches(line)  # the logger, not text
    assert RecordFilter(pattern=re.compile("plain")).matches(LogLine(consumed(b"plain text")))


def test_dedupe_window_forgets_the_oldest_ids() -> None:
    window = DedupeWindow(2)
    assert window.first_time("a")
    assert window.first_time("b")
    assert not window.first_time("a")  # seen; now the most recent
    assert window.first_time("c")  # pushes "b" out
    assert window.first_time("b")  # forgotten, so printed again
    assert not window.first_time("c")
    assert window.first_time(None) and window.first_time(None)  # no id: never a duplicate
    assert window.dropped == 2
    with pytest.raises(ValueError, match="at least one"):
        DedupeWindow(0)


def test_dedupe_window_memory_stays_bounded() -> None:
    window = DedupeWindow(100)
    for i in range(10_000):
        window.first_time(f"id-{i}")
    assert len(window._seen) == 100


# -- output ----------------------------------------------------------------------------------------

def test_json_output_passes_the_value_through_unchanged() -> None:
    raw = io.BytesIO()
    printer = TailPrinter(pretty=False, console=Console(file=io.StringIO()), raw=raw)
    value = b'{"message":"caf\xc3\xa9","level":"INFO","z":1,  "a":2}'
    printer.write(LogLine(consumed(value)))
    printer.write(LogLine(consumed(b"plain line\n")))
    printer.flush()
    assert raw.getvalue() == value + b"\nplain line\n"


def test_pretty_output_colours_by_level_and_shows_the_traceback() -> None:
    text = io.StringIO()
    console = Console(file=text, force_terminal=True, color_system="standard", width=200)
    printer = TailPrinter(pretty=True, console=console, raw=io.BytesIO())
    printer.write(LogLine(consumed(DEFAULT_RECORD)))
    printer.write(LogLine(consumed({**DEFAULT_RECORD, "level": "INFO", "exception": None})))
    out = text.getvalue()
    plain = re.sub(r"\x1b\[[0-9;]*m", "", out)
    assert "2026-03-01 12:34:56.789 ERROR    billing.api lookup failed uid=u-1" in plain
    assert "Traceback (most recent call last):" in plain
    assert "KeyError: 'invoice'" in plain
    assert "\x1b[1;31mERROR" in out  # bold red
    assert "\x1b[32mINFO" in out  # green


# -- the tail loop, with a scripted reader ---------------------------------------------------------

class ScriptedReader:
    """Stands in for TopicReader: hands out batches, then says it caught up."""

    def __init__(self, batches: list[list[ConsumedRecord]], fail_commits: int = 0) -> None:
        self.batches = batches
        self.commits: list[dict[int, int]] = []
        self.fail_commits = fail_commits
        self.printed_before_commit: list[int] = []
        self.out: io.BytesIO | None = None

    def caught_up(self) -> bool:
        return not self.batches

    def poll(self, timeout_s: float) -> list[ConsumedRecord]:
        return self.batches.pop(0) if self.batches else []

    def commit(self, offsets: dict[int, int]) -> None:
        assert self.out is not None
        self.printed_before_commit.append(self.out.getvalue().count(b"\n"))
        if self.fail_commits:
            self.fail_commits -= 1
            raise kafka.errors.CommitFailedError("rebalanced")
        self.commits.append(dict(offsets))


def run_loop(reader: ScriptedReader, *argv: str) -> tuple[int, bytes, str]:
    args = build_parser().parse_args(["tail", "--topic", "t", *argv])
    raw = io.BytesIO()
    reader.out = raw
    err = io.StringIO()
    printer = TailPrinter(pretty=False, console=Console(file=io.StringIO()), raw=raw)
    selector = RecordFilter(min_level=level_number(args.level) if args.level else None)
    window = DedupeWindow(args.dedupe_window) if args.dedupe else None
    code = _tail_loop(args, reader, printer, selector=selector, window=window,
                      printed={}, err=Console(file=err))
    return code, raw.getvalue(), err.getvalue()


def test_tail_loop_commits_after_printing_including_filtered_records() -> None:
    info = {**DEFAULT_RECORD, "level": "INFO", "id": "i"}
    reader = ScriptedReader([
        [consumed(DEFAULT_RECORD, offset=0), consumed(info, offset=1)],
        [consumed({**DEFAULT_RECORD, "id": "x"}, offset=2)],
    ])
    code, out, _ = run_loop(reader, "--level", "ERROR")
    assert code == 0
    assert out.count(b"\n") == 2  # the INFO record was filtered out
    assert reader.commits == [{0: 2}, {0: 3}]  # ...but counts as read
    assert reader.printed_before_commit == [1, 2]  # each commit came after its batch's output


def test_tail_loop_goes_on_when_a_commit_fails() -> None:
    reader = ScriptedReader([[consumed(DEFAULT_RECORD, offset=0)],
                             [consumed(DEFAULT_RECORD, offset=1)]], fail_commits=1)
    code, out, err = run_loop(reader, "--dedupe")
    assert code == 0
    assert out.count(b"\n") == 1  # the same id twice: printed once
    assert reader.commits == [{0: 2}]
    assert "could not commit offsets (CommitFailedError)" in err
