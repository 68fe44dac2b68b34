"""One log file being read: its identity, and its complete lines with their byte offsets.

A file is identified by its device, its inode and a hash of its first bytes (at most
:data:`HEAD_LEN`), so that a reused inode is told from the file that had it before. A
:class:`TailedFile` reads its own descriptor with ``os.pread`` in large chunks and splits them
with ``bytes.split``: nothing is done byte by byte in Python, and the partial last line stays
buffered until its newline arrives, never read twice. The descriptor stays open through a
rename or a delete, so a rotated file is read to its end.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import os
import stat
from itertools import accumulate, islice, repeat
from operator import add
from pathlib import Path

HEAD_LEN = 1024  # bytes of a file's head that its identity hashes, at most
# One read. Large enough that syscalls cost nothing; small enough that a chunk and the lines
# split from it stay in the CPU's cache: 256 KiB splits at about 1 GB/s here, 1 MiB at 550 MB/s.
CHUNK_BYTES = 256 * 1024
# A call to read_lines reads at most this much looking for a complete line, so that a huge
# line without a newline costs several calls, not one endless one.
READ_BUDGET_BYTES = 4 * 1024 * 1024
NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
# O_NONBLOCK: a FIFO planted under a log file's name must not hang the open.
_OPEN_FLAGS = os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NONBLOCK", 0)


def _hash(head: bytes) -> str:
    return hashlib.sha256(head).hexdigest()


@dataclasses.dataclass(frozen=True, slots=True)
class FileId:
    """A file's identity: device, inode, and the SHA-256 (hex) of its first ``head_len`` bytes.

    ``head`` holds those bytes when the identity was just taken from the file (it is empty
    for one read back from the registry); it is left out of comparisons.
    """

    dev: int
    ino: int
    head_hash: str
    head_len: int
    head: bytes = dataclasses.field(default=b"", compare=False, repr=False)

    def same_file(self, other: FileId) -> bool:
        """Whether ``other`` is this file, perhaps grown: the same device and inode, and heads
        that agree over the shorter one's length.

        Heads of different lengths can be compared only if the longer identity holds its head
        bytes. When it does not, the answer is False: a file whose head is now shorter than
        the recorded one was truncated or replaced, and is read again from its start.
        """
        if self.dev != other.dev or self.ino != other.ino:
            return False
        if self.head_len == other.head_len:
            return self.head_hash == other.head_hash
        short, long = (self, other) if self.head_len < other.head_len else (other, self)
        if len(long.head) != long.head_len:
            return False
        return _hash(long.head[: short.head_len]) == short.head_hash


def open_regular(path: str | os.PathLike[str], *, follow_symlinks: bool = False) -> int:
    """Open ``path`` for reading; its descriptor. A symlink is refused (``ELOOP``) unless
    ``follow_symlinks``; anything but a regular file is refused (``EINVAL``)."""
    fd = os.open(path, _OPEN_FLAGS if follow_symlinks else _OPEN_FLAGS | NOFOLLOW)
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise OSError(errno.EINVAL, "not a regular file", os.fspath(path))
    except BaseException:
        os.close(fd)
        raise
    return fd


def _id_of_fd(fd: int) -> FileId:
    st = os.fstat(fd)
    head = os.pread(fd, HEAD_LEN, 0)
    return FileId(st.st_dev, st.st_ino, _hash(head), len(head), head)


def file_id(fd_or_path: int | str | os.PathLike[str], *, follow_symlinks: bool = False) -> FileId:
    """The identity of an open descriptor, or of the file at a path (opened as
    :func:`open_regular` does, so a symlink raises ``OSError`` unless ``follow_symlinks``)."""
    if isinstance(fd_or_path, int):
        return _id_of_fd(fd_or_path)
    fd = open_regular(fd_or_path, follow_symlinks=follow_symlinks)
    try:
        return _id_of_fd(fd)
    finally:
        os.close(fd)


class TailedFile:
    """One open file being read (kept open through rename and delete until drained).

    ``read_offset`` is the offset of the next byte to read; ``line_offset`` the end of the
    last complete line returned (the bytes between them are a partial line, buffered, or
    the rest of a cut line being skipped). ``fid`` grows with the file's head up to
    :data:`HEAD_LEN` bytes and is taken anew after a truncation. Not thread-safe.
    """

    __slots__ = (
        "_chunk",
        "_cut",
        "_cut_start",
        "_fd",
        "_partial",
        "_seen",
        "fid",
        "input",
        "line_offset",
        "long_lines",
        "path",
        "read_offset",
        "truncations",
    )

    def __init__(
        self,
        path: Path,
        fd: int,
        fid: FileId,
        offset: int,
        input: str,
        *,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> None:
        if offset < 0:
            raise ValueError(f"offset must be at least 0, not {offset}")
        if chunk_bytes < 1:
            raise ValueError(f"chunk_bytes must be at least 1, not {chunk_bytes}")
        self.path = path
        self.fid = fid
        self.input = input
        self.read_offset = offset
        self.line_offset = offset
        self.truncations = 0
        self.long_lines = 0  # lines cut at max_bytes
        self._fd = fd
        self._chunk = chunk_bytes
        self._partial = b""  # the partial last line, starting at line_offset
        self._cut: bytes | None = None  # a cut line whose rest is being skipped
        self._cut_start = 0
        self._seen: tuple[int, int, int] | None = None  # (size, mtime, ctime) last checked

    @classmethod
    def open(
        cls,
        path: Path,
        *,
        offset: int = 0,
        input: str = "",
        follow_symlinks: bool = False,
        chunk_bytes: int = CHUNK_BYTES,
    ) -> TailedFile:
        """Open ``path`` (no symlink unless ``follow_symlinks``) and take the identity of the
        descriptor opened, so identity and content can not belong to two different files."""
        fd = open_regular(path, follow_symlinks=follow_symlinks)
        try:
            fid = _id_of_fd(fd)
            return cls(path, fd, fid, offset, input, chunk_bytes=chunk_bytes)
        except BaseException:
            os.close(fd)
            raise

    def __repr__(self) -> str:
        return f"<TailedFile {self.path} ino={self.fid.ino} read_offset={self.read_offset}>"

    def fileno(self) -> int:
        """The descriptor read (-1 once closed)."""
        return self._fd

    def read_lines(self, max_bytes: int) -> list[tuple[bytes, int, int]]:
        """The complete lines read so far, each as ``(line, start, end)``: the line without
        its ``b"\\n"`` (a ``b"\\r"`` before it is kept), the offset of its first byte and the
        offset just past its newline. Bytes pass through as they are (invalid UTF-8, NUL).

        A partial last line is not returned until its newline arrives. A line longer than
        ``max_bytes`` is returned cut to ``max_bytes``, once its newline arrives, with ``end``
        past the skipped rest: a line was cut if and only if ``end - start > len(line) + 1``
        (``long_lines`` counts them). Returns ``[]`` when there is nothing new, including
        while the file is shorter than ``read_offset`` (see :meth:`check_truncated`).
        """
        lines, offsets = self.read_chunk(max_bytes)
        return list(zip(lines, offsets, islice(offsets, 1, None), strict=False))

    def read_chunk(self, max_bytes: int) -> tuple[list[bytes], list[int]]:
        """:meth:`read_lines` as two lists, for callers that work on whole chunks: the lines,
        and the offsets of their boundaries (one more than the lines: line ``i`` starts at
        ``offsets[i]`` and ends just before ``offsets[i + 1]``). Two empty lists when there
        is nothing new."""
        if max_bytes < 1:
            raise ValueError(f"max_bytes must be at least 1, not {max_bytes}")
        fd = self._fd
        lines: list[bytes] = []
        offsets: list[int] = []
        budget = max(self._chunk, READ_BUDGET_BYTES)
        while budget > 0:
            # fstat first: reading exactly what is there spares a 1 MiB buffer per idle poll.
            available = os.fstat(fd).st_size - self.read_offset
            if available <= 0:
                break
            data = os.pread(fd, min(available, self._chunk), self.read_offset)
            if not data:
                break
            budget -= len(data)
            self._split(data, max_bytes, lines, offsets)
            if lines:
                break
        if self.fid.head_len < HEAD_LEN and self.read_offset > self.fid.head_len:
            self._grow_id()
        return lines, offsets

    def _split(self, data: bytes, max_bytes: int, out: list[bytes], offsets: list[int]) -> None:
        """Add the lines that ``data`` (read at ``read_offset``) completes to ``out``, and
        their boundaries to ``offsets`` (both empty before)."""
        start = self.read_offset  # the file offset of data[0]
        self.read_offset = start + len(data)
        if self._cut is not None:
            newline = data.find(b"\n")
            if newline < 0:
                return  # still inside the cut line
            end = start + newline + 1
            out.append(self._cut)
            offsets.append(self._cut_start)
            self.long_lines += 1
            self._cut = None
            self.line_offset = start = end
            data = data[newline + 1 :]
        lines = data.split(b"\n")
        if self._partial:  # (never while a cut line is skipped)
            # Join the buffered partial line to its rest, not to the whole chunk: no big copy.
            start -= len(self._partial)
            lines[0] = self._partial + lines[0]
        partial = lines.pop()  # what follows the last newline: b"" if data ends with one
        if lines:
            # Offsets of every line boundary, computed in C: start, then each line's end.
            offsets.extend(accumulate(map(add, map(len, lines), repeat(1)), initial=start))
            if max(map(len, lines)) > max_bytes:
                lines = self._cut_long(lines, max_bytes)
            out.extend(lines)
            self.line_offset = start = offsets[-1]
        elif out:
            offsets.append(start)  # the cut line's end
        if len(partial) > max_bytes:
            # Keep only what will be shipped; the rest is skipped up to the newline.
            self._cut = partial[:max_bytes]
            self._cut_start = start
            partial = b""
        self._partial = partial

    def _cut_long(self, lines: list[bytes], max_bytes: int) -> list[bytes]:
        self.long_lines += sum(len(line) > max_bytes for line in lines)
        return [line[:max_bytes] for line in lines]

    def _grow_id(self) -> None:
        """Take a longer head into the identity while the file grows to HEAD_LEN bytes, so a
        small file's identity still tells a reused inode apart. A head that no longer agrees
        is left for check_truncated to find."""
        grown = _id_of_fd(self._fd)
        if grown.same_file(self.fid):
            self.fid = grown

    def check_truncated(self) -> bool:
        """Whether the file was truncated (or rewritten from its start) since the last call:
        it is shorter than ``read_offset``, or its head no longer hashes to ``fid``. If so,
        reading restarts at offset 0, the buffered partial line is dropped, ``fid`` is taken
        anew and ``truncations`` counts it. Cheap when the file did not change."""
        st = os.fstat(self._fd)
        seen = (st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if seen == self._seen:
            return False
        self._seen = seen
        if st.st_size >= self.read_offset and self._head_unchanged():
            return False
        self.truncations += 1
        self.read_offset = self.line_offset = 0
        self._partial = b""
        self._cut = None
        self.fid = _id_of_fd(self._fd)
        return True

    def _head_unchanged(self) -> bool:
        length = self.fid.head_len
        return length == 0 or _hash(os.pread(self._fd, length, 0)) == self.fid.head_hash

    def at_eof(self) -> bool:
        """Whether every byte of the file, as long as it is now, was read."""
        return os.fstat(self._fd).st_size <= self.read_offset

    def deleted(self) -> bool:
        """Whether the file has no name left (``st_nlink == 0``): read it to its end, then close."""
        return os.fstat(self._fd).st_nlink == 0

    @property
    def lag_bytes(self) -> int:
        """Bytes of the file not read yet."""
        return max(0, os.fstat(self._fd).st_size - self.read_offset)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._fd < 0

    def close(self) -> None:
        """Close the descriptor (idempotent): a deleted file's space is freed now."""
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)
