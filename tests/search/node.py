"""One throwaway OpenSearch 2.19.6 node on 127.0.0.1, as a plain ``java`` child process.

Ports and the directory (see ``layout``) are picked once, so :meth:`OpenSearchNode.restart`
brings the node back on the same port with the same data, as an outage test needs. As root,
the JVM runs as the unprivileged ``kafkalog-search`` user (OpenSearch refuses root; ``runas``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from broker.kraft import free_port

from .layout import NodeDirs, jvm_options, prepare
from .process import ChildProcess, setpriv_prefix
from .runas import Account, Java, account, find_java

__all__ = ["HOST", "OpenSearchError", "OpenSearchNode", "free_port", "is_ready"]

HOST = "127.0.0.1"
# New indices get no replica: one node could never assign it, and every index would stay
# yellow. This works only as a cluster setting (opensearch.yml's is ignored), so start() sets
# it; it persists in the data directory. An index created with replicas anyway (an explicit
# ``number_of_replicas``, or before this setting) stays yellow for good: see ``is_ready``.
_CLUSTER_SETTINGS = {"cluster.default_number_of_replicas": 0}
_ERROR_LINE = re.compile(r"^(\[[^]]+\]\[(ERROR|FATAL)|Exception|Error:|.*Exception: )")


def is_ready(health: dict[str, Any]) -> bool:
    """Whether a ``/_cluster/health`` answer means a single node is done starting.

    Green; or yellow with no shard initializing or relocating. Yellow means every primary is
    active; on one node the unassigned replicas it reports can never be assigned, so waiting for
    green after a restart would wait for ever. Shards still initializing (primaries recovering
    from disk, red or yellow) are not ready.
    """
    status = health.get("status")
    if status == "green":
        return True
    return (status == "yellow" and health.get("initializing_shards") == 0
            and health.get("relocating_shards") == 0)


class OpenSearchError(RuntimeError):
    """The test server could not be set up, started or stopped."""


class OpenSearchNode:
    """A single-node OpenSearch 2.19.6 cluster (``discovery.type: single-node``).

    Nothing is written or started until :meth:`start`.
    """

    def __init__(
        self,
        work_dir: str | os.PathLike[str] | None = None,
        *,
        port: int | None = None,
        heap: str = "512m",
        settings: dict[str, object] | None = None,
    ) -> None:
        """Describe a node: ``settings`` are added to opensearch.yml."""
        self._owns_work_dir = work_dir is None
        work = work_dir if work_dir is not None else tempfile.mkdtemp(prefix="kafkalog-opensearch-")
        self.dirs = NodeDirs(Path(work).resolve())
        self.port = port if port is not None else free_port()
        self.transport_port = free_port()
        self.heap = heap
        self.extra_settings = dict(settings or {})
        self._process: ChildProcess | None = None
        self._java: Java | None = None
        self._account: Account | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``, the REST endpoint."""
        return f"http://{HOST}:{self.port}"

    @property
    def work_dir(self) -> Path:
        """The node's directory (home, data, logs)."""
        return self.dirs.work

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.dirs.log_file

    @property
    def is_running(self) -> bool:
        """Whether the JVM is alive (not necessarily serving yet)."""
        return self._process is not None and self._process.alive

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        return self._process.pid if self._process is not None and self.is_running else None

    def rss_bytes(self) -> int | None:
        """The JVM's resident memory now, or ``None`` if it is not running."""
        return self._process.rss_bytes() if self._process is not None else None

    def cpu_seconds(self) -> float | None:
        """CPU time the JVM has used so far, or ``None`` if it is not running."""
        return self._process.cpu_seconds() if self._process is not None else None

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 120.0) -> OpenSearchNode:
        """Lay out the home (first time), launch the JVM, wait until it is ready (``is_ready``)."""
        self.launch()
        self.wait_ready(timeout=timeout)
        status, body = self.request(
            "PUT", "/_cluster/settings", {"persistent": _CLUSTER_SETTINGS}, timeout=timeout
        )
        if status != 200:
            self.stop(kill=True)
            raise OpenSearchError(f"could not set the cluster settings: {status} {body}")
        return self

    def launch(self) -> None:
        """Start the JVM without waiting (see :meth:`wait_ready`)."""
        if self.is_running:
            raise OpenSearchError(f"OpenSearch at {self.url} is already running")
        if self._java is None:
            self._java = find_java()
        if self._account is None:
            self._account = account()
        options = jvm_options(self.dirs, self.heap, self._java.major)
        prepare(
            self.dirs, port=self.port, transport_port=self.transport_port, host=HOST,
            options=options, settings=self.extra_settings, who=self._account,
        )  # fmt: skip
        cmd = [
            *setpriv_prefix(self._account), self._java.path, *options,
            "-cp", f"{self.dirs.home / 'lib'}/*", "org.opensearch.bootstrap.OpenSearch",
        ]  # fmt: skip
        # A clean environment: nothing of the test's (JAVA_TOOL_OPTIONS, say) leaks in.
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8",
               "HOME": str(self.dirs.tmp)}  # fmt: skip
        try:
            self._process = ChildProcess(
                cmd, cwd=self.dirs.home, env=env, console_file=self.dirs.console_file
            )
        except OSError as exc:
            raise OpenSearchError(f"could not launch OpenSearch: {exc}") from exc

    def wait_ready(self, timeout: float = 120.0) -> None:
        """Poll (bounded) until the cluster is green, or yellow with nothing initializing
        (:func:`is_ready`); on failure kill the JVM."""
        deadline = time.monotonic() + timeout
        last: object = None
        while self._process is not None and self._process.alive:
            try:
                status, body = self.request("GET", "/_cluster/health", timeout=2.0)
                if status == 200 and is_ready(body):
                    return
                last = body
            except OSError as exc:
                last = exc
            if time.monotonic() >= deadline:
                self.stop(kill=True)
                raise OpenSearchError(
                    f"OpenSearch at {self.url} not ready within {timeout:.0f}s "
                    f"(last: {last!r})\n{self.log_tail()}"
                )
            time.sleep(0.2)
        code = self._process.returncode if self._process is not None else None
        self.stop()
        raise OpenSearchError(
            f"OpenSearch at {self.url} exited with {code} while starting\n{self.log_tail()}"
        )

    def stop(self, kill: bool = False, timeout: float = 60.0) -> None:
        """SIGTERM (a clean shutdown) or SIGKILL if ``kill``; bounded, then SIGKILL."""
        if self._process is not None:
            self._process.end(kill, timeout, f"OpenSearch at {self.url}")
            self._process = None

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
            shutil.rmtree(self.dirs.work, ignore_errors=True)

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
        """One REST call (JSON in and out; a ``str`` body is sent as NDJSON, for _bulk)."""
        data: bytes | None = None
        headers = {"Accept": "application/json"}
        if isinstance(body, str):
            data = body.encode()
            headers["Content-Type"] = "application/x-ndjson"
        elif body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(self.url + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return resp.status, _json(resp.read())
        except urllib.error.HTTPError as exc:
            return exc.code, _json(exc.read())

    def log_tail(self, lines: int = 40) -> str:
        """The first errors and the last lines of the server log and of the JVM's output."""
        parts = []
        for path in (self.dirs.log_file, self.dirs.console_file):
            try:
                text = path.read_text(errors="replace")
            except OSError:
                continue
            errors = [line for line in text.splitlines() if _ERROR_LINE.match(line)][:5]
            if errors:
                parts.append(f"--- first errors in {path} ---\n" + "\n".join(errors))
            tail = "\n".join(text.splitlines()[-lines:])
            if tail:
                parts.append(f"--- last lines of {path} ---\n{tail}")
        return "\n".join(parts) or f"(no OpenSearch output in {self.dirs.work})"


def _json(raw: bytes) -> Any:
    try:
        return json.loads(raw) if raw else {}
    except ValueError:
        return {"raw": raw.decode(errors="replace")}
