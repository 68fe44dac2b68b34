"""What the agent's change watcher makes of inotify events, and how the loop's cadence uses
them: events ask for scans and reads, an overflow for a scan and a read of everything, and
without inotify the agent scans and polls as before."""

from __future__ import annotations

import errno
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from kafkalog import diagnostics
from kafkalog.ship import watch
from kafkalog.ship.cadence import (
    ACTIVE_POLL_S,
    IDLE_POLL_S,
    INOTIFY_SCAN_FACTOR,
    SWEEP_S,
    Cadence,
)
from kafkalog.ship.discovery import Discovery
from kafkalog.ship.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_DELETE_SELF,
    IN_IGNORED,
    IN_ISDIR,
    IN_MODIFY,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    InotifyEvent,
)
from kafkalog.ship.multiline import Joiner
from kafkalog.ship.tracking import Follow
from kafkalog.ship.watch import DIR_MASK, FILE_MASK, ChangeWatcher


class FakeInotify:
    """Hands out watch numbers and the events a test queues."""

    def __init__(self) -> None:
        self.watches: dict[int, tuple[str, int]] = {}
        self.removed: list[int] = []
        self.queued: list[InotifyEvent] = []
        self.refuse: dict[str, int] = {}  # path -> the errno add_watch fails with
        self._next = 0
        self.read_end, self.write_end = os.pipe()

    def add_watch(self, path: str, mask: int) -> int:
        if path in self.refuse:
            raise OSError(self.refuse[path], os.strerror(self.refuse[path]), path)
        self._next += 1
        self.watches[self._next] = (path, mask)
        return self._next

    def rm_watch(self, wd: int) -> None:
        self.removed.append(wd)
        self.watches.pop(wd, None)

    def wd_of(self, path: str) -> int:
        return next(wd for wd, (p, _) in self.watches.items() if p == path)

    def queue(self, wd: int, mask: int, name: str = "") -> None:
        self.queued.append(InotifyEvent(wd, mask, 0, name))

    def read(self) -> list[InotifyEvent]:
        events, self.queued = self.queued, []
        return events

    def fileno(self) -> int:
        return self.read_end

    def close(self) -> None:
        os.close(self.read_end)
        os.close(self.write_end)


@pytest.fixture
def fake() -> Iterator[FakeInotify]:
    inotify = FakeInotify()
    yield inotify
    inotify.close()


def watcher_of(fake: FakeInotify) -> ChangeWatcher:
    return ChangeWatcher(fake)  # type: ignore[arg-type]


def logs_dir(tmp_path: Path) -> tuple[Path, Discovery]:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"x\n")
    discovery = Discovery([str(logs / "*.log")], ["*.old.log"])
    discovery.scan()
    return logs, discovery


def watching_logs(fake: FakeInotify, tmp_path: Path) -> tuple[ChangeWatcher, int, Discovery]:
    """A watcher of the logs directory: it, the directory's watch, and its discovery."""
    logs, discovery = logs_dir(tmp_path)
    watcher = watcher_of(fake)
    watcher.watch_dirs([discovery])
    return watcher, fake.wd_of(str(logs)), discovery


def test_the_directories_of_the_globs_are_watched_and_unwatched(
        fake: FakeInotify, tmp_path: Path) -> None:
    logs, discovery = logs_dir(tmp_path)
    watcher = watcher_of(fake)
    watcher.watch_dirs([discovery])
    assert watcher.watched_dirs == {str(logs)}
    wd = fake.wd_of(str(logs))
    assert fake.watches[wd][1] == DIR_MASK
    watcher.watch_dirs([])
    assert watcher.watched_dirs == set()
    assert fake.removed == [wd]


def test_a_matching_name_created_in_a_watched_directory_asks_for_a_scan(
        fake: FakeInotify, tmp_path: Path) -> None:
    watcher, wd, _ = watching_logs(fake, tmp_path)
    fake.queue(wd, IN_CREATE, "b.txt")  # no glob matches it
    fake.queue(wd, IN_CREATE, "c.old.log")  # excluded
    assert not watcher.changes().rescan
    for mask, name in ((IN_CREATE, "b.log"), (IN_MOVED_TO, "b.log"), (IN_DELETE, "a.log"),
                       (IN_CREATE | IN_ISDIR, "sub")):
        fake.queue(wd, mask, name)
        changes = watcher.changes()
        assert changes.rescan, (mask, name)
        assert not changes.overflow
    assert not watcher.changes().rescan, "each event asks once"
    assert watcher.counters["events"] == 6


def test_an_open_file_is_watched_for_modifications_until_it_is_closed(
        fake: FakeInotify, tmp_path: Path) -> None:
    watcher = watcher_of(fake)
    (tmp_path / "a.log").write_bytes(b"")
    fd = os.open(tmp_path / "a.log", os.O_RDONLY)
    try:
        watcher.watch_file((1, 2), fd, str(tmp_path / "a.log"))
    finally:
        os.close(fd)
    (wd, (path, mask)), = fake.watches.items()
    assert (path, mask) == (f"/proc/self/fd/{fd}", FILE_MASK), "the descriptor, not the name"
    assert watcher.watches((1, 2))
    fake.queue(wd, IN_MODIFY)
    assert watcher.changes().modified == {(1, 2)}
    watcher.unwatch_file((1, 2))
    assert not watcher.watches((1, 2))
    assert fake.removed == [wd]
    fake.queue(wd, IN_MODIFY)  # queued before the watch went
    assert watcher.changes().modified == set()


def test_a_file_the_kernel_stopped_watching_is_no_longer_watched(fake: FakeInotify) -> None:
    watcher = watcher_of(fake)
    watcher.watch_file((1, 2), 99_999, "/nowhere/a.log")
    wd = fake.wd_of("/nowhere/a.log")  # no such descriptor: watched by its name
    fake.queue(wd, IN_IGNORED)
    watcher.changes()
    assert not watcher.watches((1, 2)), "it must be polled now"


def test_a_watch_refused_leaves_the_file_to_polling(fake: FakeInotify) -> None:
    watcher = watcher_of(fake)
    fake.refuse["/nowhere/a.log"] = errno.ENOSPC
    watcher.watch_file((1, 2), 99_999, "/nowhere/a.log")
    assert not watcher.watches((1, 2))
    assert watcher.counters["watch_failures"] == 1


def test_an_overflow_asks_for_a_full_rescan_and_a_read_of_everything(fake: FakeInotify) -> None:
    watcher = watcher_of(fake)
    fake.queue(-1, IN_Q_OVERFLOW)
    changes = watcher.changes()
    assert changes.overflow and changes.rescan
    assert watcher.counters["overflows"] == 1
    assert not watcher.changes().overflow


def test_a_watched_directory_deleted_asks_for_a_scan_and_is_watched_again_when_back(
        fake: FakeInotify, tmp_path: Path) -> None:
    watcher, wd, discovery = watching_logs(fake, tmp_path)
    fake.queue(wd, IN_DELETE_SELF)
    assert watcher.changes().rescan
    assert watcher.watched_dirs == set()
    watcher.watch_dirs([discovery])  # the scan it asked for
    (logs,) = watcher.watched_dirs
    assert fake.wd_of(logs) != wd


def test_the_fallback_without_inotify_is_said_once_and_only_waits(
        monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inotify() -> Any:
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(watch, "open_inotify", no_inotify)
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    diagnostics.log.addHandler(handler)
    try:
        watcher = ChangeWatcher.start()
    finally:
        diagnostics.log.removeHandler(handler)
    assert not watcher.active
    assert [(r.levelno, "no inotify" in r.getMessage()) for r in records] == [
        (logging.INFO, True)]
    watcher.watch_file((1, 2), 0, "/x")
    assert not watcher.watches((1, 2))
    assert watcher.changes() == watch.Changes()
    stop = threading.Event()
    stop.set()
    watcher.wait(stop, 30.0)  # returns at once: it waits on the stop event


def test_inotify_can_be_turned_off() -> None:
    assert not ChangeWatcher.start(enabled=False).active


# -- the loop's cadence ------------------------------------------------------------------


class FakeTail:
    def __init__(self) -> None:
        self.eof = True

    def at_eof(self) -> bool:
        return self.eof


def follow(last_data: float = -10.0) -> Follow:
    return Follow(tail=FakeTail(), input_name="t",  # type: ignore[arg-type]
                  joiner=Joiner(None, max_bytes=1000), source="s", committed=0,
                  last_data=last_data)


def test_without_inotify_every_file_is_read_each_idle_poll_and_busy_ones_in_between() -> None:
    cadence = Cadence(ChangeWatcher(None), scan_interval_s=1.0, commit_interval_s=0.2)
    follows = {(1, 1): follow(), (1, 2): follow()}
    turn = cadence.turn(0.0)
    assert turn.scan and turn.every and turn.sweep and turn.save
    assert sorted(cadence.due(turn, follows)) == [(1, 1), (1, 2)]
    follows[(1, 2)].last_data = 0.0
    cadence.read((1, 1), follows[(1, 1)], False, 0.0)
    cadence.read((1, 2), follows[(1, 2)], True, 0.0)
    turn = cadence.turn(0.05)
    assert not (turn.scan or turn.every or turn.sweep or turn.save)
    assert cadence.due(turn, follows) == [(1, 2)], "only the file with new lines of late"
    cadence.read((1, 2), follows[(1, 2)], False, 0.05)
    assert cadence.hot == {(1, 2)}, "polled for ACTIVE_S after its last lines"
    assert cadence.turn(IDLE_POLL_S).sweep
    assert cadence.turn(1.0).scan


def test_with_inotify_only_changed_and_hot_files_are_read_between_sweeps(
        fake: FakeInotify) -> None:
    watcher = watcher_of(fake)
    cadence = Cadence(watcher, scan_interval_s=1.0, commit_interval_s=0.2)
    for n in (1, 2, 3):
        watcher.watch_file((1, n), 99_999, f"/nowhere/{n}.log")
    follows = {(1, n): follow() for n in (1, 2, 3, 4)}  # (1, 4) could not be watched
    assert len(cadence.due(cadence.turn(0.0), follows)) == 4, "the first turn reads all"
    turn = cadence.turn(0.01)
    assert not turn.every and cadence.due(turn, follows) == []
    fake.queue(fake.wd_of("/nowhere/2.log"), IN_MODIFY)
    assert cadence.due(cadence.turn(0.02), follows) == [(1, 2)]
    follows[(1, 2)].tail.eof = False  # type: ignore[attr-defined]
    cadence.read((1, 2), follows[(1, 2)], True, 0.02)
    assert cadence.due(cadence.turn(0.03), follows) == [(1, 2)], "read again: more to read"
    follows[(1, 2)].tail.eof = True  # type: ignore[attr-defined]
    cadence.read((1, 2), follows[(1, 2)], True, 0.03)
    assert cadence.due(cadence.turn(0.04), follows) == [], "read to its end: wait for inotify"
    turn = cadence.turn(IDLE_POLL_S)
    assert turn.every and not turn.sweep
    assert cadence.due(turn, follows) == [(1, 4)], "the unwatched file is polled"
    turn = cadence.turn(SWEEP_S)
    assert turn.sweep and not turn.scan
    assert len(cadence.due(turn, follows)) == 4, "a sweep reads every file"
    assert cadence.turn(INOTIFY_SCAN_FACTOR * 1.0).scan
    fake.queue(-1, IN_Q_OVERFLOW)
    turn = cadence.turn(INOTIFY_SCAN_FACTOR * 1.0 + 0.01)
    assert turn.scan and turn.sweep, "an overflow: scan and read everything"


def test_a_hot_file_is_polled_quickly_and_a_quiet_agent_waits_until_the_next_look() -> None:
    waits: list[float] = []

    class Recording(ChangeWatcher):
        def wait(self, stop: threading.Event, timeout_s: float) -> None:
            waits.append(timeout_s)

    cadence = Cadence(Recording(None), scan_interval_s=1.0, commit_interval_s=0.2)
    cadence.turn(0.0)
    cadence.wait(threading.Event(), 0.03)
    cadence.hot.add((1, 1))
    cadence.wait(threading.Event(), 0.03)
    assert waits == [pytest.approx(IDLE_POLL_S - 0.03), ACTIVE_POLL_S]


# -- which directories a discovery looks in ----------------------------------------------


def test_directories_cover_the_literal_directory_and_those_wildcards_reach(
        tmp_path: Path) -> None:
    for sub in ("a", "a/deep", "b"):
        (tmp_path / sub).mkdir()
    (tmp_path / "a" / "deep" / "x.log").write_bytes(b"")
    (tmp_path / "link").symlink_to(tmp_path / "b")
    discovery = Discovery([str(tmp_path / "**" / "*.log")])
    discovery.scan()
    assert discovery.directories() == {str(tmp_path), str(tmp_path / "a"),
                                       str(tmp_path / "a" / "deep"), str(tmp_path / "b")}, \
        "not through the symlink"
    flat = Discovery([str(tmp_path / "a" / "*.log")])
    assert flat.directories() == {str(tmp_path / "a")}


def test_may_match_is_true_for_every_name_a_glob_could_match() -> None:
    discovery = Discovery(["/var/log/app/*.log", "/var/log/**/x-*"], ["*.gz"])
    assert discovery.may_match("b.log")
    assert discovery.may_match("x-1.gz.log")
    assert not discovery.may_match("x-1.gz"), "excluded"
    assert not discovery.may_match("b.txt")
    assert Discovery(["/srv/**"]).may_match("anything")


def test_a_reload_scans_at_once_and_takes_the_new_intervals(fake: FakeInotify) -> None:
    cadence = Cadence(watcher_of(fake), scan_interval_s=1.0, commit_interval_s=0.2)
    assert cadence.turn(0.0).scan
    cadence.reconfigure(scan_interval_s=2.0, commit_interval_s=0.5)
    turn = cadence.turn(0.01)
    assert turn.scan, "the new inputs' files are looked for now"
    assert not cadence.turn(0.01 + INOTIFY_SCAN_FACTOR * 2.0 - 0.001).scan
    assert cadence.turn(0.01 + INOTIFY_SCAN_FACTOR * 2.0).scan


def test_a_literal_directory_not_there_yet_is_watched_through_its_nearest_parent(
        fake: FakeInotify, tmp_path: Path) -> None:
    discovery = Discovery([str(tmp_path / "app" / "logs" / "*.log")])
    discovery.scan()
    assert discovery.directories() == {str(tmp_path)}
    watcher = watcher_of(fake)
    watcher.watch_dirs([discovery])
    fake.queue(fake.wd_of(str(tmp_path)), IN_CREATE | IN_ISDIR, "app")
    assert watcher.changes().rescan, "its making is seen"
    (tmp_path / "app" / "logs").mkdir(parents=True)
    watcher.watch_dirs([discovery])  # the scan that asked for
    assert watcher.watched_dirs == {str(tmp_path / "app" / "logs")}


def test_a_directory_gone_is_not_warned_about_but_the_watch_limit_is(
        fake: FakeInotify, tmp_path: Path) -> None:
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    diagnostics.log.addHandler(handler)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    fake.refuse[str(tmp_path / "a")] = errno.ENOENT  # removed between the scan and the watch
    fake.refuse[str(tmp_path / "b")] = errno.ENOSPC  # max_user_watches reached
    try:
        watcher = watcher_of(fake)
        watcher.watch_dirs([Discovery([str(tmp_path / "a" / "*.log"),
                                       str(tmp_path / "b" / "*.log")])])
    finally:
        diagnostics.log.removeHandler(handler)
    assert [str(tmp_path / "b") in r.getMessage() for r in records] == [True]
    assert watcher.counters["watch_failures"] == 2


def test_a_file_with_an_unfinished_multiline_event_is_read_each_idle_poll(
        fake: FakeInotify) -> None:
    watcher = watcher_of(fake)
    cadence = Cadence(watcher, scan_interval_s=1.0, commit_interval_s=0.2)
    watcher.watch_file((1, 1), 99_999, "/nowhere/1.log")
    waiting = follow()
    waiting.joiner = Joiner("python", max_bytes=1000)
    waiting.joiner.feed_lines([(b"Traceback (most recent call last):", 0, 35)])
    assert waiting.joiner.pending_start == 0
    follows = {(1, 1): waiting}
    cadence.due(cadence.turn(0.0), follows)
    cadence.read((1, 1), waiting, True, 0.0)
    assert cadence.due(cadence.turn(0.05), follows) == [], "not between idle polls"
    assert cadence.due(cadence.turn(IDLE_POLL_S), follows) == [(1, 1)], \
        "its timeout is looked at every idle poll"
