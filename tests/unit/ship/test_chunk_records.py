"""The chunk path builds, for a whole chunk of lines at once, exactly the bytes the general path
builds line by line: raw lines of any bytes, and web log lines in and out of the common shape."""

from __future__ import annotations

from itertools import accumulate
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalog.ship.building import InputRecords
from kafkalog.ship.chunk import ChunkBuilder
from kafkalog.ship.multiline import Event
from kafkalog.ship.parsers import parser_for
from kafkalog.ship.record import RecordBuilder

PATH = "/var/log/app%d/access.log"  # a % in the path: the templates must escape it


def offsets_of(lines: list[bytes], start: int = 0) -> list[int]:
    return list(accumulate((len(line) + 1 for line in lines), initial=start))


def general(fmt: str, builder: RecordBuilder, lines: list[bytes], offsets: list[int],
            read_time: float) -> list[bytes]:
    parse = parser_for(fmt)
    return [builder.build(parse(line.decode("utf-8", "replace")), path=PATH, ino=42,
                          offset=start, source="0123456789abcdef", read_time=read_time,
                          truncated=False)
            for line, start in zip(lines, offsets, strict=False)]


def records(fmt: str, lines: list[bytes], *, schema: str = "default",
            static: dict[str, Any] | None = None, start: int = 0,
            max_bytes: int = 1_000_000) -> tuple[list[bytes], list[bytes]]:
    """(chunk path, general path) for ``lines``; the chunk path's gaps filled by InputRecords."""
    builder = RecordBuilder(schema=schema, static_fields=static or {}, max_bytes=max_bytes)
    offsets = offsets_of(lines, start)
    inp = InputRecords(parser=parser_for(fmt), builder=builder, format=fmt, key=None,
                       multiline=None)
    built = inp.of_lines(lines, offsets, path=PATH, ino=42, source="0123456789abcdef",
                         read_time=1_733_300_000.25)
    if built is None:  # the whole chunk went the general way: as the agent does
        events = [Event(line, s, e) for line, s, e in
                  zip(lines, offsets, offsets[1:], strict=False)]
        built = inp.of_events(events, path=PATH, ino=42, source="0123456789abcdef",
                              read_time=1_733_300_000.25)
    else:
        assert built.ends == offsets[1:]
    return built.values, general(fmt, builder, lines, offsets, 1_733_300_000.25)


any_line = st.binary(max_size=300).map(lambda b: b.replace(b"\n", b""))
text_line = st.text(max_size=200).map(lambda s: s.replace("\n", "").encode("utf-8", "replace"))
statics = st.one_of(st.none(), st.just({"env": "prod%s", "team": {"name": "web"}}),
                    st.just({"message": "never wins", "service.name": "api"}))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(any_line, text_line), min_size=1, max_size=30),
       schema=st.sampled_from(["default", "ecs"]), static=statics,
       start=st.integers(0, 2**40))
def test_raw_chunks_are_the_general_paths_bytes(lines: list[bytes], schema: str,
                                                 static: dict[str, Any] | None,
                                                 start: int) -> None:
    fast, slow = records("raw", lines, schema=schema, static=static, start=start)
    assert fast == slow


# Lines with no control character or backslash (quotes and any other character welcome):
# quote-heavy lines of any script, as web logs are.
simple_line = st.text(
    st.characters(blacklist_categories=("Cc", "Cs"), blacklist_characters="\\"),
    max_size=120,
).map(lambda s: s.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(st.one_of(simple_line, st.just(b'say "hi" \x7f')), min_size=1,
                      max_size=30),
       schema=st.sampled_from(["default", "ecs"]), start=st.integers(0, 2**40))
def test_raw_chunks_without_escapes_are_the_general_paths_bytes(
        lines: list[bytes], schema: str, start: int) -> None:
    fast, slow = records("raw", lines, schema=schema, start=start)
    assert fast == slow


def test_the_raw_chunk_path_is_taken_for_plain_lines() -> None:
    builder = RecordBuilder(schema="default", static_fields={}, max_bytes=10_000)
    chunk = ChunkBuilder(builder, format="raw", key=None)
    lines = [b'plain "quoted" line', b"caf\xc3\xa9 \x00 nul", b"bad \xff utf-8", b""]
    out = chunk.build(lines, offsets_of(lines), path=PATH, ino=1, source="s", read_time=1.0)
    assert out is not None and None not in out
    assert [orjson.loads(r)["message"] for r in out if r is not None] == [
        'plain "quoted" line', "café \x00 nul", "bad \ufffd utf-8", ""]


@st.composite
def clf_line(draw: st.DrawFn) -> bytes:
    """A combined log line, usually of the common shape, sometimes not."""
    client = draw(st.sampled_from(["10.0.0.1", "2001:db8::1", "host-a", 'q"uote']))
    user = draw(st.sampled_from(["-", "-", "alice"]))
    day = draw(st.sampled_from(["02", "31", "29"]))
    month = draw(st.sampled_from(["Mar", "Feb", "Foo"]))
    stamp = f"{day}/{month}/2026:{draw(st.integers(0, 25)):02d}:05:{draw(st.integers(0, 61)):02d}"
    zone = draw(st.sampled_from(["+0000", "-0530"]))
    request = draw(st.sampled_from([
        "GET /index.html HTTP/1.1", "POST /api/v1/x?y=1&z=%20 HTTP/2.0", "-",
        "GET /a b HTTP/1.1", "\\x16\\x03\\x01", "GET /caf\u00e9 HTTP/1.0", "GET /\x01 HTTP/1.1"]))
    status = draw(st.sampled_from(["200", "404", "-", "099"]))
    size = draw(st.sampled_from(["0", "1234", "-", "0123"]))
    tail = draw(st.sampled_from([
        ' "-" "-"', ' "https://ex.com/" "curl/8.5.0"', ' "" ""', "", ' "-" "Mozilla/5.0 (X11)"',
        ' "r" "u" "1.2.3.4"', ' "a\\"b" "c"', ' "tab\there" "x"', " junk"]))
    line = f'{client} - {user} [{stamp} {zone}] "{request}" {status} {size}{tail}'
    return line.encode()


@settings(max_examples=300, deadline=None)
@given(data=st.data(), fmt=st.sampled_from(["nginx", "apache"]),
       static=st.one_of(st.none(), st.just({"env": "p%d"})), start=st.integers(0, 2**40))
def test_web_chunks_are_the_general_paths_bytes(data: st.DataObject, fmt: str,
                                                 static: dict[str, Any] | None,
                                                 start: int) -> None:
    odd = st.tuples(common_line(), st.sampled_from(["\t", "\x01", "\x1f", "\r"])).map(
        lambda pair: pair[0][:-3] + pair[1].encode() + pair[0][-3:])  # near the line's end
    lines = data.draw(st.lists(st.one_of(clf_line(), common_line(), odd), min_size=1,
                               max_size=20))
    fast, slow = records(fmt, lines, static=static, start=start)
    assert fast == slow


def test_the_web_chunk_path_is_taken_for_common_lines() -> None:
    builder = RecordBuilder(schema="default", static_fields={}, max_bytes=10_000)
    chunk = ChunkBuilder(builder, format="nginx", key=None)
    lines = [
        b'10.0.0.1 - - [02/Mar/2026:09:00:00 +0000] "GET / HTTP/1.1" 200 12 "-" "curl/8"',
        b'10.0.0.2 - - [02/Mar/2026:09:00:01 +0000] "HEAD /x HTTP/1.1" 304 0 "https://a/" "-"',
        b'10.0.0.3 - - [31/Feb/2026:09:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "-"',
    ]
    out = chunk.build(lines, offsets_of(lines), path=PATH, ino=1, source="s", read_time=1.0)
    assert out is not None
    assert out[2] is None  # no such date: left to the general path, which flags it
    first = orjson.loads(out[0] or b"")
    assert (first["status"], first["bytes"], first["user_agent"]) == (200, 12, "curl/8")
    assert "referrer" not in first
    second = orjson.loads(out[1] or b"")
    assert second["referrer"] == "https://a/" and "user_agent" not in second


@pytest.mark.parametrize(("fmt", "schema", "key", "static", "enabled"), [
    ("raw", "ecs", "path", {}, True),
    ("nginx", "default", None, {}, True),
    ("nginx", "ecs", None, {}, False),  # parsed fields nest in ECS: the general path
    ("nginx", "default", "client_ip", {}, False),  # a key from a parsed field
    ("nginx", "default", None, {"status": 1}, False),  # a static field named like a parsed one
    ("json", "default", None, {}, False),
    ("syslog", "default", None, {}, False),
])
def test_where_the_chunk_path_applies(fmt: str, schema: str, key: str | None,
                                      static: dict[str, Any], enabled: bool) -> None:
    builder = RecordBuilder(schema=schema, static_fields=static, max_bytes=10_000)
    assert ChunkBuilder(builder, format=fmt, key=key).enabled is enabled


def test_long_lines_and_records_grown_by_escaping_go_the_general_way() -> None:
    lines = [b"x" * 50, b"y" * 400, b"\x01" * 60, b"ok"]
    fast, slow = records("raw", lines, max_bytes=300)
    assert fast == slow
    assert orjson.loads(fast[1]).get("truncated") is True  # cut by the general path
    assert orjson.loads(fast[2]).get("truncated") is True  # \u0001 x 60 is 360 bytes


def test_a_static_field_holding_a_mark_turns_the_chunk_path_off() -> None:
    builder = RecordBuilder(schema="default", max_bytes=10_000,
                            static_fields={"odd": "kafkalog-chunk-message-9c1e7a"})
    chunk = ChunkBuilder(builder, format="raw", key=None)
    assert chunk.build([b"a"], [0, 2], path=PATH, ino=1, source="s", read_time=1.0) is None


@st.composite
def common_line(draw: st.DrawFn) -> bytes:
    """A combined log line of the common shape (the chunk path builds it itself)."""
    field = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters='"\\'),
                    max_size=30)
    client = draw(st.from_regex(r"[0-9a-f.:]{1,20}", fullmatch=True))
    stamp = (f"{draw(st.integers(1, 28)):02d}/{draw(st.sampled_from(['Jan', 'Mar', 'Dec']))}/"
             f"{draw(st.integers(1970, 2100))}:{draw(st.integers(0, 23)):02d}:"
             f"{draw(st.integers(0, 59)):02d}:{draw(st.integers(0, 59)):02d} "
             f"{draw(st.sampled_from(['+0000', '-0530', '+1400']))}")
    target = draw(field.map(lambda s: "/" + s.replace(" ", "")))
    status = draw(st.integers(100, 999))
    size = draw(st.integers(0, 10**17))
    referrer = draw(st.one_of(st.just("-"), field))
    agent = draw(st.one_of(st.just("-"), field))
    tail = draw(st.sampled_from(["", f' "{referrer}" "{agent}"', f' "{referrer}" "{agent}" "x"']))
    return (f'{client} - - [{stamp}] "GET {target} HTTP/1.1" {status} {size}{tail}').encode()


@settings(max_examples=200, deadline=None)
@given(lines=st.lists(common_line(), min_size=1, max_size=20), start=st.integers(0, 2**40))
def test_common_web_lines_take_the_chunk_path_with_the_same_bytes(lines: list[bytes],
                                                                   start: int) -> None:
    builder = RecordBuilder(schema="default", static_fields={"env": "p%d"}, max_bytes=10**6)
    chunk = ChunkBuilder(builder, format="nginx", key=None)
    offsets = offsets_of(lines, start)
    out = chunk.build(lines, offsets, path=PATH, ino=42, source="0123456789abcdef",
                      read_time=1.5)
    assert out is not None and None not in out
    assert out == general("nginx", builder, lines, offsets, 1.5)


@pytest.mark.parametrize("tail", [' "tab\there" "curl"', ' "r" "bell\x07"', ' "\x01" "-"'])
def test_a_control_character_in_a_quoted_field_keeps_the_field(tail: str) -> None:
    line = f'10.0.0.1 - - [02/Mar/2026:09:00:00 +0000] "GET / HTTP/1.1" 200 12{tail}'.encode()
    fast, slow = records("nginx", [b'10.0.0.2 - - [02/Mar/2026:09:00:00 +0000] "GET / '
                                   b'HTTP/1.1" 200 1 "-" "-"', line])
    assert fast == slow
    assert "referrer" in orjson.loads(fast[1])
