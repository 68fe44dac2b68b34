"""The registry: each file's committed offset, kept in the state directory so that the next
run resumes where this one's deliveries ended.

Format, version 1: ``registry.json`` holds ``{"version": 1, "states": [...], "crc32c": N}``,
where N is the CRC-32C of the same object without its ``"crc32c"`` key, as orjson writes it.
A save writes ``registry.json.tmp`` and fsyncs it, makes the previous good registry the
``registry.json.bak`` (a hard link renamed over the old backup, so ``registry.json`` itself is
never missing), renames the new one into place and fsyncs the directory. A crash at any point
leaves a good registry: the new one or the old one. Loading checks the checksum and the
version and falls back to ``.bak``; when both are unusable, ``on_corrupt`` decides. On a file
system without hard links the previous registry is renamed to ``.bak`` instead, and a crash
between that rename and the next leaves only the ``.bak``, which loading then uses.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import fcntl
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import crc32c
import orjson

from kafkalog.diagnostics import log
from kafkalog.errors import KafkalogError
from kafkalog.ship.files import NOFOLLOW, FileId

VERSION = 1
REGISTRY_NAME = "registry.json"
BACKUP_SUFFIX = ".bak"
TEMP_SUFFIX = ".tmp"
CORRUPT_SUFFIX = ".corrupt"  # an unreadable registry is kept under this name for a post-mortem
LOCK_NAME = "registry.lock"
ON_CORRUPT = ("fail", "head", "tail")
_INT_FIELDS = ("dev", "ino", "head_len", "offset", "truncations")


class RegistryError(KafkalogError):
    """The registry can not be used: both copies are corrupt (``on_corrupt="fail"``), it was
    written by a newer kafkalog, it can not be read or written, or another agent holds the
    state directory. The message names the files."""


class _CorruptError(Exception):
    """A registry file that is not what a save writes; the message says how."""


@dataclasses.dataclass(slots=True)
class FileState:
    """What the registry keeps per file: its identity, where it was last seen, and its
    committed offset (every byte before it is shipped: acknowledged or spilled)."""

    dev: int
    ino: int
    head_hash: str
    head_len: int
    path: str  # last known path
    offset: int  # committed offset
    input: str  # name of the input (config) it belongs to
    truncations: int = 0

    @classmethod
    def of(cls, fid: FileId, path: str, offset: int, input: str, truncations: int = 0
           ) -> FileState:
        """The state of the file ``fid``."""
        return cls(fid.dev, fid.ino, fid.head_hash, fid.head_len, path, offset, input,
                   truncations)

    @property
    def fid(self) -> FileId:
        """The identity recorded (without head bytes: see :meth:`FileId.same_file`)."""
        return FileId(self.dev, self.ino, self.head_hash, self.head_len)


def _encode(state: FileState) -> dict[str, Any]:
    entry: dict[str, Any] = {"path": state.path}
    try:
        state.path.encode("utf-8")
    except UnicodeEncodeError:  # a file name that is not UTF-8 (surrogate-escaped by os)
        entry = {"path_hex": os.fsencode(state.path).hex()}
    entry.update(
        input=state.input, offset=state.offset, dev=state.dev, ino=state.ino,
        head_hash=state.head_hash, head_len=state.head_len, truncations=state.truncations,
    )
    return entry


def _decode(entry: object) -> FileState:
    if not isinstance(entry, dict):
        raise _CorruptError("a state is not an object")
    try:
        path = entry["path"] if "path" in entry else os.fsdecode(bytes.fromhex(entry["path_hex"]))
        values = {name: entry[name] for name in _INT_FIELDS}
        texts = (path, entry["input"], entry["head_hash"])
    except (KeyError, TypeError, ValueError) as exc:
        raise _CorruptError(f"a state lacks {exc}") from None
    if not all(isinstance(text, str) for text in texts) or not all(
        type(value) is int and value >= 0 for value in values.values()
    ):
        raise _CorruptError(f"a state has a field of the wrong type: {entry!r}")
    return FileState(path=path, input=entry["input"], head_hash=entry["head_hash"], **values)


def _serialize(states: Iterable[FileState]) -> bytes:
    """The bytes of a registry holding ``states``."""
    body = orjson.dumps({"version": VERSION, "states": [_encode(s) for s in states]})
    # The checksum covers the object as written without it: splice it in before the last "}".
    return body[:-1] + b',"crc32c":%d}' % crc32c.crc32c(body)


def _parse(data: bytes) -> list[FileState]:
    """The states of a registry file's bytes. Raises ``_CorruptError`` for anything a save does
    not write, and RegistryError for a version this kafkalog does not read."""
    try:
        doc = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _CorruptError("not valid JSON (truncated, or overwritten with zeros?)") from None
    if not isinstance(doc, dict) or "crc32c" not in doc:
        raise _CorruptError("no checksum")
    crc = doc.pop("crc32c")
    if crc != crc32c.crc32c(orjson.dumps(doc)):
        raise _CorruptError("checksum mismatch")
    version = doc.get("version")
    if version != VERSION:
        raise RegistryError(
            f"registry version {version!r} is not one this kafkalog reads ({VERSION}): "
            "written by a newer kafkalog?"
        )
    states = doc.get("states")
    if not isinstance(states, list):
        raise _CorruptError("no list of states")
    return [_decode(entry) for entry in states]


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Registry:
    """The registry file in ``state_dir`` (see the module's docstring for the format).

    ``on_corrupt`` says what :meth:`load` does when both the registry and its ``.bak`` are
    corrupt: ``"fail"`` raises RegistryError naming them; ``"head"`` and ``"tail"`` return no
    states and set ``start_from`` to the policy, so the agent starts every file it finds from
    its beginning or its end. ``recovered_from_backup`` counts the loads that used ``.bak``.
    Not thread-safe.
    """

    def __init__(self, state_dir: Path, *, on_corrupt: str = "fail") -> None:
        if on_corrupt not in ON_CORRUPT:
            raise ValueError(
                f"on_corrupt must be one of {', '.join(ON_CORRUPT)}, not {on_corrupt!r}"
            )
        self.state_dir = Path(state_dir)
        self.on_corrupt = on_corrupt
        self.path = self.state_dir / REGISTRY_NAME
        self.backup_path = self.state_dir / (REGISTRY_NAME + BACKUP_SUFFIX)
        self.temp_path = self.state_dir / (REGISTRY_NAME + TEMP_SUFFIX)
        self.recovered_from_backup = 0
        self.start_from: str | None = None  # "head" or "tail" once on_corrupt applied
        # Whether the file at self.path is a good registry (None: not looked at yet). Only a
        # good one may become the backup: a corrupt one must never replace a good .bak.
        self._current_good: bool | None = None
        self._last_saved: bytes | None = None
        self._lock_fd = -1

    def _read(self, path: Path) -> list[FileState]:
        """The states in ``path``. FileNotFoundError if there is none, _CorruptError if it is
        damaged, RegistryError if it can not be read at all."""
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | NOFOLLOW)
        except FileNotFoundError:
            raise
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _CorruptError("is a symlink, not a file the agent wrote") from None
            raise RegistryError(f"cannot read the registry {path}: {exc}") from exc
        try:
            with open(fd, "rb", closefd=False) as stream:
                data = stream.read()
        except OSError as exc:
            raise RegistryError(f"cannot read the registry {path}: {exc}") from exc
        finally:
            os.close(fd)
        try:
            return _parse(data)
        except RegistryError as exc:
            raise RegistryError(f"{path}: {exc}") from None

    def load(self) -> list[FileState]:
        """The states saved last: ``[]`` when there is no registry yet. Falls back to the
        ``.bak`` when the registry is missing or corrupt, then to ``on_corrupt``."""
        self.start_from = None
        problems: list[str] = []
        current_corrupt = False
        try:
            states = self._read(self.path)
        except FileNotFoundError:
            # The first run, or (without hard links) a crash within a save: see the .bak.
            problems.append(f"{self.path} is missing")
        except _CorruptError as exc:
            problems.append(f"{self.path}: {exc}")
            current_corrupt = True
        else:
            self._current_good = True
            return states
        try:
            states = self._read(self.backup_path)
        except FileNotFoundError:
            if not current_corrupt:
                self._current_good = False
                return []  # the first run
            problems.append(f"{self.backup_path} is missing")
        except _CorruptError as exc:
            problems.append(f"{self.backup_path}: {exc}")
        else:
            self.recovered_from_backup += 1
            log.warning(
                "registry: %s; resuming from the backup %s (lines after its offsets may be "
                "shipped again)", problems[0], self.backup_path,
            )
            self._set_aside(current_corrupt)
            return states
        if self.on_corrupt == "fail":
            raise RegistryError(
                f"registry unusable: {'; '.join(problems)} (on_corrupt='fail': repair or move "
                "them away, or choose on_corrupt 'head' or 'tail')"
            )
        log.warning(
            "registry unusable: %s; on_corrupt=%r: every file starts from its %s",
            "; ".join(problems), self.on_corrupt,
            "beginning" if self.on_corrupt == "head" else "end",
        )
        self._set_aside(current_corrupt)
        self.start_from = self.on_corrupt
        return []

    def _set_aside(self, current_corrupt: bool) -> None:
        """Move a corrupt registry aside, for a post-mortem and so it never becomes the .bak."""
        self._current_good = False
        if current_corrupt:
            with contextlib.suppress(OSError):
                os.replace(self.path, self.path.with_name(REGISTRY_NAME + CORRUPT_SUFFIX))

    def _current_is_good(self) -> bool:
        if self._current_good is None:  # saving without a load: look before backing it up
            try:
                self._read(self.path)
                self._current_good = True
            except FileNotFoundError:
                self._current_good = False
            except (_CorruptError, RegistryError):
                self._current_good = False
        return self._current_good

    def save(self, states: Iterable[FileState]) -> None:
        """Write ``states`` durably (see the module's docstring); nothing when they are what
        this registry saved last. RegistryError if it can not be written: the registry on
        disk is then the previous one, and no temporary file is left behind."""
        data = _serialize(states)
        if data == self._last_saved:
            return
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(
                self.temp_path,
                os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC | NOFOLLOW,
                0o600,
            )
            try:
                _write_all(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            if self._current_is_good():
                self._back_up_current()
            self._current_good = None  # until the new one is in place
            os.replace(self.temp_path, self.path)
            self._current_good = True
            _fsync_dir(self.state_dir)
        except OSError as exc:
            for leftover in (self.temp_path, self._backup_link_path):
                with contextlib.suppress(OSError):
                    leftover.unlink()
            raise RegistryError(f"cannot write the registry {self.path}: {exc}") from exc
        self._last_saved = data

    @property
    def _backup_link_path(self) -> Path:
        return self.backup_path.with_name(self.backup_path.name + TEMP_SUFFIX)

    def _back_up_current(self) -> None:
        """Make the current registry the ``.bak`` while it stays in place: readers (and a
        crash) never find the state directory without ``registry.json``."""
        link = self._backup_link_path
        with contextlib.suppress(FileNotFoundError):
            link.unlink()  # left by a crash within an earlier save
        try:
            os.link(self.path, link)
        except FileNotFoundError:
            return
        except OSError as exc:
            if exc.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.EMLINK, errno.EXDEV):
                raise
            # No hard links here (some FUSE and network file systems): rename instead; load()
            # falls back to the .bak if a crash comes before the new registry is in place.
            with contextlib.suppress(FileNotFoundError):
                os.replace(self.path, self.backup_path)
            return
        os.replace(link, self.backup_path)

    def lock(self) -> None:
        """Take the state directory for this agent (an flock on ``registry.lock``, released at
        :meth:`close` or exit). RegistryError if another agent holds it."""
        if self._lock_fd >= 0:
            return
        lock_path = self.state_dir / LOCK_NAME
        try:
            self.state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | NOFOLLOW, 0o600)
        except OSError as exc:
            raise RegistryError(f"cannot open the lock {lock_path}: {exc}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            raise RegistryError(
                f"state directory {self.state_dir} is in use by another agent "
                f"(it holds {lock_path}): {exc}"
            ) from exc
        self._lock_fd = fd

    def close(self) -> None:
        """Release the state directory's lock, if this registry holds it."""
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)
