"""Discovery: the regular files the globs match, less the excludes, symlinks only if asked."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.ship import discovery as discovery_module
from kafkalog.ship.discovery import Discovery
from kafkalog.ship.files import file_id


def make(root: Path, *names: str) -> list[Path]:
    made = []
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(f"{name}\n".encode())
        made.append(path)
    return made


def test_globs_match_regular_files_with_their_identity(tmp_path: Path) -> None:
    a, b, _ = make(tmp_path, "a.log", "b.log", "c.txt")
    (tmp_path / "dir.log").mkdir()
    os.mkfifo(tmp_path / "fifo.log")
    found = Discovery([str(tmp_path / "*.log")]).scan()
    assert found == {a: file_id(a), b: file_id(b)}


def test_several_globs_and_recursive_ones(tmp_path: Path) -> None:
    top, deep, other = make(tmp_path, "x.log", "sub/deeper/y.log", "other/z.out")
    found = Discovery([str(tmp_path / "**" / "*.log"), str(tmp_path / "other" / "*")]).scan()
    assert set(found) == {top, deep, other}


def test_relative_globs_give_absolute_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                            ) -> None:
    [path] = make(tmp_path, "a.log")
    monkeypatch.chdir(tmp_path)
    assert set(Discovery(["*.log", "./a.log"]).scan()) == {path}


def test_excludes_match_the_base_name_or_the_path(tmp_path: Path) -> None:
    keep, *_ = make(tmp_path, "app.log", "app.log.1.gz", "old/app.log", "debug.log")
    discovery = Discovery(
        [str(tmp_path / "**" / "*")],
        excludes=["*.gz", str(tmp_path / "old" / "*"), "debug.*"],
    )
    assert set(discovery.scan()) == {keep}


def test_symlinks_are_skipped_unless_followed(tmp_path: Path) -> None:
    target_dir = tmp_path / "real"
    [target] = make(target_dir, "target.log")
    logs = tmp_path / "logs"
    [plain] = make(logs, "plain.log")
    (logs / "link.log").symlink_to(target)
    (logs / "dangling.log").symlink_to(tmp_path / "nowhere.log")
    skipping = Discovery([str(logs / "*.log")])
    assert set(skipping.scan()) == {plain}
    assert skipping.symlinks_skipped == 2
    following = Discovery([str(logs / "*.log")], follow_symlinks=True)
    found = following.scan()
    assert found == {plain: file_id(plain), logs / "link.log": file_id(target)}


def test_a_symlinked_directory_is_not_descended_unless_followed(tmp_path: Path) -> None:
    [outside] = make(tmp_path / "etc", "secret.log")
    logs = tmp_path / "logs"
    [inside] = make(logs, "app/x.log")
    (logs / "planted").symlink_to(tmp_path / "etc")
    for pattern in ("**/*.log", "*/*.log"):
        skipping = Discovery([str(logs / pattern)])
        assert set(skipping.scan()) == {inside}, pattern
        assert skipping.symlinks_skipped == 1
        following = Discovery([str(logs / pattern)], follow_symlinks=True)
        assert following.scan() == {inside: file_id(inside),
                                    logs / "planted" / "secret.log": file_id(outside)}


def test_a_symlink_in_the_literal_part_of_the_glob_is_the_operators_choice(tmp_path: Path
                                                                          ) -> None:
    [real] = make(tmp_path / "real", "sub/a.log")
    (tmp_path / "via").symlink_to(tmp_path / "real")
    assert set(Discovery([str(tmp_path / "via" / "sub" / "*.log")]).scan()) == {
        tmp_path / "via" / "sub" / "a.log"
    }
    assert set(Discovery([str(tmp_path / "via" / "sub" / "a.log")]).scan()) == {
        tmp_path / "via" / "sub" / "a.log"
    }
    assert real.exists()


def test_a_file_under_two_names_is_listed_once(tmp_path: Path) -> None:
    [target] = make(tmp_path, "b-target.log")
    (tmp_path / "a-link.log").symlink_to(target)
    os.link(target, tmp_path / "c-hard.log")
    found = Discovery([str(tmp_path / "*.log")], follow_symlinks=True).scan()
    assert list(found) == [target], "the first name that is not a symlink"


class Warnings(RateLimitedWarnings):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[str] = []

    def warn(self, key: str, message: str, *args: object) -> bool:
        self.seen.append(message % args)
        return True


def test_an_unreadable_file_is_skipped_and_reported(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    [readable] = make(tmp_path, "a.log", "secret.log")[:1]
    real = discovery_module.file_id

    def denied(path: str, *, follow_symlinks: bool = False) -> object:
        if path.endswith("secret.log"):
            raise PermissionError(13, "Permission denied", path)
        return real(path, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(discovery_module, "file_id", denied)
    warnings = Warnings()
    discovery = Discovery([str(tmp_path / "*.log")], warnings=warnings)
    assert set(discovery.scan()) == {readable}
    assert discovery.unreadable == 1
    [warning] = warnings.seen
    assert "secret.log" in warning and "Permission denied" in warning


def test_a_quiet_file_is_not_opened_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    quiet, busy = make(tmp_path, "quiet.log", "busy.log")
    discovery = Discovery([str(tmp_path / "*.log")])
    first = discovery.scan()
    opened: list[str] = []
    real = discovery_module.file_id

    def counting(path: str, *, follow_symlinks: bool = False) -> object:
        opened.append(os.path.basename(path))
        return real(path, follow_symlinks=follow_symlinks)

    monkeypatch.setattr(discovery_module, "file_id", counting)
    with busy.open("ab") as stream:
        stream.write(b"more\n")
    second = discovery.scan()
    assert opened == ["busy.log"]
    assert second[quiet] == first[quiet]
    assert second[busy] == file_id(busy) and second[busy].same_file(first[busy])


def test_a_replaced_file_gets_its_new_identity(tmp_path: Path) -> None:
    [path] = make(tmp_path, "a.log")
    discovery = Discovery([str(tmp_path / "*.log")])
    before = discovery.scan()[path]
    path.rename(tmp_path / "a.log.1")  # rotated by rename, a new file under the old name
    path.write_bytes(b"a.log\n")
    after = discovery.scan()
    assert after[path] == file_id(path) and after[path] != before
    assert Path(tmp_path / "a.log.1") not in after


def test_files_that_vanish_are_forgotten(tmp_path: Path) -> None:
    [path] = make(tmp_path, "a.log")
    discovery = Discovery([str(tmp_path / "*.log")])
    assert set(discovery.scan()) == {path}
    path.unlink()
    assert discovery.scan() == {}


def test_no_match_is_no_error(tmp_path: Path) -> None:
    assert Discovery([str(tmp_path / "missing" / "*.log")]).scan() == {}
