"""Syslog lines, RFC 5424 and RFC 3164 (kafkalog.ship.formats_syslog), as rsyslog,
util-linux's logger and the RFCs' own examples write them; the year of a BSD timestamp."""

from __future__ import annotations

import datetime
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalog.ship.parsers import Parsed, parser_for

UTC = datetime.timezone.utc


def epoch(*args: int, tz: datetime.tzinfo = UTC) -> float:
    return datetime.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


def syslog_at(*now: int, tz: datetime.tzinfo = UTC) -> object:
    """The syslog parser with its clock stopped at ``now`` (UTC)."""
    stamp = epoch(*now)
    return parser_for("syslog", clock=lambda: stamp, tz=tz)


syslog = syslog_at(2026, 12, 4, 18, 0, 0)


def parse(line: str) -> Parsed:
    assert callable(syslog)
    parsed = syslog(line)
    assert isinstance(parsed, Parsed)
    return parsed


# --------------------------------------------------------------------------- RFC 5424


def test_rfc5424_from_util_linux_logger() -> None:
    # logger --rfc5424 -t myapp -p local0.err --msgid ID47 --sd-id exampleSDID@32473 ...
    line = (
        '<131>1 2026-12-04T17:38:54.153633+00:00 vm myapp - ID47 [timeQuality tzKnown="1" '
        'isSynced="0"][exampleSDID@32473 iut="3" eventSource="Application"] An application '
        "event log entry"
    )
    assert parse(line) == Parsed(
        "An application event log entry",
        epoch(2026, 12, 4, 17, 38, 54, 153633),
        {
            "facility": 16,
            "severity": 3,
            "level": "error",
            "hostname": "vm",
            "app_name": "myapp",
            "msg_id": "ID47",
            "structured_data": {
                "timeQuality": {"tzKnown": "1", "isSynced": "0"},
                "exampleSDID@32473": {"iut": "3", "eventSource": "Application"},
            },
        },
    )


def test_rfc5424_examples_from_the_rfc() -> None:
    parsed = parse(
        "<34>1 2003-10-11T22:14:15.003Z mymachine.example.com su - ID47 - \ufeff'su root' "
        "failed for lonvick on /dev/pts/8"
    )
    assert parsed.message == "'su root' failed for lonvick on /dev/pts/8"  # BOM dropped
    assert parsed.timestamp == pytest.approx(epoch(2003, 10, 11, 22, 14, 15, 3000))
    assert parsed.fields == {"facility": 4, "severity": 2, "level": "critical",
                             "hostname": "mymachine.example.com", "app_name": "su",
                             "msg_id": "ID47"}
    parsed = parse(
        "<165>1 2003-08-24T05:14:15.000003-07:00 192.0.2.1 myproc 8710 - - %% It's time to "
        "make the do-nuts."
    )
    assert parsed.fields["proc_id"] == 8710
    assert parsed.fields["level"] == "notice"
    assert parsed.timestamp == pytest.approx(epoch(2003, 8, 24, 12, 14, 15, 3))
    # only structured data, no MSG
    parsed = parse(
        '<165>1 2003-10-11T22:14:15.003Z mymachine.example.com evntslog - ID47 [exampleSDID@32473 '
        'iut="3" eventSource="Application" eventID="1011"][examplePriority@32473 class="high"]'
    )
    assert parsed.message == ""
    assert parsed.fields["structured_data"] == {
        "exampleSDID@32473": {"iut": "3", "eventSource": "Application", "eventID": "1011"},
        "examplePriority@32473": {"class": "high"},
    }


def test_rfc5424_escapes_in_structured_data() -> None:
    parsed = parse(r'<14>1 2026-12-04T17:00:00Z h a 1 - [x@1 q="say \"hi\"" p="a\]b" s="c:\\d"] m')
    assert parsed.fields["structured_data"] == {"x@1": {"q": 'say "hi"', "p": "a]b", "s": "c:\\d"}}


def test_rfc5424_nil_values_are_omitted() -> None:
    parsed = parse("<13>1 - - - - - - hello")
    assert parsed == Parsed("hello", None, {"facility": 1, "severity": 5, "level": "notice"})


@pytest.mark.parametrize(
    ("rest", "message"),
    [
        ("-  Accepted publickey", "Accepted publickey"),  # rsyslog: the space after the tag
        ("- \ufeff Accepted publickey", "Accepted publickey"),  # after a BOM too
        ("-    indented", "  indented"),  # one space only: the rest is the sender's
        ("- \t tab", "\t tab"),
    ],
)
def test_rfc5424_the_space_rsyslog_keeps_before_a_local_message_is_dropped(
    rest: str, message: str
) -> None:
    assert parse(f"<38>1 2026-12-04T16:38:29Z web01 sshd 6841 - {rest}").message == message


def test_rfc5424_a_proc_id_that_is_not_a_number_stays_text() -> None:
    assert parse("<13>1 2026-12-04T17:00:00Z h kernel kworker/0:1 - - m").fields["proc_id"] == (
        "kworker/0:1"
    )


# --------------------------------------------------------------------------- RFC 3164


def test_rfc3164_with_pri_from_util_linux_logger() -> None:
    # logger --rfc3164 -t sshd -i -p auth.info ...
    line = ("<38>Dec  4 17:38:54 vm sshd[4614]: Accepted publickey for deploy from 10.0.0.5 port "
            "52144 ssh2")
    assert parse(line) == Parsed(
        "Accepted publickey for deploy from 10.0.0.5 port 52144 ssh2",
        epoch(2026, 12, 4, 17, 38, 54),
        {"facility": 4, "severity": 6, "level": "info", "hostname": "vm", "app_name": "sshd",
         "proc_id": 4614},
    )


@pytest.mark.parametrize(
    ("line", "fields", "message"),
    [
        # rsyslog's RSYSLOG_TraditionalFileFormat: no PRI
        (
            "Dec  4 17:39:01 web-01 CRON[4620]: (root) CMD (   test -x /etc/cron.daily/popularity"
            "-contest && /etc/cron.daily/popularity-contest --crond)",
            {"hostname": "web-01", "app_name": "CRON", "proc_id": 4620},
            "(root) CMD (   test -x /etc/cron.daily/popularity-contest && /etc/cron.daily/"
            "popularity-contest --crond)",
        ),
        (
            "Dec  4 17:40:12 web-01 kernel: [ 1234.567890] [UFW BLOCK] IN=eth0 OUT= "
            "SRC=198.51.100.7 DST=10.0.0.4 LEN=40 PROTO=TCP SPT=51234 DPT=23",
            {"hostname": "web-01", "app_name": "kernel"},
            "[ 1234.567890] [UFW BLOCK] IN=eth0 OUT= SRC=198.51.100.7 DST=10.0.0.4 LEN=40 "
            "PROTO=TCP SPT=51234 DPT=23",
        ),
        (
            "Dec 14 03:10:00 db-2 postfix/smtpd[20517]: connect from unknown[203.0.113.5]",
            {"hostname": "db-2", "app_name": "postfix/smtpd", "proc_id": 20517},
            "connect from unknown[203.0.113.5]",
        ),
        # no tag at all
        ("Dec  4 17:40:13 web-01 -- MARK --", {"hostname": "web-01"}, "-- MARK --"),
        # no hostname (a sender's own format): the first word is the tag
        ("<13>Dec  4 17:38:52 cron: hi", {"facility": 1, "severity": 5, "level": "notice",
                                          "app_name": "cron"}, "hi"),
    ],
)
def test_rfc3164_lines(line: str, fields: dict[str, object], message: str) -> None:
    parsed = parse(line)
    assert (parsed.message, parsed.fields, parsed.error) == (message, fields, None)


def test_rsyslog_file_format_with_rfc3339_timestamps() -> None:
    line = ("2026-12-04T17:38:54.153633+01:00 web-01 systemd[1]: Started Daily apt download "
            "activities.")
    assert parse(line) == Parsed(
        "Started Daily apt download activities.",
        pytest.approx(epoch(2026, 12, 4, 16, 38, 54, 153633)),  # type: ignore[arg-type]
        {"hostname": "web-01", "app_name": "systemd", "proc_id": 1},
    )


def test_bsd_timestamps_are_in_the_given_zone_or_local_time() -> None:
    line = "Jul  1 08:00:00 h app: m"
    tokyo = datetime.timezone(datetime.timedelta(hours=9))
    parsed = syslog_at(2026, 12, 4, tz=tokyo)
    assert callable(parsed)
    assert parsed(line).timestamp == epoch(2026, 7, 1, 8, 0, 0, tz=tokyo)
    now = epoch(2026, 12, 4)
    local = parser_for("syslog", clock=lambda: now)
    assert local(line).timestamp == time.mktime((2026, 7, 1, 8, 0, 0, 0, 0, -1))


@pytest.mark.parametrize(
    ("now", "line", "year"),
    [
        ((2027, 1, 1, 0, 30), "Dec 31 23:59:59 h a: m", 2026),  # read just after new year
        ((2026, 12, 31, 23, 59), "Jan  1 00:00:10 h a: m", 2027),  # the writer's clock ahead
        ((2026, 12, 4, 18, 0), "Dec  5 17:00:00 h a: m", 2026),  # less than a day ahead
        ((2026, 12, 4, 18, 0), "Dec  6 17:00:00 h a: m", 2025),  # more: last year's
        ((2026, 3, 1, 12, 0), "Feb 29 10:00:00 h a: m", 2024),  # the last leap year
    ],
)
def test_the_year_of_a_bsd_timestamp_is_inferred(
    now: tuple[int, ...], line: str, year: int
) -> None:
    parser = syslog_at(*now)
    assert callable(parser)
    parsed = parser(line)
    assert parsed.error is None
    assert datetime.datetime.fromtimestamp(parsed.timestamp, UTC).year == year


def test_the_inferred_year_moves_on_with_the_clock() -> None:
    now = [epoch(2026, 6, 1)]
    parser = parser_for("syslog", clock=lambda: now[0], tz=UTC)
    line = "Mar  3 03:03:03 h a: m"
    assert parser(line).timestamp == epoch(2026, 3, 3, 3, 3, 3)
    now[0] = epoch(2027, 6, 1)  # a year later, the agent still running
    assert parser(line).timestamp == epoch(2027, 3, 3, 3, 3, 3)


def test_invalid_pri_and_date_are_errors_that_keep_the_rest() -> None:
    parsed = parse("<192>Dec  4 17:38:54 vm sshd[1]: m")
    assert parsed.error == "invalid PRI <192>"
    assert parsed.fields == {"hostname": "vm", "app_name": "sshd", "proc_id": 1}
    parsed = parse("Feb 30 17:38:54 vm sshd[1]: m")
    assert (parsed.timestamp, parsed.error) == (None, "invalid timestamp: Feb 30 17:38:54")
    parsed = parse("<13>1 2026-13-04T17:00:00Z h a - - - m")
    assert (parsed.timestamp, parsed.error) == (None, "invalid timestamp: 2026-13-04T17:00:00Z")


@pytest.mark.parametrize(
    "line", ["", "hello world", "<13>", "<13>1 2026-12-04T17:00:00Z h a - - [bad sd m",
             "2026/12/04 17:40:02 [error] 1234#1234: open() failed"],
)
def test_a_line_that_is_not_syslog_is_kept_with_an_error(line: str) -> None:
    assert parse(line) == Parsed(line, None, {}, "not a syslog line")


_piece = st.text(alphabet=st.characters(codec="utf-8"), max_size=12)


@settings(max_examples=300, deadline=None)
@given(st.tuples(_piece, _piece, _piece, _piece, _piece, _piece))
def test_no_syslog_line_raises_however_mangled(pieces: tuple[str, ...]) -> None:
    pri, stamp, host, tag, pid, sd = pieces
    for line in (
        f"<{pri}>{stamp} {host} {tag}[{pid}]: m",
        f"<{pri}>1 {stamp} {host} {tag} {pid} - [{sd}] m",
        f'<13>1 2026-12-04T17:00:00Z h a 1 - [{sd} a="{pid}"] m',
        f"Dec {pid} {stamp} {host} {tag}: m",
    ):
        assert isinstance(parse(line).message, str)
