"""``kafkalog ship`` against a real broker, on samples of what real programs write: Apache's
combined and common access logs, rsyslog's files in RFC 3164 (traditional and forwarded,
with a PRI) and RFC 5424, a Python log with chained tracebacks, a Java log with a stack trace
(``at``, ``Caused by:``, ``... N more``), a Go program's log with a panic, and JSON lines of
Go's ``log/slog`` (``msg``) and of structlog (``event``).

One agent follows every sample, one input (with its ``format`` and ``multiline``) and one
topic per case; each test reads its topic back and compares the records with what the sample
says, field by field and type by type.
"""

from __future__ import annotations

import datetime
import itertools
import shutil
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import orjson
import pytest
from broker.kraft import KafkaBroker
from ship_harness import read_all, wait_for

from kafkalog.formatting.ids import current_host
from kafkalog.ship.agent import ShipAgent
from kafkalog.ship.config import ship_config
from kafkalog.ship.registry import Registry

SAMPLES = Path(__file__).resolve().parent / "ship_samples"

# case -> (sample files, input options)
CASES: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "apache": (("apache_access.log", "apache_common.log"), {"format": "apache"}),
    "rfc3164": (("syslog_messages.log", "syslog_forwarded.log"), {"format": "syslog"}),
    "rfc5424": (("syslog_rfc5424.log",), {"format": "syslog", "schema": "ecs"}),
    "python": (("python_app.log",), {"multiline": "python"}),
    "java": (("java_app.log",), {"multiline": "java"}),
    "go": (("go_app.log",), {"multiline": "go"}),
    "json": (("go_slog.log", "structlog.log"), {"format": "json"}),
}


class Shipped:
    """What one run of the agent over every sample shipped: per case, its topic's records
    (decoded, in file and offset order); the run's wall-clock window; each copy's inode."""

    def __init__(self) -> None:
        self.records: dict[str, list[dict[str, Any]]] = {}
        self.inodes: dict[str, int] = {}
        self.paths: dict[str, str] = {}
        self.started = self.ended = 0.0


@pytest.fixture(scope="module")
def shipped(kafka_broker: KafkaBroker, tmp_path_factory: pytest.TempPathFactory) -> Shipped:
    root = tmp_path_factory.mktemp("ship-samples")
    result = Shipped()
    inputs = []
    topics = {}
    for case, (files, options) in CASES.items():
        directory = root / case
        directory.mkdir()
        for name in files:
            copy = directory / name
            shutil.copyfile(SAMPLES / name, copy)
            result.inodes[name] = copy.stat().st_ino
            result.paths[name] = str(copy)
        topics[case] = f"samples-{case}-{uuid.uuid4().hex[:8]}"
        inputs.append({"name": case, "paths": [str(directory / "*.log")],
                       "topic": topics[case], "multiline_timeout_ms": 300, **options})
    config = ship_config({"state_dir": str(root / "state"),
                          "bootstrap_servers": kafka_broker.bootstrap, "scan_interval_ms": 100,
                          "commit_interval_ms": 100, "linger_ms": 5}, inputs)
    sizes = {path: Path(path).stat().st_size for path in result.paths.values()}
    agent = ShipAgent(config)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,), daemon=True)
    result.started = time.time()
    thread.start()
    try:
        # Committed to the end: every event (the last ones of a multi-line file flushed by
        # the timeout) acknowledged by the broker.
        wait_for(lambda: {s.path: s.offset for s in Registry(root / "state").load()} == sizes,
                 timeout_s=60, what="every sample committed to its end")
    finally:
        stop.set()
        thread.join(60)
    result.ended = time.time()
    assert not thread.is_alive(), "the agent did not stop"
    for case, topic in topics.items():
        docs = [orjson.loads(r.value) for r in read_all(kafka_broker.bootstrap, topic)]
        docs.sort(key=lambda d: (_path(d), _offset(d)))
        result.records[case] = docs
    return result


def _path(doc: dict[str, Any]) -> str:
    return str(doc["log"]["file"]["path"] if "log" in doc else doc["file"])


def _offset(doc: dict[str, Any]) -> int:
    return int(doc["log"]["offset"] if "log" in doc else doc["offset"])


def stamp(*args: int, offset_h: int = 0, us: int = 0) -> str:
    """The record's ``@timestamp`` of a time written with a UTC offset of ``offset_h``."""
    zone = datetime.timezone(datetime.timedelta(hours=offset_h))
    when = datetime.datetime(*args, microsecond=us, tzinfo=zone)  # type: ignore[misc]
    return when.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def bsd_stamp(month: int, day: int, hour: int, minute: int, second: int) -> str:
    """A BSD syslog time (local, no year) as the agent reads it: the latest year that does not
    put it more than a day in the future."""
    now = time.time()
    year = time.localtime(now).tm_year + 1
    while True:
        epoch = time.mktime((year, month, day, hour, minute, second, 0, 0, -1))
        if epoch <= now + 86400:
            break
        year -= 1
    return time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime(epoch))


def line_offsets(name: str) -> list[int]:
    """The offset of each line of the sample ``name``."""
    offsets = [0]
    for line in (SAMPLES / name).read_bytes().splitlines(keepends=True)[:-1]:
        offsets.append(offsets[-1] + len(line))
    return offsets


def sample_text(name: str, first: int, stop: int) -> str:
    """Lines ``first`` to ``stop - 1`` of the sample, joined as an event's message is."""
    return "\n".join((SAMPLES / name).read_text().split("\n")[first:stop])


def events(name: str, starts: list[int]) -> list[tuple[str, int, str, dict[str, Any]]]:
    """The expected raw multi-line events of sample ``name``: event ``i`` is its lines
    ``starts[i]`` to ``starts[i + 1] - 1``, with no fields."""
    offsets = line_offsets(name)
    return [(name, offsets[first], sample_text(name, first, stop), {})
            for first, stop in itertools.pairwise(starts)]


def check_default(shipped: Shipped, docs: list[dict[str, Any]],
                  expected: list[tuple[str, int, str, dict[str, Any]]],
                  stamps: list[str] | None) -> None:
    """``docs`` (default schema) against (file, offset, message, fields) each, and
    ``@timestamp`` against ``stamps`` (None: the read time, within the run)."""
    assert len(docs) == len(expected), [d["message"][:60] for d in docs]
    ids = {}
    for i, (doc, (name, offset, message, fields)) in enumerate(
        zip(docs, expected, strict=True)
    ):
        timestamp = doc.pop("@timestamp")
        if stamps is None:
            read = datetime.datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
                tzinfo=datetime.timezone.utc).timestamp()
            assert shipped.started - 1 <= read <= shipped.ended + 1, timestamp
        else:
            assert timestamp == stamps[i], (name, offset)
        rid = doc.pop("id")
        assert rid.endswith(f"-{offset:x}")
        ids.setdefault(name, set()).add(rid.rpartition("-")[0])  # one source id per file
        assert doc == {"message": message, "host": current_host(), "file": shipped.paths[name],
                       "inode": shipped.inodes[name], "offset": offset, **fields}
        for key, value in fields.items():  # the types too (1 == 1.0 == True in Python)
            assert type(doc[key]) is type(value), (key, doc[key])
    assert all(len(sources) == 1 for sources in ids.values()), ids


# --------------------------------------------------------------------------- Apache


def test_apache_combined_and_common_lines_become_typed_fields(shipped: Shipped) -> None:
    access, common = line_offsets("apache_access.log"), line_offsets("apache_common.log")
    lines = (SAMPLES / "apache_access.log").read_text().splitlines()
    common_lines = (SAMPLES / "apache_common.log").read_text().splitlines()
    firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0"
    chrome = ("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like "
              "Gecko) Chrome/131.0.0.0 Safari/537.36")
    expected: list[tuple[str, int, str, dict[str, Any]]] = [
        ("apache_access.log", access[0], lines[0], {
            "client_ip": "192.0.2.44", "method": "GET", "path": "/index.html",
            "protocol": "HTTP/1.1", "status": 200, "bytes": 5230, "user_agent": firefox}),
        ("apache_access.log", access[1], lines[1], {
            "client_ip": "198.51.100.7", "user": "alice", "method": "POST",
            "path": "/admin/login.php", "protocol": "HTTP/1.1", "status": 302, "bytes": 0,
            "referrer": "https://www.example.org/admin/", "user_agent": chrome}),
        ("apache_access.log", access[2], lines[2], {  # IPv6 client, HTTP/2
            "client_ip": "2001:db8::17", "method": "GET", "path": "/search?q=%22kafka%22&page=2",
            "protocol": "HTTP/2.0", "status": 200, "bytes": 812,
            "referrer": "https://www.example.org/", "user_agent": "curl/8.11.0"}),
        ("apache_access.log", access[3], lines[3], {  # Apache's \" escape, undone
            "client_ip": "203.0.113.9", "method": "GET", "path": "/wp-login.php",
            "protocol": "HTTP/1.1", "status": 404, "bytes": 196,
            "user_agent": 'Mozilla/5.0 "scanner"'}),
        ("apache_access.log", access[4], lines[4], {  # a 408: no request line, "-" bytes
            "client_ip": "192.0.2.50", "status": 408, "bytes": 0}),
        ("apache_common.log", common[0], common_lines[0], {
            "client_ip": "192.0.2.61", "method": "GET", "path": "/robots.txt",
            "protocol": "HTTP/1.1", "status": 200, "bytes": 68}),
        ("apache_common.log", common[1], common_lines[1], {
            "client_ip": "192.0.2.61", "method": "HEAD",
            "path": "/downloads/kafkalog-0.1.0.tar.gz", "protocol": "HTTP/1.1", "status": 304,
            "bytes": 0}),
    ]
    stamps = [stamp(2026, 12, 4, 16, 38, s, offset_h=1) for s in (29, 30, 31, 33, 40)]
    stamps += [stamp(2026, 12, 4, 16, 40, s, offset_h=1) for s in (2, 3)]
    check_default(shipped, shipped.records["apache"], expected, stamps)


# --------------------------------------------------------------------------- rsyslog


def test_rsyslog_rfc3164_files_with_and_without_pri(shipped: Shipped) -> None:
    messages, forwarded = line_offsets("syslog_messages.log"), line_offsets(
        "syslog_forwarded.log")
    expected: list[tuple[str, int, str, dict[str, Any]]] = [
        ("syslog_forwarded.log", forwarded[0], "FAILED SU (to root) deploy on pts/0", {
            "facility": 4, "severity": 2, "level": "critical", "hostname": "web01",
            "app_name": "su"}),
        ("syslog_forwarded.log", forwarded[1], "pg_dump finished in 412 s", {
            "facility": 1, "severity": 5, "level": "notice", "hostname": "db02",
            "app_name": "backup.sh", "proc_id": 2210}),
        ("syslog_messages.log", messages[0],
         "Accepted publickey for deploy from 192.0.2.10 port 52214 ssh2: ED25519 "
         "SHA256:Xk1v0m3xvqNhZfJ7o8m2bq0Q5u1JcYl9mT0pWcQ2sE4",
         {"hostname": "web01", "app_name": "sshd", "proc_id": 6841}),
        ("syslog_messages.log", messages[1], "Started session-7.scope - Session 7 of User deploy.",
         {"hostname": "web01", "app_name": "systemd", "proc_id": 1}),
        ("syslog_messages.log", messages[2],
         "(root) CMD (   test -x /usr/sbin/logrotate && /usr/sbin/logrotate "
         "/etc/logrotate.conf)", {"hostname": "web01", "app_name": "CRON", "proc_id": 7312}),
        ("syslog_messages.log", messages[3],  # no [pid]
         "[ 1042.117233] nf_conntrack: table full, dropping packet",
         {"hostname": "web01", "app_name": "kernel"}),
    ]
    stamps = [bsd_stamp(12, 4, 16, 39, 5), bsd_stamp(12, 14, 9, 2, 17),
              bsd_stamp(12, 4, 16, 38, 29), bsd_stamp(12, 4, 16, 38, 31),
              bsd_stamp(12, 4, 16, 39, 1), bsd_stamp(12, 4, 16, 39, 2)]
    check_default(shipped, shipped.records["rfc3164"], expected, stamps)


def test_rsyslog_rfc5424_in_ecs(shipped: Shipped) -> None:
    docs = shipped.records["rfc5424"]
    offsets = line_offsets("syslog_rfc5424.log")
    path, inode = shipped.paths["syslog_rfc5424.log"], shipped.inodes["syslog_rfc5424.log"]

    def ecs(i: int, stamp_: str, message: str, syslog: dict[str, Any],
            **more: Any) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "@timestamp": stamp_, "message": message,
            "host": {"name": current_host(), "hostname": "web01"},
            "log": {"file": {"path": path, "inode": inode}, "offset": offsets[i],
                    "syslog": syslog, "level": more.pop("level")},
            "process": more.pop("process"),
            "ecs": {"version": docs[i]["ecs"]["version"]},
            "event": {"id": docs[i]["event"]["id"], **more.pop("event", {})},
        }
        assert not more
        return doc

    expected = [
        # rsyslog's %msg% keeps the space after the tag (two spaces after the "-" of no SD):
        # the parser drops it
        ecs(0, stamp(2026, 12, 4, 16, 38, 29, offset_h=1, us=284241),
            "Accepted publickey for deploy from 192.0.2.10 port 52214 ssh2: ED25519 "
            "SHA256:Xk1v0m3xvqNhZfJ7o8m2bq0Q5u1JcYl9mT0pWcQ2sE4",
            {"facility": {"code": 4}, "severity": {"code": 6}}, level="info",
            process={"name": "sshd", "pid": 6841}),
        ecs(1, stamp(2026, 12, 4, 16, 38, 30, offset_h=1, us=3412), "order 42 paid",
            {"facility": {"code": 20}, "severity": {"code": 5}, "structured_data": {
                "timeQuality": {"tzKnown": "1", "isSynced": "1", "syncAccuracy": "45000"},
                "order@32473": {"id": "42", "total": "19.90"}}},
            level="notice", process={"name": "shop", "pid": 4242}, event={"code": "ORDER"}),
        ecs(2, stamp(2026, 12, 4, 15, 38, 31, us=120000),
            "Started session-7.scope - Session 7 of User deploy.",
            {"facility": {"code": 3}, "severity": {"code": 6}}, level="info",
            process={"name": "systemd", "pid": 1}),
        ecs(3, stamp(2026, 12, 4, 16, 38, 32, offset_h=1),
            "pam_unix(cron:session): session opened for user root(uid=0) by root(uid=0)",
            {"facility": {"code": 10}, "severity": {"code": 6}}, level="info",
            process={"name": "CRON", "pid": 7312}),
    ]
    assert docs == expected
    assert [type(d["process"]["pid"]) for d in docs] == [int] * 4
    assert all(d["event"]["id"].endswith(f"-{offsets[i]:x}") for i, d in enumerate(docs))


# --------------------------------------------------------------------------- multi-line


def test_python_tracebacks_with_chained_exceptions_are_one_event_each(
    shipped: Shipped,
) -> None:
    # the log line, then "The above exception was the direct cause ..." (both tracebacks,
    # blank lines kept), then "During handling of the above exception ...", then a log line
    expected = events("python_app.log", [0, 1, 18, 32, 33])
    docs = shipped.records["python"]
    check_default(shipped, docs, expected, None)
    assert docs[1]["message"].endswith(
        "\nshop.gateway.GatewayError: order 42 has no card on file")
    assert "\n\nThe above exception was the direct cause" in docs[1]["message"]
    assert docs[2]["message"].endswith("ValueError: invalid literal for int() with base 10: '10%'")


def test_a_java_stack_trace_with_its_cause_is_one_event(shipped: Shipped) -> None:
    expected = events("java_app.log", [0, 1, 14, 15])  # at, Caused by:, ... 5 more
    docs = shipped.records["java"]
    check_default(shipped, docs, expected, None)
    trace = docs[1]["message"].split("\n")
    assert trace[1] == "java.lang.IllegalStateException: cannot reserve SKU-7"
    assert trace[8] == "Caused by: java.net.SocketTimeoutException: Read timed out"
    assert trace[-1] == "\t... 5 more"


def test_a_go_panic_is_one_event(shipped: Shipped) -> None:
    # two log lines; the panic, its signal line, a blank line and the goroutine block with
    # "created by"; the restarted program's first line (the last event: flushed by the timeout)
    expected = events("go_app.log", [0, 1, 2, 12, 13])
    docs = shipped.records["go"]
    check_default(shipped, docs, expected, None)
    panic = docs[2]["message"].split("\n")
    assert panic[0].startswith("panic: runtime error: invalid memory address")
    assert panic[2] == "" and panic[3] == "goroutine 19 [running]:"
    assert panic[-2] == "created by main.main in goroutine 1"


# --------------------------------------------------------------------------- JSON


def test_json_lines_of_go_slog_and_structlog_keep_their_message(shipped: Shipped) -> None:
    slog, structlog = line_offsets("go_slog.log"), line_offsets("structlog.log")
    expected: list[tuple[str, int, str, dict[str, Any]]] = [
        ("go_slog.log", slog[0], "listening", {"level": "INFO", "addr": ":8080", "tls": False}),
        ("go_slog.log", slog[1], "slow request", {
            "level": "WARN", "http": {"method": "GET", "path": "/cart"}, "duration_ms": 1840.5}),
        ("go_slog.log", slog[2], "payment refused", {
            "level": "ERROR", "order": 42, "err": "card expired"}),
        ("structlog.log", structlog[0], "user logged in", {
            "user": "alice", "attempts": 1, "level": "info"}),
        ("structlog.log", structlog[1], "quota almost used", {
            "user": "alice", "used": 0.93, "level": "warning"}),
    ]
    # slog's "time" (nanoseconds, a +01:00 zone) and structlog's "timestamp" are the records'
    # @timestamp, and leave the fields.
    stamps = [stamp(2026, 12, 4, 16, 38, 29, offset_h=1, us=160506),
              stamp(2026, 12, 4, 16, 38, 41, offset_h=1, us=160645),
              stamp(2026, 12, 4, 16, 38, 42, offset_h=1, us=160666),
              stamp(2026, 12, 4, 15, 38, 45, us=581434),
              stamp(2026, 12, 4, 15, 38, 47, us=2311)]
    check_default(shipped, shipped.records["json"], expected, stamps)
