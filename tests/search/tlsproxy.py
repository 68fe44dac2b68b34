"""A TLS-terminating reverse proxy with authentication, in front of the test OpenSearch.

OpenSearch's security plugin is a large install of its own and knows no API keys, so the
sink's TLS and credential handling is tested against this proxy instead: it serves HTTPS on
127.0.0.1 with a certificate from a test CA (``tests/broker/tls.py``), demands either HTTP
basic auth or an ``Authorization: ApiKey <key>`` header (Elasticsearch's scheme), answers
``401`` with a JSON error otherwise, and passes every authenticated request through to the
plain-HTTP node unchanged. While the node is down it answers ``502``, as a load balancer would.

It runs in threads of the test process (one per connection, keep-alive supported); requests
are small in these tests, so each body is read whole before it is forwarded.
"""

from __future__ import annotations

import base64
import contextlib
import hmac
import http.client
import json
import secrets
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

__all__ = ["TlsAuthProxy"]

# Headers that describe one connection, not the message: never forwarded as they are.
_HOP_BY_HOP = frozenset({
    "connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailer",
    "transfer-encoding", "upgrade", "authorization", "host", "content-length",
})  # fmt: skip
_UPSTREAM_TIMEOUT = 60.0
_MAX_CHUNKS = 100_000  # bound on a chunked request body's chunk count


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    proxy: TlsAuthProxy

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that rejects our certificate (the point of some tests) is no error here:
        # it is counted, and the tests stay quiet.
        self.proxy.connection_errors += 1


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # the tests' output stays quiet

    def do_GET(self) -> None:
        self._proxy()

    do_HEAD = do_POST = do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

    def _proxy(self) -> None:
        proxy = self.server.proxy
        body = self._read_body()
        if not proxy.authorized(self.headers.get("Authorization")):
            proxy.rejected += 1
            error = {"type": "security_exception", "reason": "missing or wrong credentials"}
            challenge = 'Basic realm="kafkalog-test", charset="UTF-8"'
            self._reply(401, {"error": error, "status": 401}, {"WWW-Authenticate": challenge})
            return
        headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            status, reason, resp_headers, data = proxy.forward(
                self.command, self.path, body, headers
            )
        except OSError as exc:
            self._reply(502, {"error": {"type": "bad_gateway", "reason": str(exc)}, "status": 502})
            return
        proxy.forwarded += 1
        self.send_response(status, reason)
        for key, value in resp_headers:
            if key.lower() not in _HOP_BY_HOP:
                self.send_header(key, value)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def finish(self) -> None:
        super().finish()
        self.server.proxy._drop_connection()  # this thread's upstream connection

    def _read_body(self) -> bytes | None:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            parts: list[bytes] = []
            for _ in range(_MAX_CHUNKS):
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()  # the empty line after the last chunk
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
            raise ValueError("chunked request body with too many chunks")
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else None

    def _reply(self, status: int, body: object, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)


class TlsAuthProxy:
    """HTTPS with basic auth or an API key on ``url``, forwarding to ``upstream`` (HTTP).

    ``api_key`` is the value for ``Authorization: ApiKey <api_key>``: the base64 of
    ``api_key_id:api_key_secret``, as Elasticsearch encodes its API keys.
    """

    def __init__(
        self,
        upstream: Callable[[], str] | str,
        *,
        cert_file: Path,
        key_file: Path,
        ca_file: Path,
        other_ca_file: Path | None = None,
        username: str = "kafkalog-sink",
        password: str | None = None,
    ) -> None:
        self._upstream = upstream if callable(upstream) else (lambda: upstream)
        #: The CA that signed the proxy's certificate: what a client must trust.
        self.ca_file = ca_file
        #: A CA that signed nothing here: a client trusting only it must fail verification.
        self.other_ca_file = other_ca_file
        self.username = username
        self.password = password or f"pw-{secrets.token_hex(12)}"
        self.api_key_id = f"key-{secrets.token_hex(4)}"
        self.api_key_secret = secrets.token_urlsafe(18)
        self.api_key = base64.b64encode(
            f"{self.api_key_id}:{self.api_key_secret}".encode()
        ).decode()
        #: Counters, for tests that check what reached the store.
        self.forwarded = 0
        self.rejected = 0
        self.connection_errors = 0
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(cert_file), str(key_file))
        self._server = _Server(("127.0.0.1", 0), _Handler, bind_and_activate=True)
        self._server.proxy = self
        # The handshake happens on the connection's first read, in its own thread: a client
        # that stalls or fails it never holds up the accepting thread.
        self._server.socket = context.wrap_socket(
            self._server.socket, server_side=True, do_handshake_on_connect=False
        )
        self.port: int = self._server.server_address[1]
        self._thread: threading.Thread | None = None
        self._local = threading.local()

    @property
    def url(self) -> str:
        """``https://127.0.0.1:PORT``."""
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> TlsAuthProxy:
        """Serve in a daemon thread."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.2},
            name="tls-auth-proxy", daemon=True,
        )  # fmt: skip
        self._thread.start()
        return self

    def close(self) -> None:
        """Stop serving (bounded) and close the listening socket."""
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=10)
        self._server.server_close()

    def authorized(self, header: str | None) -> bool:
        """Whether an ``Authorization`` header carries the right password or API key."""
        if not header or " " not in header:
            return False
        scheme, _, value = header.partition(" ")
        value = value.strip()
        if scheme.lower() == "basic":
            expected = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
            return hmac.compare_digest(value.encode(), expected.encode())
        if scheme.lower() == "apikey":
            return hmac.compare_digest(value.encode(), self.api_key.encode())
        return False

    def forward(
        self, method: str, path: str, body: bytes | None, headers: dict[str, str]
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        """Send one request upstream on this thread's kept-alive connection."""
        upstream = self._upstream()
        for attempt in range(2):
            conn = self._connection(upstream)
            try:
                conn.request(method, path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                return resp.status, resp.reason, resp.getheaders(), data
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                # A kept-alive connection the node closed (it restarted): one fresh try.
                self._drop_connection()
                if attempt:
                    raise
            except OSError:
                self._drop_connection()
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self, upstream: str) -> http.client.HTTPConnection:
        conn: http.client.HTTPConnection | None = getattr(self._local, "conn", None)
        if conn is None or getattr(self._local, "upstream", None) != upstream:
            host, _, port = upstream.removeprefix("http://").rstrip("/").partition(":")
            conn = http.client.HTTPConnection(host, int(port), timeout=_UPSTREAM_TIMEOUT)
            self._local.conn, self._local.upstream = conn, upstream
        return conn

    def _drop_connection(self) -> None:
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.close()
        self._local.conn = None

    def __enter__(self) -> TlsAuthProxy:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()
