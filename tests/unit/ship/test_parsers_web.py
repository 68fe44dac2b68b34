"""nginx's and Apache's combined log format (kafkalog.ship.formats_web), on lines as the
servers write them."""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalog.ship.parsers import Parsed, parser_for


def epoch(*args: int, offset_h: int = 0) -> float:
    tz = datetime.timezone(datetime.timedelta(hours=offset_h))
    return datetime.datetime(*args, tzinfo=tz).timestamp()  # type: ignore[misc]


nginx = parser_for("nginx")
apache = parser_for("apache")

# nginx's default `combined` format:
# '$remote_addr - $remote_user [$time_local] "$request" $status $body_bytes_sent '
# '"$http_referer" "$http_user_agent"'
NGINX_LINES = {
    "browser": (
        '93.184.216.34 - - [04/Dec/2026:17:40:02 +0000] "GET /api/v1/orders?page=2&size=50 '
        'HTTP/1.1" 200 1534 "https://shop.example.com/orders" "Mozilla/5.0 (X11; Linux x86_64; '
        'rv:120.0) Gecko/20100101 Firefox/120.0"'
    ),
    "basic_auth_post": (
        '10.1.2.3 - alice [04/Dec/2026:17:40:03 +0100] "POST /admin/login HTTP/2.0" 302 0 '
        '"https://shop.example.com/admin/" "curl/8.4.0"'
    ),
    # a TLS handshake sent to the plain HTTP port: nginx escapes the bytes as \xHH
    "tls_to_http": (
        '185.220.101.4 - - [04/Dec/2026:17:40:04 +0000] "\\x16\\x03\\x01\\x02\\x00\\x01\\x00'
        '\\x01\\xFC\\x03\\x03" 400 157 "-" "-"'
    ),
    "client_closed": (
        '2001:db8::7 - - [04/Dec/2026:17:40:05 +0000] "GET /api/v1/stream HTTP/1.1" 499 0 "-" '
        '"Go-http-client/1.1"'
    ),
    # UTF-8 in the path and a quote in the user agent, as nginx escapes them
    "escaped": (
        '192.0.2.10 - - [04/Dec/2026:17:40:06 +0000] "GET /caf\\xC3\\xA9?q=\\x22x\\x22 HTTP/1.1" '
        '404 153 "-" "Mozilla/5.0 \\x22quoted\\x22"'
    ),
    # the `main` format of the distributions' nginx.conf: $http_x_forwarded_for at the end
    "main_format": (
        '172.17.0.1 - - [04/Dec/2026:17:40:07 +0000] "GET /healthz HTTP/1.1" 200 2 "-" '
        '"kube-probe/1.29" "203.0.113.9, 10.0.0.2"'
    ),
}


def test_nginx_browser_request() -> None:
    line = NGINX_LINES["browser"]
    assert nginx(line) == Parsed(
        line,
        epoch(2026, 12, 4, 17, 40, 2),
        {
            "client_ip": "93.184.216.34",
            "method": "GET",
            "path": "/api/v1/orders?page=2&size=50",
            "protocol": "HTTP/1.1",
            "status": 200,
            "bytes": 1534,
            "referrer": "https://shop.example.com/orders",
            "user_agent": "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
        },
    )


def test_nginx_user_and_offset() -> None:
    parsed = nginx(NGINX_LINES["basic_auth_post"])
    assert parsed.timestamp == epoch(2026, 12, 4, 17, 40, 3, offset_h=1)
    assert parsed.fields["user"] == "alice"
    assert "ident" not in parsed.fields
    assert (parsed.fields["method"], parsed.fields["protocol"]) == ("POST", "HTTP/2.0")
    assert (parsed.fields["status"], parsed.fields["bytes"]) == (302, 0)


def test_nginx_junk_request_has_no_method_path_or_protocol() -> None:
    parsed = nginx(NGINX_LINES["tls_to_http"])
    assert parsed.error is None
    assert parsed.fields == {"client_ip": "185.220.101.4", "status": 400, "bytes": 157}


def test_nginx_ipv6_client_and_499() -> None:
    fields = nginx(NGINX_LINES["client_closed"]).fields
    assert fields["client_ip"] == "2001:db8::7"
    assert fields["status"] == 499


def test_nginx_escapes_are_decoded_in_the_fields_not_the_message() -> None:
    line = NGINX_LINES["escaped"]
    parsed = nginx(line)
    assert parsed.message == line
    assert parsed.fields["path"] == '/caf\u00e9?q="x"'
    assert parsed.fields["user_agent"] == 'Mozilla/5.0 "quoted"'


def test_nginx_extra_fields_after_the_user_agent_are_ignored() -> None:
    fields = nginx(NGINX_LINES["main_format"]).fields
    assert fields["user_agent"] == "kube-probe/1.29"
    assert fields["bytes"] == 2


@pytest.mark.parametrize("request_line", ["-", ""])
def test_nginx_empty_request(request_line: str) -> None:
    line = f'198.51.100.2 - - [04/Dec/2026:17:40:08 +0000] "{request_line}" 400 0 "-" "-"'
    assert nginx(line) == Parsed(line, epoch(2026, 12, 4, 17, 40, 8),
                                 {"client_ip": "198.51.100.2", "status": 400, "bytes": 0})


def test_apache_combined_example_from_its_docs() -> None:
    line = (
        '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326 '
        '"http://www.example.com/start.html" "Mozilla/4.08 [en] (Win98; I ;Nav)"'
    )
    assert apache(line) == Parsed(
        line,
        epoch(2000, 10, 10, 13, 55, 36, offset_h=-7),
        {
            "client_ip": "127.0.0.1",
            "user": "frank",
            "method": "GET",
            "path": "/apache_pb.gif",
            "protocol": "HTTP/1.0",
            "status": 200,
            "bytes": 2326,
            "referrer": "http://www.example.com/start.html",
            "user_agent": "Mozilla/4.08 [en] (Win98; I ;Nav)",
        },
    )


def test_apache_dash_bytes_ident_and_backslash_escapes() -> None:
    line = (
        '192.168.0.20 jdoe - [04/Dec/2026:18:00:00 +0000] "GET /docs/a\\"b HTTP/1.1" 304 - '
        '"-" "Wget/1.21 \\"mirror\\" \\\\ bot"'
    )
    fields = apache(line).fields
    assert fields["ident"] == "jdoe"
    assert "user" not in fields and "referrer" not in fields
    assert fields["bytes"] == 0
    assert fields["path"] == '/docs/a"b'
    assert fields["user_agent"] == 'Wget/1.21 "mirror" \\ bot'


def test_apache_common_log_format_has_no_referrer_or_agent() -> None:
    line = '10.0.0.5 - - [04/Dec/2026:18:00:01 +0000] "GET /index.html HTTP/1.1" 200 10701'
    fields = apache(line).fields
    assert fields == {"client_ip": "10.0.0.5", "method": "GET", "path": "/index.html",
                      "protocol": "HTTP/1.1", "status": 200, "bytes": 10701}


def test_http09_and_a_path_with_a_space() -> None:
    stamp = "[04/Dec/2026:18:00:02 +0000]"
    fields = apache(f'10.0.0.5 - - {stamp} "GET /old" 200 5').fields
    assert (fields["method"], fields["path"]) == ("GET", "/old")
    assert "protocol" not in fields
    fields = apache(f'10.0.0.5 - - {stamp} "GET /a b HTTP/1.1" 400 5').fields
    assert (fields["path"], fields["protocol"]) == ("/a b", "HTTP/1.1")


def test_a_line_that_is_not_combined_format_is_kept_with_an_error() -> None:
    line = "2026/12/04 17:40:02 [error] 1234#1234: *5 open() failed (2: No such file)"
    assert nginx(line) == Parsed(line, None, {}, "not an nginx combined log line")
    assert apache(line).error == "not an apache combined log line"


def test_a_bad_timestamp_keeps_the_fields_and_says_so() -> None:
    line = '10.0.0.5 - - [32/Dec/2026:18:00:01 +0000] "GET / HTTP/1.1" 200 1 "-" "x"'
    parsed = nginx(line)
    assert parsed.timestamp is None
    assert parsed.error == "invalid timestamp: [32/Dec/2026:18:00:01 +0000]"
    assert parsed.fields["status"] == 200


def test_bytes_too_long_for_an_integer_field_is_not_a_match() -> None:
    line = '10.0.0.5 - - [04/Dec/2026:18:00:01 +0000] "GET / HTTP/1.1" 200 ' + "9" * 30
    assert nginx(line).error == "not an nginx combined log line"


_piece = st.text(alphabet=st.characters(codec="utf-8"), max_size=20)


@settings(max_examples=300, deadline=None)
@given(st.tuples(_piece, _piece, _piece, _piece, _piece, _piece))
def test_no_web_parser_raises_on_mangled_lines(pieces: tuple[str, ...]) -> None:
    client, stamp, request, status, referrer, agent = pieces
    line = f'{client} - - [{stamp}] "{request}" {status} 12 "{referrer}" "{agent}"'
    for parse in (nginx, apache):
        parsed = parse(line)
        assert parsed.message == line
