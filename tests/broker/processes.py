"""The broker JVMs as child processes: free ports on 127.0.0.1, the ``java`` to run, the
death signal that takes a JVM down with its parent, and the exit hook that kills leftovers.

The registry of live processes and the set of ports handed out exist here only, once per
Python process.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import socket
import subprocess
import threading
from pathlib import Path

from broker.errors import BrokerError

__all__ = [
    "HOST",
    "death_signal_prefix",
    "forget",
    "free_port",
    "java_executable",
    "port_accepts",
    "track",
]

HOST = "127.0.0.1"

_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def track(proc: subprocess.Popen[bytes]) -> None:
    """Remember a launched JVM so that the exit hook kills it if nobody stops it."""
    with _LIVE_LOCK:
        _LIVE.add(proc)


def forget(proc: subprocess.Popen[bytes]) -> None:
    """Drop a JVM that has exited from the exit hook's list."""
    with _LIVE_LOCK:
        _LIVE.discard(proc)


def _kill_leftovers() -> None:
    # atexit safety net: a test that forgot stop() must not leave JVMs behind.
    with _LIVE_LOCK:
        procs = list(_LIVE)
        _LIVE.clear()
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
    for proc in procs:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(timeout=5)


atexit.register(_kill_leftovers)

_PORTS_HANDED_OUT: set[int] = set()
_PORTS_LOCK = threading.Lock()


def free_port() -> int:
    """A currently free TCP port on 127.0.0.1 (never the same one twice per process)."""
    with _PORTS_LOCK:
        for _ in range(50):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                sock.bind((HOST, 0))
                port: int = sock.getsockname()[1]
            if port not in _PORTS_HANDED_OUT:
                _PORTS_HANDED_OUT.add(port)
                return port
    raise BrokerError("could not find a free TCP port on 127.0.0.1")


def port_accepts(port: int) -> bool:
    """Whether something accepts TCP connections on 127.0.0.1:``port`` right now."""
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def java_executable() -> str:
    """``$JAVA_HOME/bin/java`` if there is one, else ``java`` from ``PATH``."""
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("'java' (17+) is not on PATH and JAVA_HOME is not set")
    return java


def death_signal_prefix() -> list[str]:
    """Arguments to put before a child's command so that it dies with this process."""
    # If the Python process is SIGKILLed (or os._exit()s, e.g. pytest-timeout's thread
    # method) atexit never runs. PR_SET_PDEATHSIG makes the kernel kill the JVM then.
    # The "parent" is the forking *thread*, so only use it from the main thread, which
    # lives as long as the process; other threads rely on atexit alone.
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []
