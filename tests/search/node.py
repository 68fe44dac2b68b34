"""One throwaway OpenSearch 2.19.6 node on 127.0.0.1, as a plain ``java`` child process.

The node's directory (made under the system temp dir, which the server's user can reach: the
repository and /root may not be readable by others) holds a home with its own copy of the jars
(``lib/``, ``modules/``, empty ``bin/`` and ``plugins/``, ``config/``), the data, the logs and
the JVM's temp dir. Ports are picked once, so :meth:`OpenSearchNode.restart` brings the node
back on the same port with the same data, as an outage test needs.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
import warnings
from pathlib import Path
from typing import IO, Any

from .artifacts import OPENSEARCH_VERSION, ensure_artifacts
from .runas import Account, Java, account, find_java

__all__ = ["HOST", "OpenSearchError", "OpenSearchNode", "free_port"]

HOST = "127.0.0.1"


class OpenSearchError(RuntimeError):
    """The test server could not be set up, started or stopped."""


_LIVE: set[subprocess.Popen[bytes]] = set()
_LIVE_LOCK = threading.Lock()


def _kill_leftovers() -> None:
    # atexit safety net: a test that forgot stop() must not leave a JVM behind.
    with _LIVE_LOCK:
        procs = list(_LIVE)
        _LIVE.clear()
    for proc in procs:
        if proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=10)


atexit.register(_kill_leftovers)


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


_YML = """\
# Written by tests/search/node.py: a single throwaway node for kafkalog's tests.
cluster.name: kafkalog-test
node.name: {node_name}
path.data: {data}
path.logs: {logs}
network.host: {host}
http.port: {port}
transport.port: {transport_port}
discovery.type: single-node
bootstrap.memory_lock: false
# The machine's disk may be nearly full; a test node must not turn its indices read-only.
cluster.routing.allocation.disk.watermark.low: 200mb
cluster.routing.allocation.disk.watermark.high: 100mb
cluster.routing.allocation.disk.watermark.flood_stage: 50mb
action.destructive_requires_name: false
"""

_LOG4J2 = """\
# Written by tests/search/node.py: the server logs to a file, never to the test's output.
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:opensearch.logs.base_path}${sys:file.separator}server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{ISO8601}][%-5p][%c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"""


_CLUSTER_SETTINGS = {"cluster.default_number_of_replicas": 0}


class OpenSearchNode:
    """A single-node OpenSearch 2.19.6 cluster (``discovery.type: single-node``).

    Nothing is written or started until :meth:`start`. As root, the server runs as the
    unprivileged ``kafkalog-search`` user (OpenSearch refuses root; see ``runas``).
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        heap: str = "512m",
        settings: dict[str, object] | None = None,
    ) -> None:
        self._owns_work_dir = work_dir is None
        self.work_dir = Path(
            work_dir if work_dir is not None else tempfile.mkdtemp(prefix="kafkalog-opensearch-")
        ).resolve()
        self.port = port if port is not None else free_port()
        self.transport_port = free_port()
        self.heap = heap
        self.extra_settings = dict(settings or {})
        self.home = self.work_dir / "home"
        self.data_dir = self.work_dir / "data"
        self.logs_dir = self.work_dir / "logs"
        self.tmp_dir = self.work_dir / "tmp"
        #: The server's log (log4j file appender).
        self.log_file = self.logs_dir / "server.log"
        #: The JVM's own stdout/stderr (failures before logging is set up end up here).
        self.console_file = self.work_dir / "console.log"
        self._proc: subprocess.Popen[bytes] | None = None
        self._console: IO[bytes] | None = None
        self._java: Java | None = None
        self._account: Account | None = None

    # ------------------------------------------------------------------ properties

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the REST endpoint."""
        return f"http://{HOST}:{self.port}"

    @property
    def is_running(self) -> bool:
        """Whether the JVM is alive (not necessarily serving yet)."""
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        return self._proc.pid if self._proc is not None and self.is_running else None

    def rss_bytes(self) -> int | None:
        """The JVM's resident memory now (``VmRSS``), or ``None`` if it is not running."""
        pid = self.pid
        if pid is None:
            return None
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return None

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the JVM has used so far, or ``None`` if not running."""
        pid = self.pid
        if pid is None:
            return None
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        # Fields after the command name (which may hold spaces) close with ')'.
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 120.0) -> OpenSearchNode:
        """Lay out the home (first time), launch the JVM, wait for a green cluster.

        New indices get no replica (one node could never assign it, and every index would
        stay yellow): ``cluster.default_number_of_replicas`` only works as a cluster setting,
        not from opensearch.yml, so it is set here (it persists in the data directory).
        """
        self.launch()
        self.wait_green(timeout=timeout)
        status, body = self.request(
            "PUT", "/_cluster/settings", {"persistent": _CLUSTER_SETTINGS}, timeout=timeout
        )
        if status != 200:
            self._abort()
            raise OpenSearchError(f"could not set the cluster settings: {status} {body}")
        return self

    def launch(self) -> None:
        """Start the JVM without waiting (see :meth:`wait_green`)."""
        if self.is_running:
            raise OpenSearchError(f"OpenSearch at {self.url} is already running")
        if self._java is None:
            self._java = find_java()
        if self._account is None:
            self._account = account()
        self._prepare()
        cmd = [*self._setpriv(self._account), self._java.path, *self.jvm_options(),
               "org.opensearch.bootstrap.OpenSearch"]  # fmt: skip
        self._console = self.console_file.open("ab")
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "LANG": "C.UTF-8",
            "HOME": str(self.tmp_dir),
        }
        try:
            self._proc = subprocess.Popen(
                cmd, cwd=self.home, env=env, stdin=subprocess.DEVNULL, stdout=self._console,
                stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        except OSError as exc:
            self._close_console()
            raise OpenSearchError(f"could not launch OpenSearch: {exc}") from exc
        with _LIVE_LOCK:
            _LIVE.add(self._proc)

    def wait_green(self, timeout: float = 120.0) -> None:
        """Poll (bounded) until the cluster health is green; on failure kill the JVM."""
        deadline = time.monotonic() + timeout
        last: object = None
        while True:
            proc = self._proc
            if proc is None or proc.poll() is not None:
                code = None if proc is None else proc.returncode
                self._forget()
                raise OpenSearchError(
                    f"OpenSearch at {self.url} exited with {code} while starting\n"
                    f"{self.log_tail()}"
                )
            try:
                status, body = self.request("GET", "/_cluster/health", timeout=2.0)
                if status == 200 and body.get("status") == "green":
                    return
                last = body
            except OSError as exc:
                last = exc
            if time.monotonic() >= deadline:
                self._abort()
                raise OpenSearchError(
                    f"OpenSearch at {self.url} not green within {timeout:.0f}s "
                    f"(last: {last!r})\n{self.log_tail()}"
                )
            time.sleep(0.2)

    def stop(self, kill: bool = False, timeout: float = 60.0) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL if ``kill``; bounded, then SIGKILL."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            warnings.warn(
                f"OpenSearch at {self.url} ignored SIGTERM for {timeout:.0f}s; killing it",
                RuntimeWarning,
                stacklevel=2,
            )
            proc.kill()
            proc.wait(timeout=10)
        self._forget()

    def kill(self) -> None:
        """SIGKILL the JVM (a crash): data is kept, the next start recovers it."""
        self.stop(kill=True)

    def restart(self, kill: bool = False, down_for: float = 0.0, timeout: float = 120.0) -> None:
        """Stop, stay down ``down_for`` seconds (an outage), start again: same port, same data."""
        self.stop(kill=kill)
        if down_for > 0:
            time.sleep(down_for)  # the outage itself, not a synchronisation
        self.start(timeout=timeout)

    def close(self) -> None:
        """Stop the node and delete its directory if this object made it."""
        self.stop()
        if self._owns_work_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)

    def __enter__(self) -> OpenSearchNode:
        if not self.is_running:
            self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "running" if self.is_running else "stopped"
        return f"OpenSearchNode({self.url!r}, {state})"

    # ------------------------------------------------------------------ REST

    def request(
        self, method: str, path: str, body: object = None, timeout: float = 30.0
    ) -> tuple[int, Any]:
        """One REST call (JSON in and out; ``body`` may be a str of NDJSON for _bulk)."""
        data: bytes | None
        headers = {"Accept": "application/json"}
        if body is None:
            data = None
        elif isinstance(body, str):
            data = body.encode()
            headers["Content-Type"] = "application/x-ndjson"
        else:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())

    # ------------------------------------------------------------------ set-up

    def jvm_options(self) -> list[str]:
        """The JVM's options (also written to ``config/jvm.options``)."""
        assert self._java is not None
        options = [
            f"-Xms{self.heap}",
            f"-Xmx{self.heap}",
            "-XX:+UseG1GC",
            "-XX:+ExitOnOutOfMemoryError",
            "-Xss1m",
            "-Djava.awt.headless=true",
            "-Dfile.encoding=UTF-8",
            "-Djna.nosys=true",
            "-Dio.netty.noUnsafe=true",
            "-Dio.netty.noKeySetOptimization=true",
            "-Dio.netty.recycler.maxCapacityPerThread=0",
            "-Dlog4j.shutdownHookEnabled=false",
            "-Dlog4j2.disable.jmx=true",
            "-Dlog4j2.formatMsgNoLookups=true",
            f"-Djava.io.tmpdir={self.tmp_dir}",
            "-XX:-HeapDumpOnOutOfMemoryError",
            f"-Dopensearch.path.home={self.home}",
            f"-Dopensearch.path.conf={self.home / 'config'}",
            "-Dopensearch.distribution.type=tar",
            "-Dopensearch.bundled_jdk=false",
            "-cp",
            f"{self.home / 'lib'}/*",
        ]
        if self._java.major >= 18:
            # OpenSearch installs its own Security Manager; 18+ allows that only on request.
            options.insert(0, "-Djava.security.manager=allow")
        return options

    def _setpriv(self, who: Account) -> list[str]:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            if who.switches:
                raise OpenSearchError("setpriv (util-linux) is needed to run OpenSearch as a user")
            return []
        # pdeathsig: if the test process is SIGKILLed (atexit never runs), the kernel kills the
        # JVM. It follows the forking thread, so only the main thread, which lives longest.
        death = ["--pdeathsig", "KILL"] if threading.current_thread() is threading.main_thread() \
            else []  # fmt: skip
        if not death and not who.switches:
            return []
        return [setpriv, *death, *who.setpriv_args, "--"]

    def _prepare(self) -> None:
        first = not (self.home / "lib").is_dir()
        for directory in (self.home, self.data_dir, self.logs_dir, self.tmp_dir):
            directory.mkdir(parents=True, exist_ok=True)
        if first:
            artifacts = ensure_artifacts()
            for part in ("lib", "modules"):
                _copy_tree(artifacts / part, self.home / part)
            for empty in ("bin", "plugins"):
                (self.home / empty).mkdir(exist_ok=True)
        config = self.home / "config"
        config.mkdir(exist_ok=True)
        settings = _YML.format(
            node_name=f"kafkalog-{self.port}", data=self.data_dir, logs=self.logs_dir,
            host=HOST, port=self.port, transport_port=self.transport_port,
        )  # fmt: skip
        settings += "".join(f"{k}: {json.dumps(v)}\n" for k, v in self.extra_settings.items())
        (config / "opensearch.yml").write_text(settings)
        (config / "jvm.options").write_text("\n".join(self.jvm_options()[:-2]) + "\n")
        (config / "log4j2.properties").write_text(_LOG4J2)
        assert self._account is not None
        # The server's user reads the home (made by us, perhaps with a strict umask, and the
        # jars hard-linked to the cache: they stay ours) and owns what it writes.
        self.work_dir.chmod(0o755)
        _make_readable(self.home)
        self._account.own(self.work_dir, recursive=False)
        for writable in (self.data_dir, self.logs_dir, self.tmp_dir, config):
            self._account.own(writable)

    # ------------------------------------------------------------------ failures

    def log_tail(self, lines: int = 40) -> str:
        """The first errors and the last lines of the server log and the JVM console."""
        parts = []
        for path in (self.log_file, self.console_file):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            errors = [ln for ln in text.splitlines() if _ERROR_LINE.match(ln)][:5]
            if errors:
                parts.append(f"--- first errors in {path} ---\n" + "\n".join(errors))
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"--- last lines of {path} ---\n{tail}")
        return "\n".join(parts) or f"(no OpenSearch output in {self.work_dir})"

    def _abort(self) -> None:
        if self._proc is not None and self._proc.poll() is None:
            self._proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._proc.wait(timeout=10)
        self._forget()

    def _forget(self) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is not None:
            with _LIVE_LOCK:
                _LIVE.discard(proc)
            self._proc = None
        self._close_console()

    def _close_console(self) -> None:
        if self._console is not None:
            self._console.close()
            self._console = None


_ERROR_LINE = re.compile(r"^(\[[^]]+\]\[(ERROR|FATAL)|Exception|Error:|.*Exception: )")


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {"raw": raw.decode(errors="replace")}


def _make_readable(root: Path) -> None:
    root.chmod(0o755)
    for parent, dirs, files in os.walk(root):
        for name in dirs:
            os.chmod(os.path.join(parent, name), 0o755)
        for name in files:
            path = os.path.join(parent, name)
            mode = os.stat(path).st_mode
            if mode & 0o444 != 0o444:
                os.chmod(path, mode | 0o444)


def _copy_tree(source: Path, target: Path) -> None:
    """Copy the jars into the node's home: hard links where possible (same file system)."""

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(source, target, copy_function=link_or_copy, dirs_exist_ok=True)


__version__ = OPENSEARCH_VERSION
