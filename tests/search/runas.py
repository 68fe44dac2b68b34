"""The unprivileged account and the Java that run the test OpenSearch server.

OpenSearch refuses to start as root, and the test suite runs as root in CI. So when we are
root, the server runs as a system user of its own (created here on first use, with no login
shell and no home), started through ``setpriv``; its files are then made that user's. When we
are not root, the server simply runs as us.

OpenSearch 2.19 installs a Java Security Manager, which Java 24 removed; it runs on Java 11 to
23 (17 and 21 are what it is built for). The newest Java on a machine is often too new, so
:func:`find_java` looks for a suitable one rather than taking ``java`` from the PATH.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["JAVA_ENV", "Account", "JavaNotFoundError", "account", "find_java"]

#: A JDK home (or its bin/java) to use instead of searching.
JAVA_ENV = "KAFKALOG_OPENSEARCH_JAVA_HOME"
USER_NAME = "kafkalog-search"
# Java versions that still have a Security Manager and that OpenSearch 2.19 supports.
_MIN_JAVA, _MAX_JAVA = 11, 23
_PREFERRED = (17, 21)
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


class JavaNotFoundError(RuntimeError):
    """No Java that can run OpenSearch 2.19 (11 to 23, with a Security Manager) was found."""


@dataclass(frozen=True)
class Java:
    """A ``java`` binary and its feature version."""

    path: str
    major: int


def _java_major(java: str) -> int | None:
    try:
        proc = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(proc.stderr + proc.stdout)
    if match is None:
        return None
    major = int(match.group(1))
    # Java 8 and older call themselves "1.8".
    return int(match.group(2) or 0) if major == 1 else major


def _candidates() -> list[str]:
    found: list[str] = []
    override = os.environ.get(JAVA_ENV)
    if override:
        path = Path(override)
        return [str(path if path.name == "java" else path / "bin" / "java")]
    java_home = os.environ.get("JAVA_HOME")
    if java_home:
        found.append(str(Path(java_home) / "bin" / "java"))
    for jvm in sorted(Path("/usr/lib/jvm").glob("*")):
        if (jvm / "bin" / "java").is_file() and not jvm.is_symlink():
            found.append(str(jvm / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        found.append(on_path)
    return found


def find_java() -> Java:
    """A Java for OpenSearch 2.19: 17 or 21 if there is one, else any of 11 to 23.

    ``$KAFKALOG_OPENSEARCH_JAVA_HOME`` chooses one; otherwise ``$JAVA_HOME``,
    ``/usr/lib/jvm/*`` and ``java`` on the PATH are tried.
    """
    seen: dict[str, int | None] = {}
    for candidate in _candidates():
        real = os.path.realpath(candidate)
        if real not in seen and os.access(real, os.X_OK):
            seen[real] = _java_major(real)
    usable = {p: v for p, v in seen.items() if v is not None and _MIN_JAVA <= v <= _MAX_JAVA}
    if not usable:
        found = ", ".join(f"{p} ({v})" for p, v in seen.items()) or "none"
        raise JavaNotFoundError(
            f"OpenSearch 2.19 needs Java {_MIN_JAVA} to {_MAX_JAVA} (17 or 21 preferred; "
            f"it needs the Security Manager that Java 24 removed). Java found: {found}. "
            f"Install openjdk-17-jre-headless or set ${JAVA_ENV}."
        )
    best = min(usable, key=lambda p: (usable[p] not in _PREFERRED, abs(usable[p] - 17)))
    return Java(best, usable[best])


@dataclass(frozen=True)
class Account:
    """Who the server runs as; ``setpriv_args`` switch to it (empty when it is us)."""

    uid: int
    gid: int
    name: str
    setpriv_args: tuple[str, ...]

    @property
    def switches(self) -> bool:
        """Whether the server runs as another user than this process."""
        return self.uid != os.geteuid()

    def own(self, path: Path, recursive: bool = True) -> None:
        """Give ``path`` (and, if ``recursive``, everything under it) to the server's user."""
        if not self.switches:
            return
        os.chown(path, self.uid, self.gid)
        if not recursive:
            return
        for parent, dirs, files in os.walk(path):
            for name in dirs + files:
                os.chown(os.path.join(parent, name), self.uid, self.gid, follow_symlinks=False)


def account() -> Account:
    """The account to run the server as: ourselves, or (as root) the system user."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        return Account(me.pw_uid, me.pw_gid, me.pw_name, ())
    entry = _system_user()
    switch = (f"--reuid={entry.pw_uid}", f"--regid={entry.pw_gid}", "--clear-groups")
    return Account(entry.pw_uid, entry.pw_gid, entry.pw_name, switch)


def _system_user() -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(USER_NAME)
    except KeyError:
        pass
    useradd = shutil.which("useradd") or "/usr/sbin/useradd"
    proc = subprocess.run(
        [useradd, "--system", "--user-group", "--no-create-home", "--home-dir", "/nonexistent",
         "--shell", "/usr/sbin/nologin", "--comment", "kafkalog test OpenSearch", USER_NAME],
        capture_output=True, text=True, timeout=60, check=False, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        # Another process may have created it at the same moment: that is fine too.
        return pwd.getpwnam(USER_NAME)
    except KeyError:
        raise RuntimeError(
            f"could not create the system user {USER_NAME!r} to run OpenSearch as "
            f"(it refuses root): {proc.stderr.strip()}"
        ) from None
