"""Spill directories for tests that look at one from outside (``spill-info``, ``replay``).

The segments are written by a real :class:`~kafkalog.spill.store.SpillStore` in a scratch
directory and copied: the copies have no lock file, as if their writer had died. The store is
then drained and closed, so it holds no descriptor afterwards.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path

import orjson

from kafkalog.spill import SpillStore


def log_value(n: int) -> bytes:
    """A JSON log record whose ``@timestamp`` second is ``n``."""
    return orjson.dumps({"@timestamp": f"2026-03-01T12:00:{n:02d}.000000Z", "message": f"m{n}"})


def dead_writer_segments(
    directory: Path,
    topic: str,
    values: Sequence[bytes],
    *,
    dead_letters: Sequence[bytes] = (),
) -> list[Path]:
    """Segments of a dead writer holding ``values`` (and a dead-letter segment holding
    ``dead_letters``) in ``directory``; their paths, in name order."""
    directory.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        store = SpillStore(Path(scratch), topic, fsync="never")
        try:
            if values:
                store.append([(v, None) for v in values])
            if dead_letters:
                store.append([(v, None) for v in dead_letters], dead_letter=True)
            copied = [
                Path(shutil.copy(path, directory / path.name))
                for path in sorted(Path(scratch).iterdir())
                if path.suffix in (".seg", ".dead")
            ]
            while (batch := store.read_batch(10_000, 1 << 30)) is not None:
                store.ack(batch, len(batch.records))
        finally:
            store.close()
    return copied
