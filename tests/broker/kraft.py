"""Real Apache Kafka (KRaft mode) brokers for the kafkalog test suite.

The broker jars come from Maven Central (see ``pom.xml`` next to this file) and
every broker runs as a plain ``java`` child process bound to 127.0.0.1 only.

Public API::

    ensure_jars() -> Path
    KafkaBroker(...)            one combined broker+controller node
    KafkaCluster(size=3, ...)   N combined nodes with a static controller quorum
    create_topic(bootstrap, name, partitions, replication_factor=1, config=None)
    consume(bootstrap, topic, min_messages, timeout=30.0)
    wait_for(fn, timeout=..., description=...)

Command line (for humans and examples)::

    python tests/broker/kraft.py fetch      # download the jars into the cache
    python tests/broker/kraft.py run        # start one broker, print its bootstrap
"""

from __future__ import annotations

import argparse
import atexit
import base64
import contextlib
import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any, TypeVar

from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import (
    ACL,
    ACLOperation,
    ACLPermissionType,
    ACLResourcePatternType,
    ResourcePattern,
    ResourceType,
)

try:
    from cache_swap import MARKER, fill_cache, run_maven
except ModuleNotFoundError:  # run as a script (python tests/broker/kraft.py): tests/ is no path
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from cache_swap import MARKER, fill_cache, run_maven

__all__ = [
    "KAFKA_VERSION",
    "BrokerError",
    "KafkaBroker",
    "KafkaCluster",
    "SecuredKafkaBroker",
    "consume",
    "create_topic",
    "ensure_jars",
    "grant",
    "new_cluster_id",
    "wait_for",
]

KAFKA_VERSION = "4.3.1"
HOST = "127.0.0.1"

_HERE = Path(__file__).resolve().parent
_POM = _HERE / "pom.xml"
_REPO_ROOT = _HERE.parents[1]
_JARS_ENV = "KAFKALOG_KAFKA_JARS"
# The jar that proves the download produced a broker (and not, say, an empty dir).
_BROKER_JAR = f"kafka_2.13-{KAFKA_VERSION}.jar"

T = TypeVar("T")


class BrokerError(RuntimeError):
    """A broker (or its jars) could not be provisioned, started or stopped."""


# --------------------------------------------------------------------------- polling


def wait_for(
    fn: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    description: str = "condition",
) -> T:
    """Call ``fn`` until it returns something other than ``None``/``False``; return that.

    Exceptions raised by ``fn`` count as "not yet" (the last one is reported), so ``fn``
    can simply try the operation. Bounded by ``timeout`` seconds; raises ``TimeoutError``.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    # The attempt cap is a second bound in case fn returns instantly and interval is 0.
    max_attempts = max(1, int(timeout / max(interval, 0.01)) + 1)
    for _ in range(max_attempts):
        try:
            result = fn()
        except BrokerError:
            # A broker process that died will not come back by itself: fail fast.
            raise
        except Exception as exc:
            last_error = exc
        else:
            if result is not None and result is not False:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {description}{detail}")


# --------------------------------------------------------------------------- jars


def _jars_dir() -> Path:
    override = os.environ.get(_JARS_ENV)
    if override:
        return Path(override).expanduser().resolve()
    return _REPO_ROOT / ".cache" / f"kafka-{KAFKA_VERSION}" / "libs"


def _pom_digest() -> str:
    # Stored in the marker so that editing pom.xml invalidates an existing cache.
    return hashlib.sha256(_POM.read_bytes()).hexdigest()


def ensure_jars(timeout: float = 600.0) -> Path:
    """Return a directory holding the Kafka broker jars, downloading them if needed.

    The directory is ``$KAFKALOG_KAFKA_JARS`` or ``<repo>/.cache/kafka-4.3.1/libs``; a
    directory of jars without our ``.complete`` marker is used as is. Jars are resolved
    with Maven from ``tests/broker/pom.xml`` into a temporary sibling directory, marked
    complete and renamed into place, so an interrupted download is never reused; a
    file lock serialises concurrent callers (see ``tests/cache_swap.py``).
    """
    libs = _jars_dir()
    if not (libs / MARKER).exists() and any(libs.glob("*.jar")):
        # Jars we did not download (e.g. $KAFKALOG_KAFKA_JARS=<kafka dist>/libs): use
        # them as they are, and never replace or delete somebody else's directory.
        if not any(libs.glob("kafka_2.13-*.jar")):
            raise BrokerError(f"{libs} holds jars but no kafka_2.13-*.jar broker jar")
        return libs
    return fill_cache(libs, _pom_digest(), _BROKER_JAR, lambda staging: _maven(staging, timeout),
                      timeout=timeout, what="another process is downloading Kafka jars")


def _maven(staging: Path, timeout: float) -> None:
    """Resolve the broker's jars from pom.xml into ``staging``."""
    mvn = shutil.which("mvn")
    if mvn is None:
        raise BrokerError(
            "Maven ('mvn') is not on PATH; it is needed once to download the Kafka "
            f"{KAFKA_VERSION} jars (or point ${_JARS_ENV} at a directory of jars)."
        )
    # pdeathsig: a Maven orphaned by a killed caller would keep writing into the staging dir
    # after the next caller has started cleaning it up.
    cmd = [
        *_death_signal_prefix(), mvn, "-q", "-B", "-f", str(_POM),
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}",
        "-DincludeScope=runtime",
    ]  # fmt: skip
    run_maven(cmd, timeout=timeout, error=BrokerError)
    if not (staging / _BROKER_JAR).is_file():
        raise BrokerError(f"Maven ran but {staging} has no {_BROKER_JAR}: {' '.join(cmd)}")


# --------------------------------------------------------------------------- processes

_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


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


def _port_accepts(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1.0):
            return True
    except OSError:
        return False


def _java() -> str:
    java_home = os.environ.get("JAVA_HOME")
    if java_home and (Path(java_home) / "bin" / "java").is_file():
        return str(Path(java_home) / "bin" / "java")
    java = shutil.which("java")
    if java is None:
        raise BrokerError("'java' (17+) is not on PATH and JAVA_HOME is not set")
    return java


def _death_signal_prefix() -> list[str]:
    # If the Python process is SIGKILLed (or os._exit()s, e.g. pytest-timeout's thread
    # method) atexit never runs. PR_SET_PDEATHSIG makes the kernel kill the JVM then.
    # The "parent" is the forking *thread*, so only use it from the main thread, which
    # lives as long as the process; other threads rely on atexit alone.
    if threading.current_thread() is not threading.main_thread():
        return []
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


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


def _describe_cluster(bootstrap: str, timeout: float) -> dict[str, Any]:
    timeout_ms = max(1000, int(timeout * 1000))
    admin = KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="kafkalog-tests-probe",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )
    try:
        info: dict[str, Any] = admin.describe_cluster()
        return info
    finally:
        admin.close()


def _unfenced(info: Mapping[str, Any]) -> set[int]:
    return {int(b["broker_id"]) for b in info["brokers"] if not b.get("is_fenced", False)}


_LOG4J2 = """\
# Written by tests/broker/kraft.py: broker logs go to a file, never to the test's stdout.
status = warn
name = kafkalog-test-broker
appender.file.type = File
appender.file.name = FILE
appender.file.fileName = {log_file}
appender.file.append = true
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.file.ref = FILE
# Per-request chatter that makes the INFO log hard to read.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class KafkaBroker:
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
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the PLAINTEXT client listener."""
        return f"{HOST}:{self.port}"

    @property
    def controller_endpoint(self) -> str:
        """``"127.0.0.1:PORT"`` of the CONTROLLER listener."""
        return f"{HOST}:{self.controller_port}"

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

    def broker_properties(self) -> dict[str, str]:
        """The ``server.properties`` content this node runs with."""
        rf = self.replication_factor
        min_isr = min(self.min_insync_replicas, rf)
        props: dict[str, object] = {
            "process.roles": "broker,controller",
            "node.id": self.node_id,
            "listeners": f"PLAINTEXT://{self.bootstrap},CONTROLLER://{self.controller_endpoint}",
            "advertised.listeners": f"PLAINTEXT://{self.bootstrap},"
            f"CONTROLLER://{self.controller_endpoint}",
            "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.data_dir),
            "auto.create.topics.enable": True,
            "num.partitions": 1,
            "default.replication.factor": rf,
            "min.insync.replicas": min_isr,
            "offsets.topic.replication.factor": rf,
            # 50 partitions (the default) makes the first consumer group join slow.
            "offsets.topic.num.partitions": 5,
            "transaction.state.log.replication.factor": rf,
            "transaction.state.log.min.isr": min_isr,
            "transaction.state.log.num.partitions": 5,
            "share.coordinator.state.topic.replication.factor": rf,
            "share.coordinator.state.topic.min.isr": min_isr,
            "group.initial.rebalance.delay.ms": 0,
            # Notice a dead node within ~3 s instead of 9 s so leader failover is quick.
            "broker.session.timeout.ms": 3000,
            "broker.heartbeat.interval.ms": 500,
            # Small thread pools: tests run several JVMs on small CI machines.
            "num.network.threads": 2,
            "num.io.threads": 4,
            "background.threads": 4,
            "num.recovery.threads.per.data.dir": 1,
            "num.replica.fetchers": 1,
            # Keep disk use tiny and shutdown/recovery cheap.
            "log.segment.bytes": 16 * 1024 * 1024,
            "log.cleaner.dedupe.buffer.size": 2 * 1024 * 1024,
        }
        if self.quorum_voters:
            props["controller.quorum.voters"] = self.quorum_voters
        else:
            props["controller.quorum.bootstrap.servers"] = self.controller_endpoint
        if self.proxy_port is not None:
            props["listeners"] = f"{props['listeners']},EXTERNAL://{HOST}:{self.external_port}"
            props["advertised.listeners"] = (
                f"{props['advertised.listeners']},EXTERNAL://{HOST}:{self.proxy_port}"
            )
            props["listener.security.protocol.map"] = (
                f"{props['listener.security.protocol.map']},EXTERNAL:PLAINTEXT"
            )
        props.update(self.extra_config)
        return {k: _prop_value(v) for k, v in props.items()}

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
            *_death_signal_prefix(),
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
        with _LIVE_LOCK:
            _LIVE.add(self._proc)

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
            if not _port_accepts(self.port):
                return False
            remaining = deadline - time.monotonic()
            info = _describe_cluster(self.bootstrap, timeout=min(5.0, max(remaining, 1.0)))
            if info.get("cluster_id") != self.cluster_id:
                raise BrokerError(
                    f"{self.bootstrap} answers with cluster id {info.get('cluster_id')!r}, "
                    f"expected {self.cluster_id!r}: another process took the port?"
                )
            return expected <= _unfenced(info)

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
        parts = []
        errors = _error_summary(self.log_file)
        if errors:
            # The tail of a failed start is mostly shutdown chatter; the cause is here.
            parts.append(f"--- first errors in {self.log_file} ---\n{errors}")
        for path in (self.log_file, self.console_file):
            tail = _tail(path, lines)
            if tail:
                parts.append(f"--- last lines of {path} ---\n{tail}")
        return "\n".join(parts) or f"(no broker output in {self.work_dir})"

    # ------------------------------------------------------------------ internals

    def _resolve_jars(self) -> Path:
        if self._jars is None:
            self._jars = ensure_jars()
        return self._jars

    def _java_cmd(self, jars: Path) -> list[str]:
        return [
            _java(),
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

    def _write_configs(self) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        body = "".join(f"{k}={v}\n" for k, v in self.broker_properties().items())
        self.properties_file.write_text(body)
        self.log4j_file.write_text(_LOG4J2.format(log_file=self.log_file))

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
            with _LIVE_LOCK:
                _LIVE.discard(proc)
            self._proc = None
        self._close_console()

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None


def _prop_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


_LOG_ENTRY = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]+\] (\w+) ")


def _error_summary(path: Path, max_errors: int = 5, context: int = 4) -> str:
    """First ERROR/FATAL entries of a broker log, each with its exception message lines
    (stack frames left out)."""
    try:
        with path.open("rb") as fh:
            # Startup errors are near the start, and the log of a test broker is small.
            text = fh.read(8 * 1024 * 1024).decode("utf-8", errors="replace")
    except OSError:
        return ""
    out: list[str] = []
    errors = 0
    extra = 0  # continuation lines still allowed for the current error entry
    for line in text.splitlines():
        match = _LOG_ENTRY.match(line)
        if match:
            extra = 0
            if match.group(1) in ("ERROR", "FATAL"):
                if errors >= max_errors:
                    break
                errors += 1
                out.append(line)
                extra = context
        elif extra and not line.startswith(("\tat ", "\t...")):
            out.append(line)
            extra -= 1
    return "\n".join(out)


def _tail(path: Path, lines: int) -> str:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            # Only the end of a possibly large log is interesting.
            fh.seek(max(0, size - 64 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.splitlines()[-lines:])


# --------------------------------------------------------------------------- secured broker

#: Kafka's KRaft authorizer.
STANDARD_AUTHORIZER = "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
_PLAIN_MODULE = "org.apache.kafka.common.security.plain.PlainLoginModule"
_SCRAM_MODULE = "org.apache.kafka.common.security.scram.ScramLoginModule"


class SecuredKafkaBroker(KafkaBroker):
    """A :class:`KafkaBroker` with TLS, SASL and ACLs, like a managed Kafka service.

    Listeners, all on 127.0.0.1:

    * ``PLAINTEXT`` (:attr:`bootstrap`): unauthenticated, and its ``ANONYMOUS`` principal is
      a super user. The tests' own admin and read-back path, and the inter-broker and
      controller traffic; what kafkalog is tested against are the two below.
    * ``SSL`` (:attr:`ssl_bootstrap`): TLS with client certificates required (mutual TLS);
      the principal is the certificate's subject, :attr:`Pki.client_principal`.
    * ``SASL_SSL`` (:attr:`sasl_bootstrap`): TLS plus SASL ``SCRAM-SHA-512`` (users created
      when the storage is formatted) or ``PLAIN`` (users in the listener's JAAS config). Each
      name in ``users`` exists for both mechanisms, with the same password.

    The standard authorizer denies whatever no ACL allows; use :func:`grant` (or
    :meth:`grant`) to allow a principal an operation on a topic.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str],
        *,
        pki: Any,
        users: Mapping[str, str],
        **kwargs: Any,
    ) -> None:
        """``pki`` is a :class:`tls.Pki` (certificates); ``users`` maps names to passwords."""
        super().__init__(work_dir, **kwargs)
        self.pki = pki
        self.users = dict(users)
        for name, password in self.users.items():
            # Both are pasted into a JAAS line and a --add-scram argument unquoted.
            if not re.fullmatch(r"[A-Za-z0-9_.-]+", name + password):
                raise ValueError(f"user {name!r}: use letters, digits, '_', '.', '-' only")
        self.ssl_port = free_port()
        self.sasl_port = free_port()

    @property
    def ssl_bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the SSL (mutual TLS) listener."""
        return f"{HOST}:{self.ssl_port}"

    @property
    def sasl_bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the SASL_SSL listener."""
        return f"{HOST}:{self.sasl_port}"

    def broker_properties(self) -> dict[str, str]:
        """The plain node's properties plus the secured listeners and the authorizer."""
        # Here, not at the top: kraft.py also runs as a script, where "broker" is no package.
        from broker.tls import pem_property  # noqa: PLC0415

        props: dict[str, object] = dict(super().broker_properties())
        extra = f"SSL://{self.ssl_bootstrap},SASL_SSL://{self.sasl_bootstrap}"
        props["listeners"] = f"{props['listeners']},{extra}"
        props["advertised.listeners"] = f"{props['advertised.listeners']},{extra}"
        props["listener.security.protocol.map"] = (
            f"{props['listener.security.protocol.map']},SSL:SSL,SASL_SSL:SASL_SSL"
        )
        plain_users = " ".join(f'user_{n}="{p}"' for n, p in self.users.items())
        props.update(
            {
                # PEM values inline: no Java keystores to build.
                "ssl.keystore.type": "PEM",
                "ssl.keystore.certificate.chain": pem_property(self.pki.broker_cert),
                "ssl.keystore.key": pem_property(self.pki.broker_key),
                "ssl.truststore.type": "PEM",
                "ssl.truststore.certificates": pem_property(self.pki.ca_cert),
                "listener.name.ssl.ssl.client.auth": "required",
                "listener.name.sasl_ssl.ssl.client.auth": "none",
                "sasl.enabled.mechanisms": "SCRAM-SHA-512,PLAIN",
                "listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config": (
                    f"{_SCRAM_MODULE} required;"
                ),
                "listener.name.sasl_ssl.plain.sasl.jaas.config": (
                    f"{_PLAIN_MODULE} required {plain_users};"
                ),
                "authorizer.class.name": STANDARD_AUTHORIZER,
                "super.users": "User:ANONYMOUS",
                "allow.everyone.if.no.acl.found": False,
            }
        )
        props.update(self.extra_config)
        return {k: _prop_value(v) for k, v in props.items()}

    def _format_options(self) -> list[str]:
        # SCRAM credentials live in the cluster metadata; KRaft can seed them at format time.
        options = super()._format_options()
        for name, password in self.users.items():
            options += ["--add-scram", f"SCRAM-SHA-512=[name={name},password={password}]"]
        return options

    def grant(self, principal: str, topic: str, operation: str = "WRITE",
              *, prefixed: bool = False) -> None:
        """Allow ``principal`` (``"User:NAME"``) ``operation`` on ``topic``; see :func:`grant`."""
        grant(self.bootstrap, principal, topic, operation, prefixed=prefixed)


def grant(
    bootstrap: str,
    principal: str,
    topic: str,
    operation: str = "WRITE",
    *,
    prefixed: bool = False,
    timeout: float = 30.0,
) -> None:
    """Add an ALLOW ACL for ``principal`` to do ``operation`` on ``topic`` (or topics
    starting with it, if ``prefixed``), through a super user's ``bootstrap``.

    The broker applies ACLs asynchronously, from the metadata log; the caller waits for
    the effect it needs (for example records arriving).
    """
    pattern = ACLResourcePatternType.PREFIXED if prefixed else ACLResourcePatternType.LITERAL
    acl = ACL(
        principal=principal,
        host="*",
        operation=ACLOperation[operation.upper()],
        permission_type=ACLPermissionType.ALLOW,
        resource_pattern=ResourcePattern(ResourceType.TOPIC, topic, pattern),
    )
    admin = _admin(bootstrap, timeout)
    try:
        result = admin.create_acls([acl])
    finally:
        admin.close()
    if result.get("failed"):
        raise BrokerError(f"could not create ACL {acl}: {result['failed']}")


# --------------------------------------------------------------------------- cluster


class KafkaCluster:
    """``size`` combined KRaft nodes (ids 1..size) sharing a static controller quorum.

    Internal topics get replication factor ``min(size, 3)`` and ``min.insync.replicas``
    defaults to ``min(2, size)``, like a small production cluster.
    """

    managed = True

    def __init__(
        self,
        size: int = 3,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        replication_factor: int | None = None,
        min_insync_replicas: int | None = None,
        config: Mapping[str, object] | None = None,
    ) -> None:
        """Describe the cluster (ports and cluster id are chosen now); see :meth:`start`."""
        if size < 1:
            raise ValueError("size must be >= 1")
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(
            work_dir if work_dir is not None else tempfile.mkdtemp(prefix="kafkalog-cluster-")
        ).resolve()
        self.cluster_id = new_cluster_id()
        rf = replication_factor if replication_factor is not None else min(size, 3)
        min_isr = min_insync_replicas if min_insync_replicas is not None else min(2, size)
        ids = range(1, size + 1)
        controller_ports = {node_id: free_port() for node_id in ids}
        voters = ",".join(f"{i}@{HOST}:{p}" for i, p in controller_ports.items())
        self.brokers: dict[int, KafkaBroker] = {
            node_id: KafkaBroker(
                self.work_dir / f"node-{node_id}",
                node_id=node_id,
                controller_port=controller_ports[node_id],
                cluster_id=self.cluster_id,
                quorum_voters=voters,
                replication_factor=rf,
                min_insync_replicas=min_isr,
                config=config,
            )
            for node_id in ids
        }

    @property
    def bootstrap(self) -> str:
        """Comma-joined bootstrap of all nodes (running or not)."""
        return ",".join(b.bootstrap for b in self.brokers.values())

    @property
    def running_bootstrap(self) -> str:
        """Comma-joined bootstrap of the nodes whose JVM is alive."""
        return ",".join(b.bootstrap for b in self.brokers.values() if b.is_running)

    def broker(self, node_id: int) -> KafkaBroker:
        """The node with ``node_id`` (1-based), e.g. to kill or restart it."""
        return self.brokers[node_id]

    def start(self, timeout: float = 120.0) -> KafkaCluster:
        """Launch all nodes together (a static quorum needs a majority to elect a
        controller) and wait until every node sees every broker unfenced."""
        jars = ensure_jars()
        try:
            for b in self.brokers.values():
                b._jars = jars
                b.launch()
            deadline = time.monotonic() + timeout
            for b in self.brokers.values():
                b.wait_ready(
                    timeout=max(1.0, deadline - time.monotonic()),
                    expected_brokers=self.brokers.keys(),
                )
        except BaseException:
            self.stop(kill=True)
            raise
        return self

    def stop(self, kill: bool = False, timeout: float = 30.0) -> None:
        """Stop all nodes at once (bounded by ``timeout`` overall, then SIGKILL)."""
        # Signal everybody first: stopping nodes one at a time makes the last ones lose
        # the controller quorum and stall in controlled shutdown.
        for b in self.brokers.values():
            b.send_stop(kill=kill)
        deadline = time.monotonic() + timeout
        for b in self.brokers.values():
            b.wait_stopped(timeout=max(0.1, deadline - time.monotonic()))

    def close(self) -> None:
        """Kill all nodes and delete the work directory if this object created it."""
        # SIGKILL, not SIGTERM: when the whole quorum goes down at once, the last Raft
        # leader waits 5 s for followers to acknowledge its resignation, and there is
        # nothing worth a graceful shutdown in a throwaway test cluster.
        self.stop(kill=True)
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def leader_of(
        self,
        topic: str,
        partition: int = 0,
        *,
        exclude: Collection[int] = (),
        timeout: float = 30.0,
    ) -> int:
        """Node id leading ``topic``/``partition`` per the live nodes' metadata.

        ``exclude`` lists node ids that must not be reported (e.g. a just-killed leader
        whose death the controller has not noticed yet); polls until that holds.
        """
        banned = set(exclude)

        def probe() -> int | None:
            bootstrap = self.running_bootstrap
            if not bootstrap:
                raise BrokerError("no node of the cluster is running")
            leader = _partition_leader(bootstrap, topic, partition, timeout=5.0)
            return leader if leader is not None and leader not in banned else None

        return wait_for(
            probe,
            timeout=timeout,
            interval=0.25,
            description=f"a leader for {topic}-{partition} not in {sorted(banned)}",
        )

    def __enter__(self) -> KafkaCluster:
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
        return f"KafkaCluster(size={len(self.brokers)}, bootstrap={self.bootstrap!r})"


# --------------------------------------------------------------------------- helpers


def _admin(bootstrap: str, timeout: float) -> Any:
    timeout_ms = max(1000, int(timeout * 1000))
    return KafkaAdminClient(
        bootstrap_servers=bootstrap.split(","),
        client_id="kafkalog-tests-admin",
        request_timeout_ms=timeout_ms,
        bootstrap_timeout_ms=timeout_ms,
    )


def _partition_leader(bootstrap: str, topic: str, partition: int, timeout: float) -> int | None:
    admin = _admin(bootstrap, timeout)
    try:
        (info,) = admin.describe_topics([topic])
    finally:
        admin.close()
    if info.get("error_code", 0) != 0:
        return None
    for p in info.get("partitions") or []:
        if p["partition_index"] == partition and p.get("error_code", 0) == 0:
            leader = int(p["leader_id"])
            return leader if leader >= 0 else None
    return None


def create_topic(
    bootstrap: str,
    name: str,
    partitions: int,
    replication_factor: int = 1,
    config: Mapping[str, object] | None = None,
    *,
    timeout: float = 30.0,
) -> str:
    """Create ``name`` and wait (bounded) until every partition has a leader; return name."""
    admin = _admin(bootstrap, timeout)
    try:
        admin.create_topics(
            {
                name: {
                    "num_partitions": partitions,
                    "replication_factor": replication_factor,
                    "configs": {k: _prop_value(v) for k, v in (config or {}).items()},
                }
            },
            timeout_ms=int(timeout * 1000),
        )
        admin.wait_for_topics([name], timeout_ms=int(timeout * 1000))
    finally:
        admin.close()
    return name


def consume(
    bootstrap: str,
    topic: str,
    min_messages: int,
    *,
    timeout: float = 30.0,
) -> list[Any]:
    """Read ``topic`` (all partitions, from the beginning, no consumer group) until at
    least ``min_messages`` records arrived; return them (kafka-python ConsumerRecords).

    Raises ``TimeoutError`` listing what did arrive if the bound expires first.
    """
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap.split(","),
        client_id="kafkalog-tests-consumer",
        group_id=None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        request_timeout_ms=max(5000, int(timeout * 1000)),
        bootstrap_timeout_ms=max(1000, int(timeout * 1000)),
    )
    records: list[Any] = []
    try:
        partitions = wait_for(
            lambda: consumer.partitions_for_topic(topic),
            timeout=timeout,
            description=f"metadata of topic {topic!r}",
        )
        consumer.assign([TopicPartition(topic, p) for p in sorted(partitions)])
        deadline = time.monotonic() + timeout
        # poll() blocks up to 500 ms, so this runs for at most ~timeout seconds.
        for _ in range(int(timeout / 0.5) + 1):
            if len(records) >= min_messages or time.monotonic() >= deadline:
                break
            for batch in consumer.poll(timeout_ms=500).values():
                records.extend(batch)
    finally:
        consumer.close()
    if len(records) < min_messages:
        raise TimeoutError(
            f"got {len(records)} of {min_messages} messages from {topic!r} within "
            f"{timeout:.0f}s: {[r.value for r in records][:20]}"
        )
    return records


# --------------------------------------------------------------------------- CLI


def _cli(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kraft.py", description=f"Kafka {KAFKA_VERSION} (KRaft) brokers for kafkalog tests"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("fetch", help="download the broker jars into the cache and print the dir")
    run = sub.add_parser("run", help="start one broker and keep it up until Ctrl-C/SIGTERM")
    run.add_argument("--port", type=int, default=None, help="client port (default: free)")
    run.add_argument("--work-dir", default=None, help="data/log dir (default: temp, deleted)")
    run.add_argument(
        "--max-seconds",
        type=float,
        default=8 * 3600.0,
        help="stop by itself after this long (default: 8 h)",
    )
    run_cmd = sub.add_parser(
        "exec",
        help="start a throwaway broker, run COMMAND with KAFKALOG_BOOTSTRAP_SERVERS set, stop it",
    )
    run_cmd.add_argument("--timeout", type=float, default=600.0, help="COMMAND's time limit")
    run_cmd.add_argument("cmd", nargs=argparse.REMAINDER, help="-- COMMAND [ARGS...]")
    args = parser.parse_args(argv)

    if args.command == "fetch":
        print(ensure_jars())
        return 0
    if args.command == "exec":
        return _exec(args.cmd, args.timeout)

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    broker = KafkaBroker(args.work_dir, port=args.port)
    try:
        t0 = time.monotonic()
        broker.start()
        print(broker.bootstrap, flush=True)
        print(
            f"# Kafka {KAFKA_VERSION} up in {time.monotonic() - t0:.1f}s; "
            f"log: {broker.log_file}; Ctrl-C to stop",
            file=sys.stderr,
            flush=True,
        )
        deadline = time.monotonic() + args.max_seconds
        while not stop.is_set() and broker.is_running and time.monotonic() < deadline:
            stop.wait(1.0)
        if not broker.is_running:
            print(f"# broker exited with {broker.returncode}", file=sys.stderr)
            print(broker.log_tail(), file=sys.stderr)
            return 1
    finally:
        broker.close()
    return 0


def _exec(cmd: list[str], timeout: float) -> int:
    """Run ``cmd`` against a broker that lives exactly as long as the command."""
    if cmd and cmd[0] == "--":
        cmd = cmd[1:]
    if not cmd:
        print("kraft.py exec: give a command after --", file=sys.stderr)
        return 2
    with KafkaBroker() as broker:
        print(f"# Kafka {KAFKA_VERSION} at {broker.bootstrap}", file=sys.stderr, flush=True)
        env = {**os.environ, "KAFKALOG_BOOTSTRAP_SERVERS": broker.bootstrap}
        try:
            return subprocess.run(cmd, env=env, timeout=timeout, check=False).returncode
        except subprocess.TimeoutExpired:
            print(f"kraft.py exec: {cmd[0]} ran longer than {timeout:.0f}s", file=sys.stderr)
            return 124


if __name__ == "__main__":
    sys.exit(_cli())
