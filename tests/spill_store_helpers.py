"""Helpers of the spill store's specification (tests/unit/spill): stores, records, what is on
disk, replaying everything, and a writer's death as the kernel sees it."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkalog.spill import (
    SEGMENT_SUFFIX,
    SpillRecord,
    SpillStore,
    encode_frame,
    encode_header,
    encode_payload,
    read_segment,
)

TOPIC = "app.logs"
OTHER_TOPIC = "other.logs"
WRITER = bytes.fromhex("0123456789abcdef")
HEADER_LEN = len(encode_header(WRITER, TOPIC, 0))
MIN_SEGMENT = 4096  # the smallest spill_segment_bytes the config accepts
LOOP_BOUND = 100_000  # no loop in these tests runs longer than this


def make_store(directory: Path, topic: str = TOPIC, **options: Any) -> SpillStore:
    options.setdefault("segment_bytes", MIN_SEGMENT)
    options.setdefault("fsync", "never")
    return SpillStore(directory, topic, **options)


def rec(i: int, size: int = 0, key: bytes | None = None) -> SpillRecord:
    """A record recognisable by its number ``i``, padded to about ``size`` bytes."""
    return (b"%06d|" % i + b"v" * size, key)


def frame_bytes(records: list[SpillRecord]) -> int:
    return sum(len(encode_frame(encode_payload(v, k))) for v, k in records)


def seg_files(directory: Path) -> list[Path]:
    """The segment files of ``directory``; for a single writer, name order is write order."""
    return sorted(directory.glob("*" + SEGMENT_SUFFIX))


def segments_on_disk(directory: Path) -> list[tuple[Path, list[SpillRecord]]]:
    """Every segment with its records, ordered by header creation time, then name."""
    found: list[tuple[int, str, Path, list[SpillRecord]]] = []
    for path in seg_files(directory):
        header, records, scan = read_segment(path)
        assert header is not None, f"{path.name} has no valid header"
        assert (scan.corrupt, scan.torn_tail_bytes) == (0, 0), f"{path.name}: {scan}"
        found.append((header.created_ms, path.name, path, records))
    found.sort(key=lambda s: (s[0], s[1]))
    return [(path, records) for _, _, path, records in found]


def drain(store: SpillStore, max_records: int = 7, max_bytes: int = 4096) -> list[SpillRecord]:
    """Replay everything, acknowledging each batch in full."""
    out: list[SpillRecord] = []
    for _ in range(LOOP_BOUND):
        batch = store.read_batch(max_records, max_bytes)
        if batch is None:
            return out
        assert batch.records, "read_batch returned an empty batch"
        out.extend(batch.records)
        store.ack(batch, len(batch.records))
    raise AssertionError("replay never ended")


def simulate_death(store: SpillStore) -> None:
    """What the kernel does when the writer process dies: every descriptor it held is closed.

    That releases its own flock and the locks of the dead writers it had adopted; nothing on
    disk changes. The store object must not be used afterwards.
    """
    writer = store._writer
    fds = {writer._fd, writer._lock_fd, *(seg.adopted_lock for seg in store._segments)}
    for fd in fds:
        if fd is not None:
            os.close(fd)
    writer._fd = writer._lock_fd = None
    for seg in store._segments:
        seg.adopted_lock = None



def write_segment(path: Path, records: list[SpillRecord], topic: str = TOPIC) -> bytes:
    data = encode_header(WRITER, topic, 1) + b"".join(
        encode_frame(encode_payload(v, k)) for v, k in records
    )
    path.write_bytes(data)
    return data


def _skip_loudly(reason: str) -> None:
    """Skip the test, and say why on stderr too: a skipped disk test must never go unseen."""
    print(f"SKIPPED (no small filesystem): {reason}", file=sys.stderr)
    pytest.skip(reason)


@contextlib.contextmanager
def small_filesystem(mountpoint: Path, size_bytes: int) -> Iterator[Path]:
    """A real filesystem of ``size_bytes`` (a tmpfs) mounted at ``mountpoint`` for the block.

    Skips the test, saying why, where none can be mounted: not Linux, not root, or a container
    without the right to mount.
    """
    mount, umount = shutil.which("mount"), shutil.which("umount")
    if not sys.platform.startswith("linux") or mount is None or umount is None:
        _skip_loudly("needs Linux with mount(8) to mount a tmpfs")
    if os.geteuid() != 0:
        _skip_loudly("needs root to mount a tmpfs")
    mountpoint.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        [str(mount), "-t", "tmpfs", "-o", f"size={size_bytes},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True, text=True, timeout=30, check=False,
    )
    if done.returncode != 0:
        _skip_loudly(f"cannot mount a tmpfs: {done.stderr.strip() or done.returncode}")
    try:
        yield mountpoint
    finally:
        subprocess.run([str(umount), "-l", str(mountpoint)], capture_output=True, timeout=30,
                       check=False)


def free_bytes(path: Path) -> int:
    """Bytes free on the filesystem of ``path``."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def deleted_but_open(directory: Path) -> list[str]:
    """Files once under ``directory`` that are deleted but still held open by this process:
    their blocks are not free until they are closed."""
    prefix = str(directory.resolve()) + os.sep
    found = []
    for name in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{name}")
            if target.startswith(prefix) and target.endswith(" (deleted)"):
                found.append(target)
    return found
