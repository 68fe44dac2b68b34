"""A tailed file: identity, complete lines with offsets, long lines, truncation, rotation."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kafkalog.ship.files import HEAD_LEN, FileId, TailedFile, file_id, open_regular


def append(path: Path, data: bytes) -> None:
    with path.open("ab") as stream:
        stream.write(data)


def read_all(tailed: TailedFile, max_bytes: int = 1 << 20) -> list[tuple[bytes, int, int]]:
    out: list[tuple[bytes, int, int]] = []
    while batch := tailed.read_lines(max_bytes):
        out.extend(batch)
    return out


def tail(path: Path, **kwargs: object) -> TailedFile:
    return TailedFile.open(path, input="app", **kwargs)  # type: ignore[arg-type]


# -- identity ------------------------------------------------------------------------------


def test_identity_is_device_inode_and_a_hash_of_the_head(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"x" * 3000)
    st = path.stat()
    fid = file_id(path)
    assert (fid.dev, fid.ino, fid.head_len) == (st.st_dev, st.st_ino, HEAD_LEN)
    assert len(fid.head_hash) == 64
    fd = os.open(path, os.O_RDONLY)
    try:
        assert file_id(fd) == fid, "the same identity through a descriptor and a path"
    finally:
        os.close(fd)


def test_identity_of_a_small_file_hashes_what_there_is(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"short\n")
    assert file_id(path).head_len == 6
    path.write_bytes(b"")
    assert file_id(path).head_len == 0


def test_a_grown_file_is_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"first line\n")
    small = file_id(path)
    append(path, b"y" * 5000)
    grown = file_id(path)
    assert grown.head_len == HEAD_LEN and small.head_len == 11
    assert grown.same_file(small) and small.same_file(grown)


def test_a_reused_inode_is_not_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"old content\n" * 200)
    old = file_id(path)
    with path.open("r+b") as stream:  # same inode, other head
        stream.truncate(0)
        stream.write(b"new content\n" * 200)
    new = file_id(path)
    assert (new.dev, new.ino) == (old.dev, old.ino)
    assert not new.same_file(old)


def test_another_inode_is_not_the_same_file(tmp_path: Path) -> None:
    (tmp_path / "a.log").write_bytes(b"same\n")
    (tmp_path / "b.log").write_bytes(b"same\n")
    assert not file_id(tmp_path / "a.log").same_file(file_id(tmp_path / "b.log"))


def test_a_recorded_identity_longer_than_the_file_is_not_the_same_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"a" * 2000)
    recorded = file_id(path)
    # What the registry gives back: no head bytes, only the hash and its length.
    recorded = FileId(recorded.dev, recorded.ino, recorded.head_hash, recorded.head_len)
    path.write_bytes(b"a" * 10)  # truncated: read again from the start
    assert not file_id(path).same_file(recorded)
    assert not recorded.same_file(file_id(path))


def test_a_recorded_short_identity_matches_the_grown_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"a" * 10)
    taken = file_id(path)
    recorded = FileId(taken.dev, taken.ino, taken.head_hash, taken.head_len)
    append(path, b"b" * 2000)
    assert file_id(path).same_file(recorded)


def test_head_bytes_are_left_out_of_equality(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"data\n")
    fid = file_id(path)
    recorded = FileId(fid.dev, fid.ino, fid.head_hash, fid.head_len)
    assert fid == recorded and hash(fid) == hash(recorded)
    assert b"data" not in repr(fid).encode()


def test_a_symlink_is_not_opened_unless_asked(tmp_path: Path) -> None:
    target = tmp_path / "target.log"
    target.write_bytes(b"line\n")
    link = tmp_path / "link.log"
    link.symlink_to(target)
    with pytest.raises(OSError) as caught:
        file_id(link)
    assert caught.value.errno == errno.ELOOP
    with pytest.raises(OSError):
        TailedFile.open(link)
    assert file_id(link, follow_symlinks=True) == file_id(target)
    tailed = TailedFile.open(link, follow_symlinks=True)
    assert read_all(tailed) == [(b"line", 0, 5)]
    tailed.close()


def test_only_regular_files_are_opened(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo.log"
    os.mkfifo(fifo)
    with pytest.raises(OSError) as caught:
        open_regular(fifo)  # and it does not hang waiting for a writer
    assert caught.value.errno == errno.EINVAL
    with pytest.raises(OSError):
        open_regular(tmp_path)


# -- lines ---------------------------------------------------------------------------------


def test_complete_lines_come_with_their_offsets(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"one\ntwo\r\n\nthree\n")
    tailed = tail(path)
    assert read_all(tailed) == [(b"one", 0, 4), (b"two\r", 4, 9), (b"", 9, 10),
                                (b"three", 10, 16)]
    assert tailed.read_offset == tailed.line_offset == 16
    assert tailed.at_eof() and tailed.lag_bytes == 0
    assert tailed.input == "app" and tailed.path == path
    tailed.close()


def test_a_partial_line_waits_for_its_newline(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"done\npart")
    tailed = tail(path)
    assert read_all(tailed) == [(b"done", 0, 5)]
    assert tailed.read_offset == 9 and tailed.line_offset == 5, "the partial line is buffered"
    assert tailed.read_lines(100) == []
    append(path, b"ial")
    assert tailed.read_lines(100) == []
    append(path, b" line\nnext")
    assert tailed.read_lines(100) == [(b"partial line", 5, 18)]
    assert tailed.line_offset == 18
    tailed.close()


def test_a_partial_line_is_not_read_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"x" * 2000)  # longer than the head: no identity reads
    tailed = tail(path)
    reads: list[tuple[int, int]] = []
    real_pread = os.pread

    def pread(fd: int, n: int, offset: int) -> bytes:
        data = real_pread(fd, n, offset)
        reads.append((offset, len(data)))
        return data

    monkeypatch.setattr(os, "pread", pread)
    assert tailed.read_lines(5000) == []
    append(path, b"y\n")
    assert tailed.read_lines(5000) == [(b"x" * 2000 + b"y", 0, 2002)]
    assert reads == [(0, 2000), (2000, 2)], "each byte is read once"
    tailed.close()


def test_invalid_utf8_and_nul_bytes_pass_through(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    raw = b"caf\xc3\xa9 \xff\xfe bad\x00nul\x00\n\x00\x00\x00\n"
    path.write_bytes(raw)
    tailed = tail(path)
    assert read_all(tailed) == [(b"caf\xc3\xa9 \xff\xfe bad\x00nul\x00", 0, 18),
                                (b"\x00\x00\x00", 18, 22)]
    tailed.close()


def test_reading_starts_at_the_given_offset(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"shipped\nnot yet\n")
    tailed = TailedFile(path, open_regular(path), file_id(path), 8, "app")
    assert read_all(tailed) == [(b"not yet", 8, 16)]
    tailed.close()


def test_a_long_line_is_cut_and_its_rest_skipped(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"short\n" + b"L" * 50 + b"\nafter\n" + b"M" * 10 + b"\n")
    tailed = tail(path)
    lines = read_all(tailed, max_bytes=10)
    assert lines == [(b"short", 0, 6), (b"L" * 10, 6, 57), (b"after", 57, 63),
                     (b"M" * 10, 63, 74)]
    assert tailed.long_lines == 1
    cut = [end - start > len(line) + 1 for line, start, end in lines]
    assert cut == [False, True, False, False], "the offsets say which line was cut"
    tailed.close()


def test_a_long_line_across_many_reads_is_cut_without_being_held(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"head\n" + b"L" * 5000)
    tailed = tail(path, chunk_bytes=64)
    assert read_all(tailed, max_bytes=100) == [(b"head", 0, 5)]
    assert tailed.line_offset == 5 and tailed.read_offset == 5005
    append(path, b"L" * 3000)
    assert read_all(tailed, max_bytes=100) == [], "no newline yet: nothing to ship"
    append(path, b"LL\nnext\n")
    assert read_all(tailed, max_bytes=100) == [(b"L" * 100, 5, 8008), (b"next", 8008, 8013)]
    assert tailed.long_lines == 1
    tailed.close()


def test_a_line_of_exactly_max_bytes_is_not_cut(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"a" * 10 + b"\n" + b"b" * 11 + b"\n")
    tailed = tail(path)
    assert read_all(tailed, max_bytes=10) == [(b"a" * 10, 0, 11), (b"b" * 10, 11, 23)]
    assert tailed.long_lines == 1
    tailed.close()


def test_one_call_reads_a_bounded_amount(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"x\n" * 5000)
    tailed = tail(path, chunk_bytes=100)
    first = tailed.read_lines(1000)
    assert len(first) == 50, "one chunk's lines per call"
    assert len(read_all(tailed)) == 4950
    tailed.close()


def test_bad_arguments_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"")
    tailed = tail(path)
    with pytest.raises(ValueError):
        tailed.read_lines(0)
    with pytest.raises(ValueError):
        TailedFile(path, tailed.fileno(), tailed.fid, -1, "app")
    tailed.close()


@settings(max_examples=200, deadline=None)
@given(
    pieces=st.lists(st.binary(max_size=40).map(lambda b: b.replace(b"\r", b"\n")), max_size=12),
    chunk=st.integers(1, 50),
    max_bytes=st.integers(1, 30),
)
def test_lines_and_offsets_cover_the_file_exactly(
    tmp_path_factory: pytest.TempPathFactory, pieces: list[bytes], chunk: int, max_bytes: int
) -> None:
    path = tmp_path_factory.mktemp("prop") / "a.log"
    path.write_bytes(b"")
    tailed = tail(path, chunk_bytes=chunk)
    lines: list[tuple[bytes, int, int]] = []
    for piece in pieces:  # appended while it is read
        append(path, piece)
        lines.extend(tailed.read_lines(max_bytes))
    lines.extend(read_all(tailed, max_bytes))
    data = b"".join(pieces)
    expected_end = data.rfind(b"\n") + 1
    position = 0
    for line, start, end in lines:
        assert start == position, "lines are contiguous"
        full = data[start : end - 1]
        assert data[end - 1 : end] == b"\n" and b"\n" not in full
        assert line == full[:max_bytes]
        position = end
    assert position == expected_end, "every complete line, and no partial one"
    assert tailed.line_offset == expected_end and tailed.read_offset == len(data)
    assert tailed.long_lines == sum(len(line) > max_bytes for line in data.split(b"\n")[:-1])
    tailed.close()


# -- identity while reading, truncation, rotation --------------------------------------------


def test_the_identity_grows_with_a_small_file(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"")
    tailed = tail(path)
    assert tailed.fid.head_len == 0
    append(path, b"first\n")
    read_all(tailed)
    assert tailed.fid.head_len == 6
    append(path, b"z" * 3000 + b"\n")
    read_all(tailed)
    assert tailed.fid.head_len == HEAD_LEN
    assert tailed.fid == file_id(path)
    tailed.close()


def test_truncation_restarts_at_zero_and_is_counted(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"line one\nline two\n")
    tailed = tail(path)
    read_all(tailed)
    assert not tailed.check_truncated()
    os.truncate(path, 0)  # copytruncate
    append(path, b"new\n")
    assert tailed.read_lines(100) == [], "shorter than what was read: nothing new"
    assert tailed.check_truncated()
    assert tailed.truncations == 1 and tailed.read_offset == 0
    assert read_all(tailed) == [(b"new", 0, 4)]
    assert not tailed.check_truncated()
    assert tailed.fid == file_id(path)
    tailed.close()


def test_a_file_rewritten_past_the_offset_is_seen_as_truncated(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"old\n")
    tailed = tail(path)
    read_all(tailed)
    with path.open("r+b") as stream:  # truncated, then written past our offset already
        stream.truncate(0)
        stream.write(b"brand new lines\n")
    assert tailed.check_truncated()
    assert read_all(tailed) == [(b"brand new lines", 0, 16)]
    tailed.close()


def test_truncation_drops_the_buffered_partial_line(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"complete\npartial")
    tailed = tail(path)
    read_all(tailed)
    os.truncate(path, 0)
    assert tailed.check_truncated()
    append(path, b"fresh\n")
    assert read_all(tailed) == [(b"fresh", 0, 6)]
    tailed.close()


def test_a_renamed_file_stays_readable(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"before\n")
    tailed = tail(path)
    read_all(tailed)
    rotated = tmp_path / "a.log.1"
    path.rename(rotated)
    path.write_bytes(b"the new file\n")
    append(rotated, b"late line\n")  # the writer still had the old file open
    assert read_all(tailed) == [(b"late line", 7, 17)]
    assert not tailed.deleted() and not tailed.check_truncated()
    assert tailed.fid.same_file(file_id(rotated))
    assert not tailed.fid.same_file(file_id(path))
    tailed.close()


def test_a_deleted_file_is_drained(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"one\n")
    tailed = tail(path, chunk_bytes=2)
    assert tailed.read_lines(100) == [(b"one", 0, 4)]
    with path.open("ab") as writer:
        writer.write(b"two\nthree\n")
        writer.flush()
        path.unlink()
        assert tailed.deleted()
        writer.write(b"four\n")
    assert not tailed.at_eof() and tailed.lag_bytes == 15
    assert [line for line, _, _ in read_all(tailed)] == [b"two", b"three", b"four"]
    assert tailed.at_eof()
    tailed.close()
    assert tailed.closed and tailed.fileno() == -1
    tailed.close()  # idempotent


def test_close_frees_the_descriptor(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"x\n")
    tailed = tail(path)
    fd = tailed.fileno()
    tailed.close()
    with pytest.raises(OSError):
        os.fstat(fd)
