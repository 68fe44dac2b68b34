"""The ctypes inotify wrapper: events parsed as the kernel lays them out, watches on a real
directory, and a clear OSError where there is no inotify."""

from __future__ import annotations

import errno
import os
import struct
import sys
from pathlib import Path

import pytest

from kafkalog.ship import inotify
from kafkalog.ship.inotify import (
    IN_CREATE,
    IN_DELETE,
    IN_MODIFY,
    IN_MOVED_FROM,
    IN_MOVED_TO,
    IN_Q_OVERFLOW,
    InotifyEvent,
    open_inotify,
    parse_events,
)

linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")


def raw(wd: int, mask: int, cookie: int, name: bytes = b"", pad: int = 0) -> bytes:
    field = name + b"\0" * pad if name or pad else b""
    return struct.pack("iIII", wd, mask, cookie, len(field)) + field


def test_events_are_parsed_with_their_padded_names() -> None:
    data = (raw(1, IN_CREATE, 0, b"app.log", pad=9) + raw(-1, IN_Q_OVERFLOW, 0)
            + raw(2, IN_MODIFY, 0) + raw(1, IN_MOVED_TO, 77, "é.log".encode(), pad=2))
    assert parse_events(data) == [
        InotifyEvent(1, IN_CREATE, 0, "app.log"),
        InotifyEvent(-1, IN_Q_OVERFLOW, 0, ""),
        InotifyEvent(2, IN_MODIFY, 0, ""),
        InotifyEvent(1, IN_MOVED_TO, 77, "é.log"),
    ]


def test_a_name_that_is_not_utf8_survives_parsing() -> None:
    (event,) = parse_events(raw(3, IN_CREATE, 0, b"bad\xff.log", pad=3))
    assert os.fsencode(event.name) == b"bad\xff.log"


def test_there_is_no_inotify_off_linux(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(inotify.sys, "platform", "darwin")
    with pytest.raises(OSError) as caught:
        open_inotify()
    assert caught.value.errno == errno.ENOSYS
    assert "darwin" in str(caught.value)


@linux_only
def test_a_watched_directory_reports_creates_renames_deletes_and_appends(
        tmp_path: Path) -> None:
    watcher = open_inotify()
    try:
        assert watcher.read() == [], "nothing queued: read does not block"
        wd = watcher.add_watch(str(tmp_path), IN_CREATE | IN_MOVED_FROM | IN_MOVED_TO | IN_DELETE)
        log = tmp_path / "a.log"
        log.write_bytes(b"one\n")
        fd = os.open(log, os.O_RDONLY)
        try:
            file_wd = watcher.add_watch(f"/proc/self/fd/{fd}", IN_MODIFY)
            with open(log, "ab") as f:
                f.write(b"two\n")
            log.rename(tmp_path / "a.log.1")
            (tmp_path / "a.log.1").unlink()
            events = [(e.wd, e.mask, e.name) for e in watcher.read()]
        finally:
            os.close(fd)
        assert events == [(wd, IN_CREATE, "a.log"), (file_wd, IN_MODIFY, ""),
                          (wd, IN_MOVED_FROM, "a.log"), (wd, IN_MOVED_TO, "a.log.1"),
                          (wd, IN_DELETE, "a.log.1")]
        watcher.rm_watch(file_wd)
        watcher.rm_watch(file_wd)  # already dropped: not an error
        with pytest.raises(FileNotFoundError):
            watcher.add_watch(str(tmp_path / "missing"), IN_CREATE)
    finally:
        watcher.close()
        watcher.close()
    assert watcher.fileno() == -1
