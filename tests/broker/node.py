"""One KRaft node (broker and controller in one JVM): its lifecycle from formatting its
storage to a graceful or brutal stop, and a restart on the same ports with the same data.

Its configuration files are :mod:`broker.node_config`; reading its log is :mod:`broker.logs`.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
import warnings
from collections.abc import Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO

from broker.admin import describe_cluster, unfenced
from broker.errors import BrokerError
from broker.jars import ensure_jars
from broker.logs import log_tail
from broker.node_config import NodeConfig
from broker.polling import wait_for
from broker.processes import (
    death_signal_prefix,
    forget,
    free_port,
    java_executable,
    port_accepts,
    track,
)

__all__ = ["KafkaBroker", "new_cluster_id"]


def new_cluster_id() -> str:
    """A random KRaft cluster id: 16 bytes, URL-safe base64 without padding (22 chars)."""
    for _ in range(100):
        raw = secrets.token_bytes(16)
        cluster_id = base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")
        # Like Kafka's Uuid.randomUuid(): skip the reserved all-zero/one ids and ids
        # starting with '-', which argument parsers would take for an option.
        if int.from_bytes(raw, "big") > 1 and not cluster_id.startswith("-"):
            return cluster_id
    raise BrokerError("could not generate a cluster id")  # pragma: no cover


class KafkaBroker(NodeConfig):
    """One KRaft node (``process.roles=broker,controller``) listening on 127.0.0.1.

    Ports are picked when the object is created and kept for its lifetime, as is the
    work directory, so :meth:`restart` brings the node back on the same port with the
    same data. Without ``quorum_voters`` the node forms a single-node dynamic quorum
    (``--standalone``); :class:`KafkaCluster` passes a static voter list instead.
    """

    #: Real brokers can be stopped, killed and restarted by tests.
    managed = True

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        node_id: int = 1,
        port: int | None = None,
        controller_port: int | None = None,
        cluster_id: str | None = None,
        quorum_voters: str | None = None,
        replication_factor: int = 1,
        min_insync_replicas: int = 1,
        config: Mapping[str, object] | None = None,
        jars: str | os.PathLike[str] | None = None,
        heap_max: str = "512m",
        heap_min: str = "256m",
        proxy_port: int | None = None,
    ) -> None:
        """Describe a node; nothing is written or started until :meth:`start`.

        With ``proxy_port``, the node has a second PLAINTEXT listener, ``EXTERNAL`` on
        :attr:`external_port`, that advertises ``127.0.0.1:proxy_port``: a client that
        bootstraps through a proxy on that port is sent back to the proxy for every
        connection, while :attr:`bootstrap` stays direct.
        """
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(
            work_dir if work_dir is not None else tempfile.mkdtemp(prefix="kafkalog-broker-")
        ).resolve()
        self.node_id = node_id
        self.port = port if port is not None else free_port()
        self.controller_port = controller_port if controller_port is not None else free_port()
        self.cluster_id = cluster_id or new_cluster_id()
        self.quorum_voters = quorum_voters
        self.replication_factor = replication_factor
        self.min_insync_replicas = min_insync_replicas
        self.extra_config = dict(config or {})
        self._jars = Path(jars) if jars is not None else None
        self.heap_max = heap_max
        self.heap_min = heap_min
        self.proxy_port = proxy_port
        self.external_port = free_port() if proxy_port is not None else None
        self.data_dir = self.work_dir / "data"
        self.properties_file = self.work_dir / "server.properties"
        self.log4j_file = self.work_dir / "log4j2.properties"
        #: INFO log of the broker (log4j2 file appender).
        self.log_file = self.work_dir / "server.log"
        #: Raw stdout/stderr of the JVM (JVM-level failures end up here).
        self.console_file = self.work_dir / "console.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None
        self._last_returncode: int | None = None

    # ------------------------------------------------------------------ properties

    @property
    def is_running(self) -> bool:
        """Whether the JVM process is alive (not necessarily ready)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """PID of the running JVM, else ``None``."""
        return self._proc.pid if self.is_running and self._proc is not None else None

    @property
    def returncode(self) -> int | None:
        """Exit status of the last JVM run (negative = killed by that signal)."""
        if self._proc is not None:
            return self._proc.poll()
        return self._last_returncode

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 60.0) -> KafkaBroker:
        """Format storage (first time only), launch the JVM and wait until it serves.

        Ready means the node answers DescribeCluster with our cluster id and lists
        itself as an unfenced broker. On failure the process is killed and a
        :class:`BrokerError` carrying the tail of the broker log is raised.
        """
        self.launch()
        self.wait_ready(timeout=timeout)
        return self

    def launch(self) -> None:
        """Start the JVM without waiting for readiness (see :meth:`wait_ready`)."""
        if self.is_running:
            raise BrokerError(f"broker {self.node_id} at {self.bootstrap} is already running")
        jars = self._resolve_jars()
        self._write_configs()
        if not (self.data_dir / "meta.properties").is_file():
            self._format_storage(jars)
        cmd = [
            *death_signal_prefix(),
            *self._java_cmd(jars),
            "kafka.Kafka",
            str(self.properties_file),
        ]
        self._console = self.console_file.open("ab")
        try:
            self._proc = subprocess.Popen(
                cmd,
                cwd=self.work_dir,
                stdin=subprocess.DEVNULL,
                stdout=self._console,
                stderr=subprocess.STDOUT,
                # Own session: Ctrl-C in the terminal goes to pytest only (which then
                # stops brokers in fixture teardown), and signals we send hit only the JVM.
                start_new_session=True,
            )
        except OSError as exc:
            self._close_console()
            raise BrokerError(f"could not launch the broker JVM: {exc}") from exc
        track(self._proc)

    def wait_ready(
        self, timeout: float = 60.0, expected_brokers: Collection[int] | None = None
    ) -> None:
        """Block (bounded) until this node serves metadata listing ``expected_brokers``.

        ``expected_brokers`` defaults to this node alone; all must be unfenced.
        """
        expected = set(expected_brokers) if expected_brokers is not None else {self.node_id}
        deadline = time.monotonic() + timeout

        def probe() -> bool:
            self._check_alive()
            if not port_accepts(self.port):
                return False
            remaining = deadline - time.monotonic()
            info = describe_cluster(self.bootstrap, timeout=min(5.0, max(remaining, 1.0)))
            if info.get("cluster_id") != self.cluster_id:
                raise BrokerError(
                    f"{self.bootstrap} answers with cluster id {info.get('cluster_id')!r}, "
                    f"expected {self.cluster_id!r}: another process took the port?"
                )
            return expected <= unfenced(info)

        try:
            wait_for(
                probe,
                timeout=timeout,
                interval=0.25,
                description=f"broker {self.node_id} at {self.bootstrap} to serve "
                f"brokers {sorted(expected)}",
            )
        except (TimeoutError, BrokerError) as exc:
            self._abort()
            raise BrokerError(f"{exc}\n{self.log_tail()}") from exc

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop the JVM: SIGTERM (graceful, escalating to SIGKILL after ``timeout``) or
        SIGKILL right away if ``kill``. A no-op if it is not running."""
        self.send_stop(kill=kill)
        self.wait_stopped(timeout=timeout)

    def send_stop(self, kill: bool = False) -> None:
        """Send SIGTERM (or SIGKILL) without waiting; pair with :meth:`wait_stopped`."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)

    def wait_stopped(self, timeout: float = 30.0) -> None:
        """Wait (bounded) for the JVM to exit; SIGKILL it if it does not in time."""
        proc = self._proc
        if proc is None:
            return
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            warnings.warn(
                f"broker {self.node_id} at {self.bootstrap} ignored SIGTERM for "
                f"{timeout:.0f}s; killing it",
                RuntimeWarning,
                stacklevel=2,
            )
            proc.kill()
            proc.wait(timeout=10)
        self._forget_process()

    def restart(self, timeout: float = 60.0, kill: bool = False) -> None:
        """Stop (if running; SIGKILL if ``kill``) and start again: same ports, same data."""
        self.stop(kill=kill)
        self.start(timeout=timeout)

    def close(self) -> None:
        """Stop the broker and delete its work directory if this object created it."""
        self.stop()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        if not self.is_running:
            self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"KafkaBroker(node_id={self.node_id}, bootstrap={self.bootstrap!r}, {state})"

    def log_tail(self, lines: int = 60) -> str:
        """The broker's first ERROR entries plus the last ``lines`` lines of its log and
        of the JVM console output (for failure messages)."""
        return log_tail(self.log_file, self.console_file, self.work_dir, lines)

    # ------------------------------------------------------------------ internals

    def _resolve_jars(self) -> Path:
        if self._jars is None:
            self._jars = ensure_jars()
        return self._jars

    def _java_cmd(self, jars: Path) -> list[str]:
        return [
            java_executable(),
            f"-Xmx{self.heap_max}",
            f"-Xms{self.heap_min}",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            # C1 only: a test broker lives for seconds, so fast JIT warm-up beats peak speed.
            "-XX:TieredStopAtLevel=1",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.log4j_file}",
            f"-Dkafka.logs.dir={self.work_dir}",
            "-cp",
            f"{jars}/*",
        ]

    def _format_options(self) -> list[str]:
        """Extra ``kafka-storage format`` arguments (subclasses add SCRAM users here)."""
        return []

    def _format_storage(self, jars: Path) -> None:
        cmd = [
            *self._java_cmd(jars),
            "kafka.tools.StorageTool",
            "format",
            f"--cluster-id={self.cluster_id}",
            "--config",
            str(self.properties_file),
        ]
        if not self.quorum_voters:
            cmd.append("--standalone")
        cmd.extend(self._format_options())
        try:
            proc = subprocess.run(
                cmd, cwd=self.work_dir, capture_output=True, text=True, timeout=120,
                check=False, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            raise BrokerError(f"kafka-storage format timed out: {cmd}") from exc
        if proc.returncode != 0:
            raise BrokerError(
                f"kafka-storage format failed (exit {proc.returncode}): {' '.join(cmd)}\n"
                f"{(proc.stdout + proc.stderr).strip()[-4000:]}\n{self.log_tail()}"
            )

    def _check_alive(self) -> None:
        proc = self._proc
        if proc is None:
            raise BrokerError(f"broker {self.node_id} was never started")
        code = proc.poll()
        if code is not None:
            raise BrokerError(f"broker {self.node_id} at {self.bootstrap} exited with {code}")

    def _abort(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        self._forget_process()

    def _forget_process(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            self._last_returncode = proc.returncode
            forget(proc)
            self._proc = None
        self._close_console()

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None
