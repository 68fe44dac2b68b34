"""A TCP proxy on 127.0.0.1 whose faults a test switches on and off: the network of scenario 3.

The proxy runs an asyncio loop on a thread of its own, so a test drives it with plain method
calls from its own thread::

    with FaultProxy(("127.0.0.1", broker_port)) as proxy:
        proxy.set_latency(200)      # every chunk waits 200 ms, in each direction
        proxy.blackhole()           # connections stay open, no byte gets through
        proxy.pass_through()        # new connections work again
        proxy.reset_connections()   # RST every open connection
        proxy.restart()             # listener closed and reopened on the same port

Faults and what they model:

- **latency**: a slow link. Each chunk read is forwarded ``ms`` after it arrived; chunks keep
  their order and are not serialised behind each other's delay, so throughput is unchanged.
- **blackhole**: a partition that neither side is told about. New connections are accepted
  but never connected upstream; open connections drop every byte from then on. A connection
  that has lost bytes can never carry its protocol again, so it stays dead after
  :meth:`FaultProxy.pass_through`; only new connections forward again.
- **reset**: each open connection is closed with ``SO_LINGER`` 0, which makes the kernel send
  an RST to the client (and to the upstream server) instead of an orderly FIN.
- **stop/restart**: the listener goes away (connects are refused) and open connections are
  reset; :meth:`FaultProxy.start` listens on the same port again.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypeVar

HOST = "127.0.0.1"
# How long a control call waits for the proxy's loop to carry it out.
CONTROL_TIMEOUT_S = 10.0
# How long a new connection may take to reach the upstream server before it is dropped.
UPSTREAM_CONNECT_TIMEOUT_S = 5.0
READ_CHUNK_BYTES = 64 * 1024

T = TypeVar("T")

PASS = "pass"
BLACKHOLE = "blackhole"


@dataclass
class ProxyCounters:
    """What went through the proxy since it was created (read with :meth:`FaultProxy.counters`)."""

    accepted: int = 0
    upstream_failures: int = 0
    bytes_up: int = 0
    bytes_down: int = 0
    bytes_dropped: int = 0
    resets: int = 0
    open_connections: int = 0


class _Link:
    """One client connection and its upstream connection, with a pump per direction."""

    def __init__(self, client: asyncio.StreamWriter) -> None:
        self.client = client
        self.upstream: asyncio.StreamWriter | None = None
        self.dead = False  # black-holed: drops every byte until it closes
        self.tasks: list[asyncio.Task[None]] = []

    def writers(self) -> list[asyncio.StreamWriter]:
        return [w for w in (self.client, self.upstream) if w is not None]

    def abort(self, rst: bool) -> None:
        """Close both sides now; with ``rst`` the peers get a reset, not a FIN."""
        for writer in self.writers():
            if not rst:
                writer.close()  # what was written reaches the peer, then a FIN
                continue
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
        for task in self.tasks:
            task.cancel()


class FaultProxy:
    """Forward TCP connections from ``127.0.0.1:port`` to ``upstream``, with injectable faults.

    ``port=0`` picks a free port when the proxy first starts; it is kept across restarts.
    Every control method blocks until the proxy's loop has carried it out.
    """

    def __init__(self, upstream: tuple[str, int], *, port: int = 0) -> None:
        host, _ = upstream
        if host not in (HOST, "localhost"):
            raise ValueError(f"the test proxy forwards to loopback only, not {host!r}")
        self.upstream = upstream
        self.port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._links: set[_Link] = set()
        self._mode = PASS
        self._latency_s = {"up": 0.0, "down": 0.0}
        self._counters = ProxyCounters()

    # -- the loop thread ---------------------------------------------------------------------

    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            loop = asyncio.new_event_loop()
            ready = threading.Event()

            def run() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self._thread = threading.Thread(target=run, name="fault-proxy", daemon=True)
            self._thread.start()
            if not ready.wait(CONTROL_TIMEOUT_S):
                raise RuntimeError("the proxy's event loop did not start")
            self._loop = loop
        return self._loop

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure_loop())
        return future.result(CONTROL_TIMEOUT_S)

    # -- control, from the test's thread -------------------------------------------------------

    @property
    def address(self) -> str:
        """``"127.0.0.1:PORT"``, for ``bootstrap_servers`` or an advertised listener."""
        return f"{HOST}:{self.port}"

    @property
    def listening(self) -> bool:
        """Whether the listener is open (between :meth:`start` and :meth:`stop`)."""
        return self._server is not None

    def start(self) -> FaultProxy:
        """Listen (again) on :attr:`port`. A no-op if already listening."""
        self._call(self._start())
        return self

    def stop(self) -> int:
        """Close the listener and reset every open connection; return how many were reset."""
        return self._call(self._stop())

    def restart(self) -> int:
        """:meth:`stop`, then :meth:`start` on the same port; return the connections reset."""
        reset = self.stop()
        self.start()
        return reset

    def pass_through(self) -> None:
        """Forward bytes with no added latency; new connections reach the upstream again."""
        self.set_latency(0)
        self._call(self._set_mode(PASS))

    def set_latency(self, ms: float, direction: str = "both") -> None:
        """Hold each chunk ``ms`` milliseconds before forwarding it.

        ``direction`` is ``"up"`` (client to server), ``"down"`` or ``"both"``.
        """
        if ms < 0:
            raise ValueError("latency must be >= 0")
        if direction not in ("up", "down", "both"):
            raise ValueError(f"direction must be up, down or both, not {direction!r}")

        async def apply() -> None:
            for d in ("up", "down"):
                if direction in (d, "both"):
                    self._latency_s[d] = ms / 1000

        self._call(apply())

    def blackhole(self) -> None:
        """Accept connections but forward nothing, on new and on open connections."""
        self._call(self._set_mode(BLACKHOLE))

    def reset_connections(self) -> int:
        """Reset (RST) every open connection; return how many there were."""
        return self._call(self._reset_all())

    def counters(self) -> ProxyCounters:
        """A snapshot of the proxy's counters."""

        async def snapshot() -> ProxyCounters:
            c = self._counters
            c.open_connections = len(self._links)
            return ProxyCounters(**vars(c))

        return self._call(snapshot())

    def close(self) -> None:
        """Stop listening, reset all connections and end the loop thread."""
        if self._loop is None:
            return
        with contextlib.suppress(Exception):
            self.stop()
        loop, self._loop = self._loop, None
        loop.call_soon_threadsafe(loop.stop)
        if self._thread is not None:
            self._thread.join(CONTROL_TIMEOUT_S)
        if not loop.is_running():
            loop.close()

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FaultProxy({self.address} -> {self.upstream[0]}:{self.upstream[1]}, {self._mode})"

    # -- on the loop -----------------------------------------------------------------------------

    async def _start(self) -> None:
        if self._server is not None:
            return
        # reuse_address (asyncio's default on Unix) lets a restart rebind the port at once.
        self._server = await asyncio.start_server(
            self._on_client, HOST, self.port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> int:
        server, self._server = self._server, None
        if server is not None:
            server.close()
        reset = await self._reset_all()
        if server is not None:
            await server.wait_closed()
        return reset

    async def _set_mode(self, mode: str) -> None:
        self._mode = mode
        if mode == BLACKHOLE:
            for link in self._links:
                link.dead = True

    async def _reset_all(self) -> int:
        links = list(self._links)
        for link in links:
            link.abort(rst=True)
            self._links.discard(link)
        self._counters.resets += len(links)
        return len(links)

    async def _on_client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._counters.accepted += 1
        link = _Link(writer)
        self._links.add(link)
        try:
            if self._mode == BLACKHOLE:
                link.dead = True
                await self._swallow(reader)
                return
            try:
                up_reader, up_writer = await asyncio.wait_for(
                    asyncio.open_connection(*self.upstream), UPSTREAM_CONNECT_TIMEOUT_S
                )
            except (OSError, asyncio.TimeoutError):
                self._counters.upstream_failures += 1
                link.abort(rst=True)  # as if the server had refused the client itself
                return
            link.upstream = up_writer
            link.tasks = [
                asyncio.create_task(self._pump(link, reader, up_writer, "up")),
                asyncio.create_task(self._pump(link, up_reader, writer, "down")),
            ]
            # When either side ends, end the other: half-open links only confuse clients.
            await asyncio.wait(link.tasks, return_when=asyncio.FIRST_COMPLETED)
            link.abort(rst=False)
        except asyncio.CancelledError:
            link.abort(rst=False)
        finally:
            self._links.discard(link)

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        """Read and drop everything until the client goes away."""
        with contextlib.suppress(OSError):
            while True:
                data = await reader.read(READ_CHUNK_BYTES)
                if not data:
                    return
                self._counters.bytes_dropped += len(data)

    async def _pump(
        self,
        link: _Link,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        direction: str,
    ) -> None:
        """Copy one direction. A reader task stamps each chunk with its due time and a writer
        task sends it then, so latency delays chunks without throttling the stream."""
        chunks: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()
        loop = asyncio.get_running_loop()

        async def read() -> None:
            try:
                while True:
                    data = await reader.read(READ_CHUNK_BYTES)
                    if not data:
                        return
                    if link.dead:
                        self._counters.bytes_dropped += len(data)
                        continue
                    await chunks.put((loop.time() + self._latency_s[direction], data))
            finally:
                chunks.put_nowait((0.0, b""))  # end of stream, after what is still held

        async def write() -> None:
            while True:
                due, data = await chunks.get()
                if not data:
                    return
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                if link.dead:
                    self._counters.bytes_dropped += len(data)
                    continue
                writer.write(data)
                await writer.drain()
                if direction == "up":
                    self._counters.bytes_up += len(data)
                else:
                    self._counters.bytes_down += len(data)

        reading = asyncio.create_task(read())
        writing = asyncio.create_task(write())
        try:
            # Ends when the sender closed and everything held was written, or when writing
            # failed (the receiver is gone: nothing more can be delivered).
            await asyncio.wait({writing}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (reading, writing):
                task.cancel()
            for task in (reading, writing):
                with contextlib.suppress(asyncio.CancelledError, OSError):
                    await task
