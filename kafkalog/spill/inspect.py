"""Look into a spill directory from outside the writing processes, without changing anything.

What ``kafkalog spill-info`` and ``kafkalog replay`` need to know about a directory: which
writers still run, which topics its segments hold, and a summary of each segment (records,
bytes, time range, corruption). Reading only: adopting and replaying is the store's job.
"""

from __future__ import annotations

import dataclasses
import fcntl
import os
from pathlib import Path

import orjson

from kafkalog.spill.format import LOCK_SUFFIX, header_of, iter_segments, read_segment


@dataclasses.dataclass(frozen=True)
class SegmentSummary:
    """What one segment file holds, as ``kafkalog spill-info`` shows it.

    A segment that could not be read at all (``readable`` False) has only its name, kind,
    writer and ``error``; one whose header is bad or missing is readable, has no ``topic``,
    counts as one corrupt region and has ``error`` set too.
    """

    file: str
    kind: str  # "spill" or "dead" (a dead-letter segment)
    writer: str
    readable: bool = True
    error: str | None = None
    size_bytes: int = 0
    topic: str | None = None
    records: int = 0
    corrupt_regions: int = 0
    torn_tail_bytes: int = 0
    oldest: str | None = None  # the first record's @timestamp, if it has one
    newest: str | None = None  # the last record's @timestamp, if it has one
    writer_alive: bool = False


def writer_alive(directory: Path, writer: str) -> bool:
    """True if the lock of ``writer`` in ``directory`` is held by a live process.

    Only tries a shared lock and lets go at once: a dead writer's lock stays free for the
    process that adopts its segments.
    """
    path = directory / f"{writer}{LOCK_SUFFIX}"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError:
        return True
    finally:
        os.close(fd)
    return False


def topics_in(directory: Path) -> list[str]:
    """The topics of the spill segments in ``directory`` (not dead-letter ones), sorted.

    A segment that cannot be read or has a bad header is left out.
    """
    topics: set[str] = set()
    for path, kind in iter_segments(directory):
        header = header_of(path) if kind == "spill" else None  # never follows a symlink
        if header is not None:
            topics.add(header.topic)
    return sorted(topics)


def _timestamp(value: bytes) -> str | None:
    try:
        decoded = orjson.loads(value)
    except orjson.JSONDecodeError:
        return None
    stamp = decoded.get("@timestamp") if isinstance(decoded, dict) else None
    return stamp if isinstance(stamp, str) else None


def segment_summaries(directory: Path) -> list[SegmentSummary]:
    """One summary per segment file in ``directory``, in file name order."""
    summaries: list[SegmentSummary] = []
    for path, kind in iter_segments(directory):
        writer = path.name.split("-", 1)[0]
        try:
            header, records, scan = read_segment(path)
            size_bytes = path.stat().st_size
        except OSError as exc:
            summaries.append(
                SegmentSummary(file=path.name, kind=kind, writer=writer, readable=False,
                               error=str(exc))
            )
            continue
        summaries.append(
            SegmentSummary(
                file=path.name,
                kind=kind,
                writer=writer,
                error=None if header else "bad or missing segment header",
                size_bytes=size_bytes,
                topic=header.topic if header else None,
                records=len(records),
                corrupt_regions=scan.corrupt if header else 1,
                torn_tail_bytes=scan.torn_tail_bytes,
                oldest=_timestamp(records[0][0]) if records else None,
                newest=_timestamp(records[-1][0]) if records else None,
                writer_alive=writer_alive(directory, writer),
            )
        )
    return summaries
