"""The server's JVM as a child process we own: started, measured, stopped within bounds.

A process started here that is still running at interpreter exit (a test forgot it) is
killed then; ``setpriv --pdeathsig`` makes the kernel kill it even when the test
process itself is SIGKILLed (atexit never runs then).
"""

from __future__ import annotations

import atexit
import contextlib
import os
import shutil
import signal
import subprocess
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO

from .runas import Account

__all__ = ["ChildProcess", "setpriv_prefix"]


def setpriv_prefix(who: Account) -> list[str]:
    """``setpriv`` arguments that run a command as ``who`` and tie its life to ours."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        if who.switches:
            raise RuntimeError("setpriv (util-linux) is needed to run OpenSearch as a user")
        return []
    # The parent of pdeathsig is the forking *thread*: only the main thread lives long enough.
    on_main = threading.current_thread() is threading.main_thread()
    death = ["--pdeathsig", "KILL"] if on_main else []
    if not death and not who.switches:
        return []
    return [setpriv, *death, *who.setpriv_args, "--"]


class ChildProcess:
    """One run of a command, its output appended to a console file."""

    def __init__(
        self,
        cmd: Sequence[str],
        *,
        cwd: Path,
        env: Mapping[str, str],
        console_file: Path,
    ) -> None:
        """Start ``cmd`` in a session of its own (signals from the terminal go to the tests)."""
        self._console: IO[bytes] | None = console_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                list(cmd), cwd=cwd, env=dict(env), stdin=subprocess.DEVNULL,
                stdout=self._console, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except OSError:
            self._close_console()
            raise
        atexit.register(self._kill_at_exit)

    @property
    def alive(self) -> bool:
        """Whether the process has not exited yet."""
        return self._proc.poll() is None

    @property
    def pid(self) -> int:
        """The process id."""
        return self._proc.pid

    @property
    def returncode(self) -> int | None:
        """The exit status once it has exited (negative: killed by that signal)."""
        return self._proc.poll()

    def rss_bytes(self) -> int | None:
        """Resident memory now (``VmRSS``), or ``None`` once it has exited."""
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) used so far, or ``None`` once it has exited."""
        try:
            stat = Path(f"/proc/{self.pid}/stat").read_text()
        except OSError:
            return None
        # The fields after the command name (which may hold spaces) follow its ')'.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def end(self, kill: bool, timeout: float, what: str) -> None:
        """SIGTERM, or SIGKILL if ``kill``; SIGKILL anyway after ``timeout`` seconds."""
        if self._proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self._proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            self._proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            warnings.warn(f"{what} ignored SIGTERM for {timeout:.0f}s; killing it",
                          RuntimeWarning, stacklevel=3)  # fmt: skip
            self._proc.kill()
            self._proc.wait(timeout=10)
        atexit.unregister(self._kill_at_exit)
        self._close_console()

    def _kill_at_exit(self) -> None:
        if self._proc.poll() is None:
            with contextlib.suppress(OSError):
                self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None
