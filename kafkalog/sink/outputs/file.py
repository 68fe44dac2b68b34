"""The file output: newline-delimited JSON files in a directory, rotated and compressed.

One document a line, the record's own bytes. A bulk is appended and fsynced before it is
acknowledged, so an offset is committed only for lines that are on disk: a crash loses
nothing committed (lines written after the last commit are written again after a restart, so
an archive may hold a record twice; its ``id`` tells the copies apart).

The file being written is ``kafkalog-<UTC time>-<n>.ndjson.open``. It is rotated when it
reaches ``max_bytes`` or gets older than ``max_age_ms`` (checked at each write and once a
second),
and becomes ``...ndjson.gz`` (or ``...ndjson`` uncompressed). An ``.open`` file left by a
crash is finished at the next start. One sink process owns a directory (a lock file).
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import os
import shutil
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO

from kafkalog.diagnostics import log
from kafkalog.sink.documents import Document
from kafkalog.sink.outputs import ItemResult, StoreSetupError, StoreUnavailableError

__all__ = ["FileOutput"]

OPEN_SUFFIX = ".ndjson.open"
LOCK_NAME = ".kafkalog-sink.lock"


class FileOutput:
    """Writes documents to rotated newline-delimited JSON files in ``directory``."""

    name = "file"

    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        max_age_ms: int,
        compression: str = "gzip",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self._max_bytes = max_bytes
        self._max_age_s = max_age_ms / 1000
        self._compress = compression == "gzip"
        self._clock = clock
        self._lock = threading.Lock()
        self._lock_file: BinaryIO | None = None
        self._file: BinaryIO | None = None
        self._path: Path | None = None
        self._opened_at = 0.0
        self._size = 0
        self._seq = 0
        self.rotations = 0

    def start(self) -> None:
        """Create the directory, take its lock, and finish files a crash left open."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            lock = open(self.directory / LOCK_NAME, "ab")  # noqa: SIM115 - held until close
        except OSError as exc:
            raise StoreSetupError(f"cannot use {self.directory}: {exc.strerror}") from None
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lock.close()
            raise StoreSetupError(f"{self.directory} is in use by another kafkalog sink "
                                  "(one process a directory)") from None
        self._lock_file = lock
        for left in sorted(self.directory.glob(f"*{OPEN_SUFFIX}")):
            self._finish(left)

    def write(self, docs: Sequence[Document]) -> list[ItemResult]:
        """Append ``docs`` (one line each) and fsync; rotate when due."""
        data = b"".join([part for doc in docs for part in (doc.source, b"\n")])
        with self._lock:
            if self._file is not None and self._clock() - self._opened_at >= self._max_age_s:
                self._rotate()
            try:
                f = self._file or self._open()
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            except OSError as exc:
                self._undo_partial()
                raise StoreUnavailableError(f"cannot write to {self.directory}: "
                                       f"{exc.strerror or type(exc).__name__}") from None
            self._size += len(data)
            if self._size >= self._max_bytes:
                self._rotate()
        return [None] * len(docs)

    def tick(self) -> None:
        """Rotate the open file if it got older than ``max_age_ms``, even with no traffic."""
        with self._lock:
            if self._file is not None and self._clock() - self._opened_at >= self._max_age_s:
                try:
                    self._rotate()
                except OSError as exc:  # tried again at the next tick or write
                    log.warning("kafkalog sink: cannot rotate in %s: %s", self.directory,
                                exc.strerror or type(exc).__name__)

    def close(self) -> None:
        """Finish the open file (rotate it) and release the directory."""
        with self._lock:
            if self._file is not None:
                with contextlib.suppress(OSError):
                    self._rotate()
            if self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None

    def _open(self) -> BinaryIO:
        now = self._clock()
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(now))
        while True:
            self._seq += 1
            path = self.directory / f"kafkalog-{stamp}-{self._seq}{OPEN_SUFFIX}"
            if not path.exists() and not _finished_name(path).exists() and not Path(
                f"{_finished_name(path)}.gz").exists():
                break
        self._file = open(path, "xb")  # noqa: SIM115 - kept open across writes
        self._path = path
        self._opened_at = now
        self._size = 0
        _fsync_dir(self.directory)
        return self._file

    def _undo_partial(self) -> None:
        """After a failed write, cut the file back to its last whole line, so that the retry
        does not leave half a line behind."""
        if self._file is None:
            return
        with contextlib.suppress(OSError):
            self._file.truncate(self._size)
            self._file.seek(self._size)

    def _rotate(self) -> None:
        if self._file is None or self._path is None:
            return
        self._file.close()
        self._file = None
        self._finish(self._path)
        self._path = None
        self.rotations += 1

    def _finish(self, path: Path) -> None:
        """Turn a written ``.open`` file into its final name, compressed if configured."""
        done = _finished_name(path)
        if path.stat().st_size == 0:
            path.unlink()
        elif self._compress:
            target = Path(f"{done}.gz")
            partial = Path(f"{target}.tmp")
            with open(path, "rb") as src, open(partial, "wb") as raw:
                with gzip.GzipFile(filename=done.name, mode="wb", fileobj=raw,
                                   compresslevel=6, mtime=0) as gz:
                    shutil.copyfileobj(src, gz, 1024 * 1024)
                raw.flush()
                os.fsync(raw.fileno())
            os.replace(partial, target)
            _fsync_dir(self.directory)
            path.unlink()
        else:
            os.replace(path, done)
        _fsync_dir(self.directory)


def _finished_name(path: Path) -> Path:
    return path.with_name(path.name[: -len(".open")])


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
