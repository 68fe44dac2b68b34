"""Dropping the registry entries of files gone for good (kafkalog.ship.pruning): only once no
file of the identity is found (globs, last path, its directory), for the whole grace period,
and only when the file was last seen shipped whole."""

from __future__ import annotations

import os
from pathlib import Path

from kafkalog.ship.files import FileId
from kafkalog.ship.pruning import RestingFiles
from kafkalog.ship.registry import FileState

GRACE = 300.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def entry(path: Path, offset: int | None = None) -> tuple[tuple[int, int], FileState]:
    st = path.stat()
    state = FileState.of(FileId(st.st_dev, st.st_ino, "h", 1), str(path),
                         st.st_size if offset is None else offset, "input")
    return (st.st_dev, st.st_ino), state


def resting_files(clock: Clock, *entries: tuple[tuple[int, int], FileState]) -> RestingFiles:
    resting = RestingFiles(grace_s=GRACE, check_every_s=10.0, clock=clock)
    resting.update(entries)
    return resting


def write(path: Path, data: bytes = b"line 1\nline 2\n") -> Path:
    path.write_bytes(data)
    return path


def deleted(clock: Clock, path: Path) -> tuple[tuple[int, int], FileState, RestingFiles]:
    """The entry of a file shipped whole and deleted before the first check, resting."""
    key, state = entry(write(path))
    os.unlink(path)
    return key, state, resting_files(clock, (key, state))


def test_a_deleted_file_shipped_whole_is_dropped_after_the_grace(tmp_path: Path) -> None:
    clock = Clock()
    key, state = entry(write(tmp_path / "app.log.3"))
    resting = resting_files(clock, (key, state))
    assert resting.prune(set()) == 0  # there: noted as shipped whole
    os.unlink(state.path)
    clock.now += 10
    assert resting.prune(set()) == 0  # missing from now on
    clock.now += GRACE - 10
    assert resting.prune(set()) == 0 and key in resting  # within the grace
    clock.now += 10
    assert resting.prune(set()) == 1
    assert resting == {} and resting.pruned == 1


def test_checks_are_spaced_by_check_every_s(tmp_path: Path) -> None:
    clock = Clock()
    _, _, resting = deleted(clock, tmp_path / "a.log")
    resting.prune(set())
    clock.now += GRACE
    assert resting.prune(set()) == 1
    _, _, resting = deleted(clock, tmp_path / "b.log")
    clock.now += 5  # before the next check is due: nothing is looked at
    assert resting.prune(set()) == 0


def test_a_file_renamed_out_of_the_globs_in_its_directory_keeps_its_entry(
    tmp_path: Path,
) -> None:
    clock = Clock()
    key, state = entry(write(tmp_path / "app.log"))
    os.rename(state.path, tmp_path / "app.log.1")  # rotation; the glob is *.log
    resting = resting_files(clock, (key, state))
    for _ in range(5):
        assert resting.prune(set()) == 0
        clock.now += GRACE
    assert key in resting
    os.unlink(tmp_path / "app.log.1")  # the rotated copy deleted at last
    resting.prune(set())
    clock.now += GRACE
    assert resting.prune(set()) == 1


def test_a_file_found_by_the_scan_elsewhere_keeps_its_entry(tmp_path: Path) -> None:
    clock = Clock()
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    key, state = entry(write(tmp_path / "old" / "app.log"))
    os.rename(state.path, tmp_path / "new" / "app.log")  # another directory the globs match
    resting = resting_files(clock, (key, state))
    for _ in range(3):
        assert resting.prune({key}) == 0
        clock.now += GRACE
    assert key in resting


def test_a_file_back_within_the_grace_starts_the_grace_again(tmp_path: Path) -> None:
    clock = Clock()
    log = write(tmp_path / "app.log")
    key, state = entry(log)
    resting = resting_files(clock, (key, state))
    aside = tmp_path.parent / f"{tmp_path.name}-aside"
    aside.mkdir()
    os.rename(log, aside / "app.log")  # moved away for a while
    resting.prune(set())
    clock.now += GRACE - 10
    resting.prune(set())
    os.rename(aside / "app.log", log)  # and back
    clock.now += 10
    assert resting.prune(set()) == 0
    os.rename(log, aside / "app.log")
    clock.now += 10
    assert resting.prune(set()) == 0  # missing again, a new grace
    clock.now += GRACE - 20
    assert resting.prune(set()) == 0
    clock.now += 20
    assert resting.prune(set()) == 1


def test_a_file_last_seen_with_unshipped_bytes_is_never_dropped(tmp_path: Path) -> None:
    clock = Clock()
    log = write(tmp_path / "app.log")
    key, state = entry(log, offset=7)  # the second line not yet committed
    resting = resting_files(clock, (key, state))
    resting.prune(set())
    log.unlink()
    for _ in range(5):
        clock.now += GRACE
        assert resting.prune(set()) == 0
    assert resting[key].offset == 7


def test_an_entry_of_a_file_gone_before_the_start_is_dropped_after_the_grace(
    tmp_path: Path,
) -> None:
    clock = Clock()
    _, _, resting = deleted(clock, tmp_path / "app.log")  # while the agent was not running
    assert resting.prune(set()) == 0
    clock.now += GRACE
    assert resting.prune(set()) == 1


def test_a_whole_directory_deleted_drops_its_entries(tmp_path: Path) -> None:
    clock = Clock()
    release = tmp_path / "releases" / "41"
    release.mkdir(parents=True)
    resting = resting_files(clock, *(entry(write(release / f"{n}.log")) for n in ("app", "worker")))
    resting.prune(set())
    for name in ("app.log", "worker.log"):
        (release / name).unlink()
    release.rmdir()
    clock.now += 10
    resting.prune(set())
    clock.now += GRACE
    assert resting.prune(set()) == 2 and resting == {}


def test_a_new_file_in_the_reused_inode_at_the_same_path_is_another_file(
    tmp_path: Path,
) -> None:
    # The identity is (device, inode): another inode at the old path does not keep the entry.
    clock = Clock()
    log = write(tmp_path / "app.log")
    key, state = entry(log)
    resting = resting_files(clock, (key, state))
    resting.prune(set())
    keep = tmp_path / "keep"
    os.rename(log, keep)  # keeps the inode busy, so the new file gets another one
    write(log, b"new\n")
    keep.unlink()
    assert log.stat().st_ino != key[1]
    clock.now += 10
    resting.prune(set())
    clock.now += GRACE
    assert resting.prune(set()) == 1


def test_entries_reopened_by_the_agent_are_forgotten_by_the_tracker(tmp_path: Path) -> None:
    clock = Clock()
    key, state, resting = deleted(clock, tmp_path / "app.log")
    resting.prune(set())
    del resting[key]  # the agent opened it again (it came back) and follows it
    clock.now += 10
    resting.prune(set())
    resting[key] = state  # rested again later: a new grace
    clock.now += GRACE - 10
    assert resting.prune(set()) == 0


def test_a_loaded_registry_is_keyed_by_device_and_inode(tmp_path: Path) -> None:
    resting = RestingFiles()
    key, state = entry(write(tmp_path / "app.log"))
    resting.add_all([state])
    assert resting == {key: state}
