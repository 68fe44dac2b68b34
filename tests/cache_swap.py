"""A download cached under ``.cache/`` that is never used half-done: it is built in a temporary
sibling directory, marked complete, and swapped into place, under a file lock so that
concurrent callers download once.

Used by ``broker/jars.py`` (the Kafka jars) and ``search/artifacts.py`` (OpenSearch), both
filled by Maven (:func:`run_maven`). The marker holds a digest of what was asked for (a pom, a
module list): a cache made for another digest is downloaded again and replaced.
"""

from __future__ import annotations

import contextlib
import fcntl
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = ["MARKER", "file_lock", "fill_cache", "is_complete", "run_maven"]

#: The file, inside a finished cache directory, that holds its digest.
MARKER = ".complete"


def is_complete(target: Path, digest: str, proof: str) -> bool:
    """Whether ``target`` is a finished download of ``digest``: its marker says so and
    ``proof`` (a path relative to it, the one file a good download must have) is there."""
    try:
        return (target / MARKER).read_text().strip() == digest and (target / proof).is_file()
    except OSError:
        return False


@contextlib.contextmanager
def file_lock(path: Path, *, timeout: float, what: str,
              error: type[Exception] = TimeoutError) -> Iterator[None]:
    """An exclusive fcntl lock on ``path``, taken with a bounded poll; ``error`` (naming
    ``what`` the holder is doing) if another process holds it for ``timeout`` seconds."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a+") as fh:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise error(
                        f"another process held {path} ({what}) for {timeout:.0f}s"
                    ) from None
                time.sleep(0.25)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)


def fill_cache(
    target: Path,
    digest: str,
    proof: str,
    download: Callable[[Path], None],
    *,
    timeout: float,
    what: str,
    error: type[Exception] = TimeoutError,
) -> Path:
    """``target``, downloaded into place by ``download(staging_dir)`` unless it is complete
    already (see :func:`is_complete`).

    Under the lock ``.<name>.lock`` beside it: the leftovers of interrupted runs are removed,
    ``download`` fills a fresh ``.<name>-download-*`` sibling, the marker is written, a stale
    ``target`` is moved aside (``rename`` cannot replace a non-empty directory) and removed,
    and the staging directory is renamed to ``target``. If ``download`` raises, nothing is
    left behind and ``target`` is as it was.
    """
    if is_complete(target, digest, proof):
        return target
    parent, name = target.parent, target.name
    with file_lock(parent / f".{name}.lock", timeout=timeout, what=what, error=error):
        if is_complete(target, digest, proof):  # somebody else finished while we waited
            return target
        # Holding the lock, nobody else is downloading: what interrupted runs left can go.
        for prefix in ("download", "stale"):
            for leftover in parent.glob(f".{name}-{prefix}-*"):
                shutil.rmtree(leftover, ignore_errors=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{name}-download-", dir=parent))
        try:
            download(staging)
            (staging / MARKER).write_text(digest + "\n")
            if target.exists():
                stale = Path(tempfile.mkdtemp(prefix=f".{name}-stale-", dir=parent))
                target.rename(stale / name)
                shutil.rmtree(stale, ignore_errors=True)
            staging.rename(target)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
    return target


def run_maven(cmd: list[str], *, timeout: float, error: type[Exception]) -> None:
    """Run a Maven command line (with no input); ``error`` with the tail of its output if it
    fails, or if it runs longer than ``timeout`` seconds."""
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as exc:
        raise error(f"Maven did not finish within {timeout:.0f}s: {cmd}") from exc
    if proc.returncode != 0:
        output = (proc.stdout + proc.stderr).strip()[-4000:]
        raise error(f"Maven failed (exit {proc.returncode}): {' '.join(cmd)}\n{output}")
