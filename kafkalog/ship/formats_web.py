"""The web servers' access logs: nginx's and Apache's combined log format, one line -> named
fields.

Both servers write the same layout (Apache's ``%h %l %u %t "%r" %>s %b "%{Referer}i"
"%{User-agent}i"``; nginx's ``combined``, whose ``%l`` is always ``-``). The common log format
(no referrer, no user agent) and extra fields after the user agent (nginx's ``main`` format
adds ``"$http_x_forwarded_for"``) are read too; the extra fields are left in the message.
Quoted strings are unescaped: nginx writes ``"`` and bytes outside printable ASCII as
``\\xHH``, Apache as ``\\"``, ``\\\\`` and ``\\xhh``.
"""

from __future__ import annotations

import re
from typing import Any, Final

from kafkalog.ship.formats_common import Parsed, Parser, clf_epoch

__all__ = ["WEB_ECS_FIELDS", "web_parser"]

# A quoted string with backslash escapes, "unrolled" so the regex engine runs over the plain
# characters in one go instead of trying an alternation per character.
_QUOTED: Final = r'"([^"\\]*(?:\\.[^"\\]*)*)"'
_COMBINED: Final = re.compile(
    r"([^ ]+) ([^ ]+) ([^ ]+) \[([^\]]*)\] "
    # the request line: split here when it is a plain one, else taken whole and split later
    r'"(?:([A-Z]+) ([^ "\\]+) (HTTP/[0-9.]+)|([^"\\]*(?:\\.[^"\\]*)*))" '
    r"(\d{3}|-) (\d{1,18}|-)(?![^ ])"
    r"(?: " + _QUOTED + " " + _QUOTED + ")?"
)

#: Each field the web parsers emit -> its ECS name. ``ident`` (RFC 1413, Apache's ``%l``) has
#: no ECS field; it goes to a custom one.
WEB_ECS_FIELDS: Final = {
    "client_ip": "source.address",
    "ident": "apache.access.identity",
    "user": "user.name",
    "method": "http.request.method",
    "path": "url.original",
    "protocol": "http.version",
    "status": "http.response.status_code",
    "bytes": "http.response.body.bytes",
    "referrer": "http.request.referrer",
    "user_agent": "user_agent.original",
}

_ESCAPE: Final = re.compile(rb"\\(x[0-9A-Fa-f]{2}|.)", re.DOTALL)
_NAMED_ESCAPES: Final = {b"n": b"\n", b"t": b"\t", b"r": b"\r", b"v": b"\v", b"f": b"\f"}


def _unescape_one(m: re.Match[bytes]) -> bytes:
    code = m.group(1)
    if len(code) == 3:
        return bytes((int(code[1:], 16),))
    return _NAMED_ESCAPES.get(code, code)  # \" -> ", \\ -> \


def unescape(text: str) -> str:
    """A string as the server escaped it -> its text. The ``\\xHH`` bytes are decoded as UTF-8
    together (an escaped UTF-8 path becomes its characters); an invalid sequence becomes the
    replacement character."""
    raw = _ESCAPE.sub(_unescape_one, text.encode("utf-8", "surrogatepass"))
    return raw.decode("utf-8", "replace")


def _split_request(request: str, fields: dict[str, Any]) -> None:
    """The method, path and protocol of a request line the regex did not split: escaped, or
    with a space in the path, or HTTP/0.9 (no protocol). Junk (``-``, a TLS handshake sent to
    the HTTP port) adds nothing."""
    method, space, target = request.partition(" ")
    if not (space and method.isalpha()):
        return
    fields["method"] = method
    path, space, protocol = target.rpartition(" ")
    if space and protocol.startswith("HTTP/"):
        fields["path"] = path
        fields["protocol"] = protocol
    else:
        fields["path"] = target


def web_parser(server: str) -> Parser:
    """The parser of ``server``'s (``"nginx"`` or ``"apache"``) combined log lines.

    The message is the whole line. Fields: ``client_ip``, ``ident`` and ``user`` (omitted when
    ``-``), ``method``, ``path`` and ``protocol`` (from the request line; omitted when it is
    ``-`` or not a request, such as a TLS handshake sent to the HTTP port), ``status`` (int),
    ``bytes`` (int; ``-`` is 0), ``referrer`` and ``user_agent`` (omitted when ``-``).
    """
    match = _COMBINED.match
    not_ours = f"not an {server} combined log line"

    def parse(line: str) -> Parsed:
        m = match(line)
        if m is None:
            return Parsed(line, None, {}, not_ours)
        (client, ident, user, stamp, method, path, protocol, request, status, size, referrer,
         agent) = m.groups()
        if "\\" in line:  # rare: only then is anything unescaped
            user, request, referrer, agent = (
                None if text is None else unescape(text)
                for text in (user, request, referrer, agent)
            )
        fields: dict[str, Any] = {"client_ip": client}
        if ident != "-":
            fields["ident"] = ident
        if user != "-":
            fields["user"] = user
        if method is not None:
            fields["method"] = method
            fields["path"] = path
            fields["protocol"] = protocol
        elif request:
            _split_request(request, fields)
        if status != "-":
            fields["status"] = int(status)
        fields["bytes"] = 0 if size == "-" else int(size)
        if referrer is not None:
            if referrer != "-":
                fields["referrer"] = referrer
            if agent != "-":
                fields["user_agent"] = agent
        timestamp = clf_epoch(stamp)
        if timestamp is None:
            return Parsed(line, None, fields, f"invalid timestamp: [{stamp}]")
        return Parsed(line, timestamp, fields)

    parse.__name__ = parse.__qualname__ = f"parse_{server}"
    return parse
