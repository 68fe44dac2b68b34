"""The spill directory holds log records, which may hold personal data: it is private, and
nothing in it is trusted enough to be followed (symlinks) or opened blindly (FIFOs, devices)."""

from __future__ import annotations

import contextlib
import logging
import os
import stat
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkalog import KafkaHandler, diagnostics
from kafkalog.spill import LOCK_SUFFIX, SEGMENT_SUFFIX, SpillRecord, SpillStore
from kafkalog.testing import MemoryTransport

TOPIC = "app.logs"
DEAD_WRITER = "ab" * 8


def make_store(directory: Path, **options: Any) -> SpillStore:
    options.setdefault("segment_bytes", 4096)
    options.setdefault("fsync", "never")
    return SpillStore(directory, TOPIC, **options)


def drain(store: SpillStore) -> list[SpillRecord]:
    out: list[SpillRecord] = []
    for _ in range(1000):
        batch = store.read_batch(100, 1 << 20)
        if batch is None:
            return out
        out.extend(batch.records)
        store.ack(batch, len(batch.records))
    raise AssertionError("replay never ended")


def kill(store: SpillStore) -> None:
    """What the kernel does to a dying writer's descriptors (its flock is released)."""
    writer = store._writer
    for fd in {writer._fd, writer._lock_fd}:
        if fd is not None:
            os.close(fd)
    writer._fd = writer._lock_fd = None


def segment_name(writer: str = DEAD_WRITER, seq: int = 1) -> str:
    return f"{writer}-{seq:010d}{SEGMENT_SUFFIX}"


@pytest.fixture
def warnings_seen() -> Iterator[list[str]]:
    """Messages kafkalog's own diagnostics logger writes while the test runs."""
    seen: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record.getMessage())

    handler = Collect(logging.WARNING)
    diagnostics.log.addHandler(handler)
    try:
        yield seen
    finally:
        diagnostics.log.removeHandler(handler)


@contextlib.contextmanager
def umask(value: int) -> Iterator[None]:
    old = os.umask(value)
    try:
        yield
    finally:
        os.umask(old)


# -- modes ----------------------------------------------------------------------------------------


def test_new_directory_and_files_are_private_even_under_a_permissive_umask(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    directory = tmp_path / "spill"
    with umask(0):
        store = make_store(directory)
        assert store.append([(b"a", None)]) == 1
        assert store.append([(b"dead", None)], dead_letter=True) == 1
    assert stat.S_IMODE(directory.stat().st_mode) == 0o700
    modes = {p.suffix: stat.S_IMODE(p.lstat().st_mode) for p in directory.iterdir()}
    assert modes == {".seg": 0o600, ".dead": 0o600, ".lock": 0o600}
    assert warnings_seen == []
    store.close()


@pytest.mark.parametrize("mode", [0o750, 0o705, 0o755, 0o777])
def test_a_directory_open_to_others_is_warned_about_once_and_still_works(
    tmp_path: Path, warnings_seen: list[str], mode: int
) -> None:
    directory = tmp_path / "shared"
    directory.mkdir()
    directory.chmod(mode)
    store = make_store(directory)
    assert store.adopt_orphans() == 0
    for i in range(20):
        assert store.append([(b"%d" % i, None)]) == 1
    assert [r for r, _ in drain(store)] == [b"%d" % i for i in range(20)]

    perm = [w for w in warnings_seen if "accessible to group or others" in w]
    assert len(perm) == 1, warnings_seen
    assert f"mode {mode:o}" in perm[0] and str(directory) in perm[0]
    assert stat.S_IMODE(directory.stat().st_mode) == mode, "an existing mode is left alone"
    store.close()


def test_a_directory_of_another_user_is_warned_about(
    tmp_path: Path, warnings_seen: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "spill"
    directory.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: directory.stat().st_uid + 1)
    store = make_store(directory)
    assert store.append([(b"a", None)]) == 1
    assert any("belongs to another user" in w for w in warnings_seen), warnings_seen
    store.close()


def test_the_handler_warns_at_start_about_an_open_spill_directory(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    directory = tmp_path / "spill"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    handler = KafkaHandler(topic="t", spill_dir=str(directory), linger_ms=0,
                           transport_factory=MemoryTransport.factory(MemoryTransport()))
    logger = logging.getLogger("test.spill_security")
    logger.propagate = False
    logger.addHandler(handler)
    try:
        logger.warning("still delivered")
        assert handler.flush(30.0)
    finally:
        logger.removeHandler(handler)
        handler.close()
    assert handler.stats()["delivered"] == 1
    assert sum("accessible to group or others" in w for w in warnings_seen) == 1


# -- symlinks and other files that are not what their name says ------------------------------------


def test_symlinks_named_like_a_dead_writers_segments_are_counted_warned_and_never_opened(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    directory = tmp_path / "spill"
    directory.mkdir(mode=0o700)
    dead = make_store(directory)
    real = [(b"real-%d" % i, None) for i in range(3)]
    dead.append(real)
    dead._writer.seal()
    kill(dead)
    target = tmp_path / "elsewhere.seg"
    target.write_bytes(b"not yours")
    (directory / segment_name("cd" * 8)).symlink_to(target)
    (directory / segment_name("ef" * 8)).symlink_to(tmp_path / "dangling")

    store = make_store(directory)
    assert store.adopt_orphans() == 1, "only the real segment is adopted"
    assert drain(store) == real
    assert store.adopt_orphans() == 0, "looking again (as the worker does) adopts nothing"
    assert store.counters()["spill_unsafe_entries"] == 2, "each entry is counted once"
    unsafe = [w for w in warnings_seen if "not a regular file" in w]
    assert len(unsafe) == 1 and segment_name("cd" * 8) in unsafe[0], warnings_seen
    assert target.read_bytes() == b"not yours"
    assert not (tmp_path / "dangling").exists(), "nothing is created through a link"
    store.close()


def test_a_fifo_named_like_a_segment_does_not_hang_adoption(tmp_path: Path) -> None:
    directory = tmp_path / "spill"
    directory.mkdir(mode=0o700)
    os.mkfifo(directory / segment_name())
    store = make_store(directory)
    result: list[int] = []
    worker = threading.Thread(target=lambda: result.append(store.adopt_orphans()), daemon=True)
    worker.start()
    worker.join(10.0)
    if worker.is_alive():
        # Unblock the open() so the thread can finish, then fail.
        with contextlib.suppress(OSError):
            os.close(os.open(directory / segment_name(), os.O_WRONLY | os.O_NONBLOCK))
        pytest.fail("adopt_orphans opened a FIFO")
    assert result == [0]
    assert store.unsafe_entries == 1


def test_a_symlinked_lock_file_is_not_followed_and_its_segments_stay_put(
    tmp_path: Path,
) -> None:
    directory = tmp_path / "spill"
    directory.mkdir(mode=0o700)
    dead = make_store(directory)
    dead.append([(b"x", None)])
    dead._writer.seal()
    kill(dead)
    lock = directory / f"{dead.writer_id}{LOCK_SUFFIX}"
    lock.unlink()
    lock.symlink_to(tmp_path / "lock-target")

    store = make_store(directory)
    assert store.adopt_orphans() == 0
    assert not (tmp_path / "lock-target").exists(), "O_CREAT never went through the link"
    assert len(list(directory.glob("*" + SEGMENT_SUFFIX))) == 1
    store.close()


def test_an_adopted_segment_swapped_for_a_symlink_is_counted_not_read(
    tmp_path: Path, warnings_seen: list[str]
) -> None:
    directory = tmp_path / "spill"
    directory.mkdir(mode=0o700)
    dead = make_store(directory)
    dead.append([(b"x", None)])
    dead._writer.seal()
    kill(dead)
    store = make_store(directory)
    # Adopt without reading: the swap happens between listing and reading.
    store._segments._records_of = lambda segment: []  # type: ignore[method-assign]
    assert store.adopt_orphans() == 1
    del store._segments._records_of
    (path,) = directory.glob("*" + SEGMENT_SUFFIX)
    path.unlink()
    secret = tmp_path / "secret"
    secret.write_bytes(b"secret")
    path.symlink_to(secret)

    assert drain(store) == []
    assert store.unsafe_entries == 1
    assert any("not a regular file" in w for w in warnings_seen)
    assert secret.read_bytes() == b"secret"
    store.close()
