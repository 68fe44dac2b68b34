"""Why the bootstrap servers do not answer: a name that does not resolve, a refused port, or
an address that never answers. Found by exception type, on a daemon thread, for messages.

A client library says only that it is "still connecting" (kafka-python) or that a connection
failed (librdkafka, in words). kafkalog tries each bootstrap server itself, once per bootstrap
attempt, with the plain socket calls whose exception types say which it is. It never decides
anything about delivery: the worker's retries and the spill stay as they are.
"""

from __future__ import annotations

# socket.getaddrinfo() imports the IDNA codec (and with it stringprep and unicodedata) the
# first time it resolves a host name, and both transports resolve names on threads of their own
# (this module's check, kafka-python's connect thread). A fork while such a thread held the
# codec's import lock (a gunicorn --preload master forks its workers right after the app logs
# its first record) left the lock held in the child for good: its own thread then waited on it
# forever. Imported here, on the thread that builds the transport, before any of its threads.
import encodings.idna  # noqa: F401
import errno
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

# Longest TCP connect tried per server: past it, the address "does not answer".
CONNECT_TIMEOUT_S = 3.0
# A connect still pending this long is reported as not answering (yet).
SLOW_CONNECT_S = 0.5
# At most this many servers are tried (a long list says enough with its first few).
MAX_SERVERS = 4


@dataclass(frozen=True)
class Finding:
    """What trying one server found: ``kind`` (one of the keys of ``_TEXTS``) and detail."""

    server: str
    kind: str
    detail: str = ""

    def describe(self) -> str:
        """One clause for a message, naming the server."""
        text = _TEXTS[self.kind].format(server=self.server, detail=self.detail)
        return text


# kind -> the clause that names it. "accepts" is the one kind that is not a network failure.
_TEXTS = {
    "resolving": "{server}: still resolving the name",
    "dns": "{server}: the name does not resolve ({detail})",
    "connecting": "{server}: no answer yet after {detail}",
    "refused": "{server}: connection refused (nothing listens on that port)",
    "timeout": "{server}: no answer within {detail} (an unroutable address, or a firewall "
    "dropping the packets)",
    "unreachable": "{server}: unreachable ({detail})",
    "accepts": "{server}: accepts TCP connections, but the Kafka bootstrap has not completed "
    "(is it a Kafka listener, with the right security_protocol?)",
}
# The kinds that are a network failure of their own (a cause found, not a wait).
NETWORK_KINDS = frozenset({"dns", "refused", "timeout", "unreachable"})
# The kind that names an attempt's cause (and keys its rate-limited warning), most telling first.
CAUSE_NAMES = {
    "dns": "NameNotResolved",
    "refused": "ConnectionRefused",
    "timeout": "ConnectTimeout",
    "unreachable": "NetworkUnreachable",
    "connecting": "ConnectTimeout",
    "accepts": "BootstrapIncomplete",
    "resolving": "Connecting",
}


def split_server(server: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) -> (host, port); a missing port is Kafka's 9092."""
    host, sep, port = server.rpartition(":")
    if not sep or "]" in port or not port.isdigit():
        return server.strip("[]"), 9092
    return host.strip("[]"), int(port)


def try_server(server: str, timeout_s: float = CONNECT_TIMEOUT_S) -> Finding:
    """Resolve ``server`` and open a TCP connection to it; what happened, by exception type."""
    host, port = split_server(server)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return Finding(server, "dns", str(exc.strerror or exc))
    except UnicodeError:
        # The IDNA codec refuses the name before any lookup (an empty label: "a..b").
        return Finding(server, "dns", "not a valid host name")
    last: Finding | None = None
    for family, kind, proto, _name, address in infos[:2]:
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(timeout_s)
            sock.connect(address)
        except ConnectionRefusedError:
            last = Finding(server, "refused")
        except TimeoutError:
            last = Finding(server, "timeout", f"{timeout_s:g} s")
        except OSError as exc:
            name = errno.errorcode.get(exc.errno or 0, type(exc).__name__)
            last = Finding(server, "unreachable", f"{name}: {exc.strerror or exc}")
        else:
            return Finding(server, "accepts")
        finally:
            sock.close()
    return last or Finding(server, "dns", "no address")


class ReachCheck:
    """Tries the bootstrap servers on a daemon thread; :meth:`findings` says what it found
    so far (a server still being tried is reported as such, with how long it has taken)."""

    def __init__(
        self,
        servers: Sequence[str],
        *,
        attempt: Callable[[str], Finding] = try_server,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._servers = list(servers)[:MAX_SERVERS]
        self._attempt = attempt
        self._clock = clock
        self._started = clock()
        self._found: dict[str, Finding] = {}
        self.done = threading.Event()
        try:
            threading.Thread(target=self._run, name="kafkalog-reach", daemon=True).start()
        except RuntimeError:
            # CPython 3.12.0/3.12.1 start no thread at interpreter exit: no check, then (the
            # connect attempt reports that as retriable); findings stay "connecting".
            self.done.set()

    def _run(self) -> None:
        try:
            for server in self._servers:
                try:
                    self._found[server] = self._attempt(server)
                except Exception as exc:  # a diagnosis must never print a traceback
                    self._found[server] = Finding(server, "dns", f"{type(exc).__name__}: {exc}")
        finally:
            self.done.set()

    def findings(self) -> list[Finding]:
        """One finding per server: a result, or the server still being tried."""
        waited = self._clock() - self._started
        out: list[Finding] = []
        for server in self._servers:
            found = self._found.get(server)
            if found is None:
                found = (Finding(server, "connecting", f"{waited:.1f} s")
                         if waited >= SLOW_CONNECT_S else Finding(server, "resolving"))
            out.append(found)
        return out


def summary(findings: Sequence[Finding]) -> tuple[str, str]:
    """(cause name, text) for a message: the most telling finding first, then the others."""
    order = list(CAUSE_NAMES)
    ranked = sorted(findings, key=lambda f: order.index(f.kind))
    cause = CAUSE_NAMES[ranked[0].kind] if ranked else "Connecting"
    return cause, "; ".join(f.describe() for f in ranked)
