"""A node's directory: the OpenSearch home, its configuration, data, logs and temp dir.

Everything lives under one work directory in the system temp dir, which the server's user can
reach (the repository and /root may not be readable by others)::

    <work>/home/{bin,plugins}          empty, but OpenSearch expects them
    <work>/home/{lib,modules}          the cached jars, hard-linked (or copied) and readable
    <work>/home/config/                opensearch.yml, jvm.options, log4j2.properties
    <work>/{data,logs,tmp}/            the server's user owns these
    <work>/console.log                 the JVM's stdout and stderr
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from .artifacts import ensure_artifacts
from .runas import Account

__all__ = ["NodeDirs", "jvm_options", "prepare"]

_YML = """\
# Written by tests/search/layout.py: a single throwaway node for kafkalog's tests.
cluster.name: kafkalog-test
node.name: kafkalog-{port}
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
# Written by tests/search/layout.py: the server logs to a file, never to the test's output.
status = error
appender.file.type = File
appender.file.name = file
appender.file.fileName = ${sys:opensearch.logs.base_path}${sys:file.separator}server.log
appender.file.layout.type = PatternLayout
appender.file.layout.pattern = [%d{ISO8601}][%-5p][%c{1.}] %m%n
rootLogger.level = info
rootLogger.appenderRef.file.ref = file
"""


@dataclass(frozen=True)
class NodeDirs:
    """The paths of one node's directory."""

    work: Path

    @property
    def home(self) -> Path:
        """``OPENSEARCH_HOME``."""
        return self.work / "home"

    @property
    def config(self) -> Path:
        """The configuration directory (``home/config``)."""
        return self.home / "config"

    @property
    def data(self) -> Path:
        """``path.data``: kept across restarts."""
        return self.work / "data"

    @property
    def logs(self) -> Path:
        """``path.logs``."""
        return self.work / "logs"

    @property
    def tmp(self) -> Path:
        """The JVM's ``java.io.tmpdir``."""
        return self.work / "tmp"

    @property
    def log_file(self) -> Path:
        """The server's log (log4j file appender)."""
        return self.logs / "server.log"

    @property
    def console_file(self) -> Path:
        """The JVM's own output: failures before logging is set up end up here."""
        return self.work / "console.log"


def jvm_options(dirs: NodeDirs, heap: str, java_major: int) -> list[str]:
    """The JVM's options, before the main class: what a distribution's jvm.options sets."""
    options = [
        f"-Xms{heap}",
        f"-Xmx{heap}",
        "-XX:+UseG1GC",
        "-XX:+ExitOnOutOfMemoryError",
        "-XX:-HeapDumpOnOutOfMemoryError",
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
        f"-Djava.io.tmpdir={dirs.tmp}",
        f"-Dopensearch.path.home={dirs.home}",
        f"-Dopensearch.path.conf={dirs.config}",
        "-Dopensearch.distribution.type=tar",
        "-Dopensearch.bundled_jdk=false",
    ]
    if java_major >= 18:
        # OpenSearch installs its own Security Manager; Java 18+ allows that only on request.
        options.insert(0, "-Djava.security.manager=allow")
    return options


def prepare(
    dirs: NodeDirs,
    *,
    port: int,
    transport_port: int,
    host: str,
    options: list[str],
    settings: dict[str, object],
    who: Account,
) -> None:
    """Lay out the home (the jars only the first time) and write the configuration."""
    first = not (dirs.home / "lib").is_dir()
    for directory in (dirs.home, dirs.config, dirs.data, dirs.logs, dirs.tmp):
        directory.mkdir(parents=True, exist_ok=True)
    if first:
        artifacts = ensure_artifacts()
        for part in ("lib", "modules"):
            _copy_tree(artifacts / part, dirs.home / part)
        for empty in ("bin", "plugins"):
            (dirs.home / empty).mkdir(exist_ok=True)
    yml = _YML.format(
        data=dirs.data, logs=dirs.logs, host=host, port=port, transport_port=transport_port
    )
    yml += "".join(f"{key}: {json.dumps(value)}\n" for key, value in settings.items())
    (dirs.config / "opensearch.yml").write_text(yml)
    (dirs.config / "jvm.options").write_text(
        "# Written by tests/search/layout.py; the harness passes these on java's command line.\n"
        + "\n".join(options) + "\n"
    )  # fmt: skip
    (dirs.config / "log4j2.properties").write_text(_LOG4J2)
    # The server's user reads the home (ours, perhaps made with a strict umask; the jars are
    # hard links to the cache and must stay ours) and owns what it writes.
    dirs.work.chmod(0o755)
    _make_readable(dirs.home)
    who.own(dirs.work, recursive=False)
    for writable in (dirs.config, dirs.data, dirs.logs, dirs.tmp):
        who.own(writable)


def _make_readable(root: Path) -> None:
    root.chmod(0o755)
    for parent, subdirs, files in os.walk(root):
        for name in subdirs:
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
