"""A broker's log: the log4j2 configuration that sends it to a file, and reading it back
(its first errors and its last lines) for failure messages."""

from __future__ import annotations

import os
import re
from pathlib import Path

__all__ = ["LOG4J2", "error_summary", "log_tail", "tail"]

LOG4J2 = """\
# Written by tests/broker/node_config.py: broker logs go to a file, never to the test's stdout.
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

# The start of an entry written with LOG4J2's pattern: "[date time] LEVEL ".
_LOG_ENTRY = re.compile(r"^\[\d{4}-\d\d-\d\d [^]]+\] (\w+) ")


def log_tail(log_file: Path, console_file: Path, work_dir: Path, lines: int = 60) -> str:
    """The broker's first ERROR entries plus the last ``lines`` lines of its log and
    of the JVM console output (for failure messages)."""
    parts = []
    errors = error_summary(log_file)
    if errors:
        # The tail of a failed start is mostly shutdown chatter; the cause is here.
        parts.append(f"--- first errors in {log_file} ---\n{errors}")
    for path in (log_file, console_file):
        last = tail(path, lines)
        if last:
            parts.append(f"--- last lines of {path} ---\n{last}")
    return "\n".join(parts) or f"(no broker output in {work_dir})"


def error_summary(path: Path, max_errors: int = 5, context: int = 4) -> str:
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


def tail(path: Path, lines: int) -> str:
    """The last ``lines`` lines of ``path`` (read from its last 64 KiB); "" if unreadable."""
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
