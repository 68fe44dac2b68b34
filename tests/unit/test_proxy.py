"""The fault-injection proxy of the reliability suite, against a local echo server."""

from __future__ import annotations

import os
import socket
import socketserver
import threading
import time
from collections.abc import Iterator

import pytest
from reliability.proxy import FaultProxy

# A read that must see nothing waits this long; a read that must see data waits at most
# RECV_TIMEOUT_S.
SILENCE_S = 0.5
RECV_TIMEOUT_S = 10.0


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.server.accepted += 1  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    return
                sock.sendall(data)
        except OSError:
            return


class EchoServer(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    accepted = 0


@pytest.fixture
def echo() -> Iterator[EchoServer]:
    server = EchoServer(("127.0.0.1", 0), _Echo)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def proxy(echo: EchoServer) -> Iterator[FaultProxy]:
    with FaultProxy(("127.0.0.1", echo.server_address[1])) as p:
        yield p


def connect(p: FaultProxy) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", p.port), timeout=RECV_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    for _ in range(n + 1):  # each recv returns >= 1 byte or ends the loop
        if len(buf) >= n:
            break
        chunk = sock.recv(n - len(buf))
        if not chunk:
            break
        buf += chunk
    return bytes(buf)


def round_trip(sock: socket.socket, payload: bytes) -> bytes:
    sock.sendall(payload)
    return recv_exactly(sock, len(payload))


def assert_silent(sock: socket.socket) -> None:
    """Nothing arrives on ``sock`` within SILENCE_S (and the connection is still open)."""
    sock.settimeout(SILENCE_S)
    with pytest.raises(socket.timeout):
        sock.recv(1)
    sock.settimeout(RECV_TIMEOUT_S)


def test_pass_through_forwards_a_large_stream_intact(proxy: FaultProxy) -> None:
    payload = os.urandom(1024 * 1024)
    with connect(proxy) as sock:
        sender = threading.Thread(target=sock.sendall, args=(payload,))
        sender.start()
        got = recv_exactly(sock, len(payload))
        sender.join(RECV_TIMEOUT_S)
    assert got == payload
    counters = proxy.counters()
    assert counters.accepted == 1
    assert counters.bytes_up == counters.bytes_down == len(payload)
    assert counters.bytes_dropped == 0


def test_latency_delays_each_direction_without_throttling(proxy: FaultProxy) -> None:
    with connect(proxy) as sock:
        assert round_trip(sock, b"warm") == b"warm"
        proxy.set_latency(150)
        started = time.monotonic()
        assert round_trip(sock, b"ping") == b"ping"
        rtt = time.monotonic() - started
        assert rtt >= 0.3  # 150 ms up + 150 ms down

        # Twenty chunks sent back to back are each delayed, not queued behind each other's
        # delay: they all come back in about one round trip, not twenty.
        started = time.monotonic()
        for i in range(20):
            sock.sendall(b"%02d" % i)
            time.sleep(0.005)  # pacing the sends so that they are separate chunks
        got = recv_exactly(sock, 40)
        elapsed = time.monotonic() - started
        assert got == b"".join(b"%02d" % i for i in range(20))
        assert 0.3 <= elapsed < 20 * 0.3 / 2

        proxy.set_latency(0)
        proxy.set_latency(200, direction="up")
        started = time.monotonic()
        assert round_trip(sock, b"one-way") == b"one-way"
        assert time.monotonic() - started >= 0.2


def test_blackhole_accepts_connections_and_forwards_nothing(
    proxy: FaultProxy, echo: EchoServer
) -> None:
    with connect(proxy) as before:
        assert round_trip(before, b"hello") == b"hello"
        proxy.blackhole()
        with connect(proxy) as during:  # the connect itself succeeds
            during.sendall(b"anyone?")
            assert_silent(during)
            before.sendall(b"still there?")
            assert_silent(before)
            assert echo.accepted == 1  # the black-holed connection never reached upstream

            proxy.pass_through()
            with connect(proxy) as after:
                assert round_trip(after, b"back") == b"back"
            # Connections that lost bytes stay dead: their stream can not be trusted.
            before.sendall(b"and now?")
            assert_silent(before)
    counters = proxy.counters()
    assert counters.bytes_dropped >= len(b"anyone?still there?and now?")
    assert echo.accepted == 2


def test_reset_sends_rst_to_every_open_connection(proxy: FaultProxy) -> None:
    socks = [connect(proxy) for _ in range(3)]
    try:
        for sock in socks:
            assert round_trip(sock, b"x") == b"x"
        assert proxy.reset_connections() == 3
        for sock in socks:
            with pytest.raises(ConnectionResetError):
                sock.recv(1)
        with connect(proxy) as fresh:  # the listener is unaffected
            assert round_trip(fresh, b"y") == b"y"
    finally:
        for sock in socks:
            sock.close()
    assert proxy.counters().resets == 3


def test_stop_refuses_connections_and_restart_listens_on_the_same_port(
    proxy: FaultProxy,
) -> None:
    port = proxy.port
    with connect(proxy) as sock:
        assert round_trip(sock, b"a") == b"a"
        assert proxy.stop() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    assert not proxy.listening
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=RECV_TIMEOUT_S)
    proxy.start()
    assert proxy.port == port
    with connect(proxy) as sock:
        assert round_trip(sock, b"b") == b"b"
        assert proxy.restart() == 1
        with pytest.raises(ConnectionResetError):
            sock.recv(1)
    with connect(proxy) as sock:
        assert round_trip(sock, b"c") == b"c"


def test_a_client_is_reset_when_the_upstream_refuses() -> None:
    with socket.socket() as placeholder:
        placeholder.bind(("127.0.0.1", 0))
        dead_port = placeholder.getsockname()[1]  # bound, never listening: connects refused
        with FaultProxy(("127.0.0.1", dead_port)) as p:
            # The reset can beat connect() itself back to the client; either way it is reset.
            with pytest.raises(ConnectionResetError), connect(p) as sock:
                sock.recv(1)
            assert p.counters().upstream_failures == 1


def test_only_loopback_upstreams_are_accepted() -> None:
    with pytest.raises(ValueError, match="loopback"):
        FaultProxy(("192.0.2.1", 9092))
