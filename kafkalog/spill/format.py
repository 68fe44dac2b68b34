"""The spill's on-disk format: segment headers and CRC-framed records (pure functions).

A segment starts with a header (magic, version, writer id, creation time, topic, header CRC)
and holds frames ``length | crc32c(payload) | payload | length``; a frame's payload is a
record's key length (-1 for none), key and value. See ``docs/spill-format.md``. Property-tested.
"""

from __future__ import annotations

import dataclasses
import os
import re
import struct
from collections.abc import Iterable, Iterator
from pathlib import Path

import crc32c

MAGIC = b"KLSP"
VERSION = 1
# magic, version, flags, topic length, writer id (8 bytes), created (ms since epoch)
_HEADER = struct.Struct(">4sBBH8sQ")
_CRC = struct.Struct(">I")
_FRAME_HEAD = struct.Struct(">II")  # payload length, crc32c(payload)
_LEN = struct.Struct(">I")
_KEY_LEN = struct.Struct(">i")  # -1: no key
FRAME_OVERHEAD = _FRAME_HEAD.size + _LEN.size
# A frame longer than this is taken for corruption (records are capped by max_request_size).
MAX_FRAME_BYTES = 256 * 1024 * 1024

SEGMENT_SUFFIX = ".seg"
DEAD_LETTER_SUFFIX = ".dead"
LOCK_SUFFIX = ".lock"
NAME_RE = re.compile(r"^(?P<writer>[0-9a-f]{16})-(?P<seq>\d{10})(?P<suffix>\.seg|\.dead)$")


def segment_name(writer: str, seq: int, suffix: str = SEGMENT_SUFFIX) -> str:
    """The file name of ``writer``'s segment number ``seq`` (``NAME_RE`` parses it back)."""
    return f"{writer}-{seq:010d}{suffix}"

SpillRecord = tuple[bytes, "bytes | None"]


def encode_header(writer_id: bytes, topic: str, created_ms: int) -> bytes:
    """The header of a new segment."""
    topic_bytes = topic.encode("utf-8")
    head = _HEADER.pack(MAGIC, VERSION, 0, len(topic_bytes), writer_id, created_ms) + topic_bytes
    return head + _CRC.pack(crc32c.crc32c(head))


@dataclasses.dataclass(frozen=True)
class SegmentHeader:
    """What a segment's header says."""

    version: int
    writer_id: str
    created_ms: int
    topic: str
    size: int  # bytes, where the first frame starts


def decode_header(data: bytes) -> SegmentHeader | None:
    """Parse a segment header; None if it is missing, torn or corrupt."""
    if len(data) < _HEADER.size + _CRC.size:
        return None
    magic, version, _flags, topic_len, writer, created = _HEADER.unpack_from(data)
    end = _HEADER.size + topic_len
    if magic != MAGIC or version != VERSION or len(data) < end + _CRC.size:
        return None
    (crc,) = _CRC.unpack_from(data, end)
    if crc != crc32c.crc32c(data[:end]):
        return None
    topic = data[_HEADER.size : end].decode("utf-8", "replace")
    return SegmentHeader(version, writer.hex(), created, topic, end + _CRC.size)


def encode_payload(value: bytes, key: bytes | None) -> bytes:
    """A record as a frame payload: key length (-1 for none), key, value."""
    if key is None:
        return _KEY_LEN.pack(-1) + value
    return _KEY_LEN.pack(len(key)) + key + value


def decode_payload(payload: bytes) -> SpillRecord:
    """The (value, key) of a frame payload."""
    (key_len,) = _KEY_LEN.unpack_from(payload)
    if key_len < 0:
        return payload[_KEY_LEN.size :], None
    start = _KEY_LEN.size
    return payload[start + key_len :], payload[start : start + key_len]


def encode_frame(payload: bytes) -> bytes:
    """``length | crc32c | payload | length``."""
    length = _LEN.pack(len(payload))
    return length + _CRC.pack(crc32c.crc32c(payload)) + payload + length


def encode_frames(records: Iterable[SpillRecord]) -> bytes:
    """``records`` as consecutive frames."""
    return b"".join(encode_frame(encode_payload(v, k)) for v, k in records)


def _frame_at(data: bytes, pos: int) -> int:
    """End offset of a valid frame starting at ``pos``, or -1."""
    if pos + FRAME_OVERHEAD > len(data):
        return -1
    length: int
    crc: int
    length, crc = _FRAME_HEAD.unpack_from(data, pos)
    end = pos + _FRAME_HEAD.size + length + _LEN.size
    # Every payload holds at least the key length: a shorter "frame" (twelve zero bytes make
    # one with a matching CRC) is noise, and decoding it would fail.
    if length < _KEY_LEN.size or length > MAX_FRAME_BYTES or end > len(data):
        return -1
    trailer: int = _LEN.unpack_from(data, end - _LEN.size)[0]
    if trailer != length:
        return -1
    payload_start = pos + _FRAME_HEAD.size
    if crc32c.crc32c(data[payload_start : payload_start + length]) != crc:
        return -1
    return end


@dataclasses.dataclass
class ScanResult:
    """Frames found in a segment body: ``(start, end)`` offsets, corrupt regions, torn tail."""

    frames: list[tuple[int, int]]
    corrupt: int = 0
    torn_tail_bytes: int = 0


def scan_frames(data: bytes, start: int) -> ScanResult:
    """Find every valid frame in ``data[start:]``.

    A frame that does not check out starts a corrupt region: the scan moves on byte by byte
    until a valid frame begins again, and counts the region once. Bytes after the last valid
    frame that do not form one are a torn tail (a write cut short by a crash), not corruption.
    """
    result = ScanResult(frames=[])
    pos = start
    size = len(data)
    while pos < size:
        end = _frame_at(data, pos)
        if end > 0:
            result.frames.append((pos, end))
            pos = end
            continue
        resync = pos + 1
        while resync < size and _frame_at(data, resync) < 0:
            resync += 1
        if resync >= size:
            result.torn_tail_bytes = size - pos
            break
        result.corrupt += 1
        pos = resync
    return result


def read_segment(path: Path) -> tuple[SegmentHeader | None, list[SpillRecord], ScanResult]:
    """Read a whole segment file (it never follows a symlink)."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    header = decode_header(data)
    if header is None:
        return None, [], ScanResult(frames=[], corrupt=1 if data else 0)
    scan = scan_frames(data, header.size)
    records = [decode_payload(data[s + _FRAME_HEAD.size : e - _LEN.size]) for s, e in scan.frames]
    return header, records, scan


NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)


def header_of(path: Path) -> SegmentHeader | None:
    """The header of the segment at ``path`` (never following a symlink); None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        return decode_header(f.read(_HEADER.size + 65536 + _CRC.size))


def created_of(path: Path) -> int:
    """When the segment at ``path`` was created (ms since the epoch; 0 if unreadable)."""
    header = header_of(path)
    return header.created_ms if header is not None else 0


def iter_segments(directory: Path) -> Iterator[tuple[Path, str]]:
    """Every segment file in ``directory`` as (path, kind), kind ``spill`` or ``dead``."""
    for name in sorted(os.listdir(directory)):
        match = NAME_RE.match(name)
        if match:
            yield directory / name, "dead" if match["suffix"] == DEAD_LETTER_SUFFIX else "spill"
