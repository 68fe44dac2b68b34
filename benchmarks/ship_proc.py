"""A shipper under measurement: one child process, its wall time, CPU and peak memory.

Every shipper of the ship section (the agent, kcat, rsyslogd) runs as a child process, timed
from its start to a condition the section polls (the agent's registry, the topic's end
offsets, or the child's exit). CPU is the child's user+sys time, all threads; peak memory is
its ``VmHWM`` (the parent's peak is not carried into it, unlike ``ru_maxrss``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import psutil
from kafka import KafkaConsumer, TopicPartition

MIB = 1024 * 1024
# How often a condition is polled: fine enough for runs of a second or more. Reading a topic's
# end offsets costs this process about half a millisecond of CPU, so that is polled less often.
POLL_S = 0.02
TOPIC_POLL_S = 0.05
# A run that makes no progress for this long has failed.
STALL_S = 60.0


class ShipperError(RuntimeError):
    """A shipper failed, stalled or did not finish in time; the message says which and how."""


@dataclasses.dataclass(frozen=True)
class Usage:
    """What one run of a shipper cost."""

    seconds: float
    cpu_s: float
    peak_rss_mib: float


def _peak_rss(pid: int) -> int:
    """The process's peak resident memory in bytes (0 if it is gone)."""
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return 0


def _death_prefix() -> list[str]:
    # The kernel kills the child if this process dies first (PR_SET_PDEATHSIG), as the test
    # broker's JVM does; only from the main thread, which lives as long as the process.
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


class Child:
    """One shipper process; its output goes to ``log``. Use as a context manager: the child
    is stopped (SIGTERM, then SIGKILL) when the block ends, however it ends."""

    def __init__(self, argv: list[str], log: Path, *, cwd: Path | None = None) -> None:
        self.log = log
        self._out = open(log, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.perf_counter()
        self.proc = subprocess.Popen(_death_prefix() + argv, stdout=self._out,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=cwd)
        self._ps = psutil.Process(self.proc.pid)
        self._peak = 0

    def __enter__(self) -> Child:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def tail(self, chars: int = 1500) -> str:
        """The end of the child's output, for error messages."""
        self._out.flush()
        return self.log.read_bytes()[-chars:].decode("utf-8", "replace")

    def usage(self) -> Usage:
        """Wall time since the start, CPU and peak RSS so far (the child must be alive)."""
        seconds = time.perf_counter() - self.started
        cpu = self._ps.cpu_times()
        self._peak = max(self._peak, _peak_rss(self.proc.pid))
        return Usage(seconds, cpu.user + cpu.system, self._peak / MIB)

    def wait_for(self, progress: Callable[[], int], goal: int, timeout_s: float,
                 step_s: float = POLL_S) -> Usage:
        """Poll ``progress()`` every ``step_s`` until it reaches ``goal``; the usage at that
        moment. ShipperError if the child exits first, or stalls, or ``timeout_s`` passes."""
        deadline = self.started + timeout_s
        last, last_change = -1, time.perf_counter()
        for _ in range(int(timeout_s / step_s) + 1):  # bounded by the deadline too
            done = progress()
            if done >= goal:
                return self.usage()
            now = time.perf_counter()
            if done != last:
                last, last_change = done, now
            if self.proc.poll() is not None:
                raise ShipperError(f"exited with {self.proc.returncode} at {done:,} of "
                                   f"{goal:,}: {self.tail()}")
            if now > deadline or now - last_change > STALL_S:
                raise ShipperError(f"stuck at {done:,} of {goal:,} after "
                                   f"{now - self.started:.0f} s: {self.tail()}")
            self._peak = max(self._peak, _peak_rss(self.proc.pid))
            time.sleep(step_s)
        raise ShipperError(f"not done in {timeout_s:.0f} s: {self.tail()}")

    def wait_exit(self, timeout_s: float) -> Usage:
        """Wait for the child to exit by itself (status 0); its usage, CPU from ``wait4``."""
        deadline = self.started + timeout_s
        pid = self.proc.pid
        for _ in range(int(timeout_s / POLL_S) + 1):
            self._peak = max(self._peak, _peak_rss(pid))
            waited, status, rusage = os.wait4(pid, os.WNOHANG)
            if waited == pid:
                seconds = time.perf_counter() - self.started
                self.proc.returncode = os.waitstatus_to_exitcode(status)
                if self.proc.returncode != 0:
                    raise ShipperError(f"exited with {self.proc.returncode}: {self.tail()}")
                return Usage(seconds, rusage.ru_utime + rusage.ru_stime, self._peak / MIB)
            if time.perf_counter() > deadline:
                break
            time.sleep(POLL_S / 4)  # short runs: exit is the end of the timing
        raise ShipperError(f"not done in {timeout_s:.0f} s: {self.tail()}")

    def stop(self, timeout_s: float = 30.0) -> None:
        """SIGTERM, then SIGKILL after ``timeout_s``; idempotent."""
        if self.proc.returncode is None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._out.close()


def registry_offset(state_dir: Path, path: Path) -> int:
    """The agent's committed offset of ``path`` (its registry is replaced atomically)."""
    try:
        data = orjson.loads((state_dir / "registry.json").read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return 0
    return max((int(s["offset"]) for s in data.get("states", ()) if s["path"] == str(path)),
               default=0)


class TopicCounter:
    """How many records a topic holds: the sum of its partitions' end offsets."""

    def __init__(self, bootstrap: str) -> None:
        self._consumer = KafkaConsumer(bootstrap_servers=bootstrap, request_timeout_ms=30_000)

    def count(self, topic: str, partitions: int) -> int:
        """Records in ``topic`` (``partitions`` partitions) now."""
        parts = [TopicPartition(topic, p) for p in range(partitions)]
        return int(sum(self._consumer.end_offsets(parts).values()))

    def close(self) -> None:
        """Close the consumer."""
        self._consumer.close()
