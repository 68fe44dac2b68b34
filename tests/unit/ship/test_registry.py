"""The registry: durable, atomic saves; a corrupt registry falls back to .bak, then to policy."""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

import crc32c
import orjson
import pytest

from kafkalog.errors import KafkalogError
from kafkalog.ship.files import file_id
from kafkalog.ship.registry import FileState, Registry, RegistryError


def state(n: int, offset: int = 0, path: str | None = None) -> FileState:
    return FileState(dev=64769, ino=1000 + n, head_hash=f"{n:064x}", head_len=1024,
                     path=path or f"/var/log/app/{n}.log", offset=offset, input="app")


FIRST = [state(1, 100), state(2, 2000)]
SECOND = [state(1, 150), state(2, 2500), state(3, 10)]


def saved_twice(tmp_path: Path) -> Registry:
    registry = Registry(tmp_path)
    registry.save(FIRST)
    registry.save(SECOND)
    return registry


def test_no_registry_yet_means_no_states(tmp_path: Path) -> None:
    registry = Registry(tmp_path / "state")
    assert registry.load() == []
    assert registry.start_from is None and registry.recovered_from_backup == 0


def test_saved_states_load_back(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    loaded = Registry(tmp_path).load()
    assert loaded == SECOND


def test_the_file_has_a_version_and_a_checksum(tmp_path: Path) -> None:
    Registry(tmp_path).save(FIRST)
    doc = orjson.loads((tmp_path / "registry.json").read_bytes())
    assert doc["version"] == 1
    crc = doc.pop("crc32c")
    assert crc == crc32c.crc32c(orjson.dumps(doc))
    assert doc["states"][0] == {
        "path": "/var/log/app/1.log", "input": "app", "offset": 100, "dev": 64769,
        "ino": 1001, "head_hash": f"{1:064x}", "head_len": 1024, "truncations": 0,
    }


def test_the_previous_registry_is_kept_as_bak(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    (tmp_path / "registry.json").rename(tmp_path / "elsewhere")
    (tmp_path / "registry.json.bak").rename(tmp_path / "registry.json")
    assert Registry(tmp_path).load() == FIRST
    assert not (tmp_path / "registry.json.tmp").exists()


def test_the_state_directory_is_created_private(tmp_path: Path) -> None:
    Registry(tmp_path / "a" / "state").save(FIRST)
    assert stat.S_IMODE((tmp_path / "a" / "state").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "state" / "registry.json").stat().st_mode) == 0o600


def test_a_save_fsyncs_the_file_then_the_directory(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    events: list[str] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        kind = "dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file"
        events.append(f"fsync {kind}")
        real_fsync(fd)

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        events.append(f"replace {Path(src).name} {Path(dst).name}")
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    saved_twice(tmp_path)
    assert events == [
        "fsync file", "replace registry.json.tmp registry.json", "fsync dir",
        "fsync file", "replace registry.json.bak.tmp registry.json.bak",
        "replace registry.json.tmp registry.json", "fsync dir",
    ]


def test_the_registry_is_in_place_at_every_step_of_a_save(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path)
    registry.save(FIRST)
    real_replace = os.replace
    seen: list[tuple[list[FileState], int]] = []

    def replace(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        reader = Registry(tmp_path)  # what another reader (or a crash here) would find
        seen.append((reader.load(), reader.recovered_from_backup))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    registry.save(SECOND)
    monkeypatch.undo()
    assert seen == [(FIRST, 0), (FIRST, 0)], "registry.json itself, never the .bak"
    assert Registry(tmp_path).load() == SECOND
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json", "registry.json.bak"]
    (tmp_path / "registry.json").unlink()
    assert Registry(tmp_path).load() == FIRST, "the .bak holds the previous registry"


@pytest.mark.parametrize("refusal", [errno.EPERM, errno.EOPNOTSUPP])
def test_without_hard_links_the_previous_registry_is_renamed_to_bak(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, refusal: int
) -> None:
    def no_links(src: object, dst: object) -> None:
        raise OSError(refusal, os.strerror(refusal))

    monkeypatch.setattr(os, "link", no_links)
    saved_twice(tmp_path)
    monkeypatch.undo()
    assert Registry(tmp_path).load() == SECOND
    (tmp_path / "registry.json").unlink()
    assert Registry(tmp_path).load() == FIRST, "the .bak holds the previous registry"


def test_another_link_error_fails_the_save_and_keeps_the_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path)
    registry.save(FIRST)

    def no_space(src: object, dst: object) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "link", no_space)
    with pytest.raises(RegistryError, match="cannot write the registry"):
        registry.save(SECOND)
    monkeypatch.undo()
    assert Registry(tmp_path).load() == FIRST
    assert sorted(p.name for p in tmp_path.iterdir()) == ["registry.json"]


def test_an_unchanged_save_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                          ) -> None:
    registry = Registry(tmp_path)
    registry.save(FIRST)
    calls: list[int] = []
    monkeypatch.setattr(os, "fsync", calls.append)
    registry.save(list(FIRST))
    assert calls == []


def test_a_crash_before_the_rename_leaves_the_old_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    registry = Registry(tmp_path)
    registry.save(FIRST)
    real_replace = os.replace

    def crash(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> None:
        if Path(src).name == "registry.json.tmp":
            raise OSError(5, "Input/output error")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(RegistryError) as caught:
        registry.save(SECOND)
    assert "registry.json" in str(caught.value)
    assert isinstance(caught.value.__cause__, OSError)
    assert not (tmp_path / "registry.json.tmp").exists()
    monkeypatch.undo()
    assert Registry(tmp_path).load() == FIRST, "the last good registry, from .bak"
    registry.save(SECOND)  # and saving works again
    assert Registry(tmp_path).load() == SECOND


def test_a_killed_save_leaves_a_stale_temp_file_that_is_ignored(tmp_path: Path) -> None:
    Registry(tmp_path).save(FIRST)
    (tmp_path / "registry.json.tmp").write_bytes(b'{"version": 1, "sta')  # torn write
    registry = Registry(tmp_path)
    assert registry.load() == FIRST and registry.recovered_from_backup == 0
    registry.save(SECOND)
    assert Registry(tmp_path).load() == SECOND


def test_a_crash_between_the_two_renames_recovers_from_bak(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    os.replace(tmp_path / "registry.json", tmp_path / "registry.json.bak")  # the first rename
    registry = Registry(tmp_path)
    assert registry.load() == SECOND
    assert registry.recovered_from_backup == 1
    registry.save([*SECOND, state(4)])
    assert Registry(tmp_path).load() == [*SECOND, state(4)]


def test_a_failed_write_keeps_the_old_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                               ) -> None:
    registry = Registry(tmp_path)
    registry.save(FIRST)

    def full(fd: int, data: bytes) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", full)
    with pytest.raises(RegistryError):
        registry.save(SECOND)
    monkeypatch.undo()
    assert not (tmp_path / "registry.json.tmp").exists()
    loaded = Registry(tmp_path)
    assert loaded.load() == FIRST and loaded.recovered_from_backup == 0


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda data: data[: len(data) // 2], id="truncated"),
        pytest.param(lambda data: b"", id="empty"),
        pytest.param(lambda data: b"\x00" * len(data), id="nul-filled"),
        pytest.param(lambda data: data.replace(b'"offset":150', b'"offset":999'),
                     id="checksum-mismatch"),
        pytest.param(lambda data: data.replace(b',"crc32c"', b',"crc"'), id="no-checksum"),
        pytest.param(lambda data: b"[1, 2, 3]", id="not-an-object"),
    ],
)
def test_a_corrupt_registry_recovers_from_bak(tmp_path: Path, damage: object) -> None:
    saved_twice(tmp_path)
    main = tmp_path / "registry.json"
    main.write_bytes(damage(main.read_bytes()))  # type: ignore[operator]
    registry = Registry(tmp_path)
    assert registry.load() == FIRST
    assert registry.recovered_from_backup == 1 and registry.start_from is None
    assert (tmp_path / "registry.json.corrupt").exists(), "kept for a post-mortem"


def test_a_corrupt_registry_never_replaces_a_good_bak(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    (tmp_path / "registry.json").write_bytes(b"\x00" * 100)
    registry = Registry(tmp_path)
    assert registry.load() == FIRST
    registry.save(SECOND)
    assert Registry(tmp_path).load() == SECOND
    os.remove(tmp_path / "registry.json")
    assert Registry(tmp_path).load() == FIRST, "the .bak is still the good one"


def test_saving_without_loading_does_not_back_up_a_corrupt_registry(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    (tmp_path / "registry.json").write_bytes(b"garbage")
    Registry(tmp_path).save([state(9)])
    assert Registry(tmp_path).load() == [state(9)]
    os.remove(tmp_path / "registry.json")
    assert Registry(tmp_path).load() == FIRST


def test_a_state_with_a_bad_field_is_corruption(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    body = orjson.dumps({"version": 1, "states": [{"path": "/x", "offset": -1}]})
    (tmp_path / "registry.json").write_bytes(body[:-1] + b',"crc32c":%d}' % crc32c.crc32c(body))
    assert Registry(tmp_path).load() == FIRST


def corrupt_both(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    (tmp_path / "registry.json").write_bytes(b"\x00" * 64)
    bak = tmp_path / "registry.json.bak"
    bak.write_bytes(bak.read_bytes()[:-20])


def test_both_corrupt_fails_by_default_naming_both_files(tmp_path: Path) -> None:
    corrupt_both(tmp_path)
    with pytest.raises(RegistryError) as caught:
        Registry(tmp_path).load()
    message = str(caught.value)
    assert str(tmp_path / "registry.json") in message
    assert str(tmp_path / "registry.json.bak") in message
    assert isinstance(caught.value, KafkalogError)
    assert (tmp_path / "registry.json").exists(), "with on_corrupt='fail' nothing is moved"


@pytest.mark.parametrize("policy", ["head", "tail"])
def test_both_corrupt_applies_the_policy(tmp_path: Path, policy: str) -> None:
    corrupt_both(tmp_path)
    registry = Registry(tmp_path, on_corrupt=policy)
    assert registry.load() == []
    assert registry.start_from == policy
    registry.save(FIRST)
    reloaded = Registry(tmp_path)
    assert reloaded.load() == FIRST and reloaded.start_from is None


def test_a_corrupt_bak_without_a_registry_is_corruption(tmp_path: Path) -> None:
    corrupt_both(tmp_path)
    os.remove(tmp_path / "registry.json")
    with pytest.raises(RegistryError, match="missing"):
        Registry(tmp_path).load()


@pytest.mark.parametrize("policy", ["fail", "head"])
def test_a_corrupt_registry_without_a_bak_is_corruption(tmp_path: Path, policy: str) -> None:
    Registry(tmp_path).save(FIRST)
    (tmp_path / "registry.json").write_bytes(b"{")
    registry = Registry(tmp_path, on_corrupt=policy)
    if policy == "fail":
        with pytest.raises(RegistryError, match=r"registry\.json\.bak is missing"):
            registry.load()
    else:
        assert registry.load() == [] and registry.start_from == "head"


def test_a_newer_version_is_refused_whatever_the_policy(tmp_path: Path) -> None:
    body = orjson.dumps({"version": 2, "states": []})
    tmp_path.joinpath("registry.json").write_bytes(
        body[:-1] + b',"crc32c":%d}' % crc32c.crc32c(body))
    with pytest.raises(RegistryError, match="version 2"):
        Registry(tmp_path, on_corrupt="head").load()


def test_a_symlinked_registry_is_not_followed(tmp_path: Path) -> None:
    saved_twice(tmp_path)
    elsewhere = tmp_path / "planted.json"
    os.replace(tmp_path / "registry.json", elsewhere)
    (tmp_path / "registry.json").symlink_to(elsewhere)
    registry = Registry(tmp_path)
    assert registry.load() == FIRST and registry.recovered_from_backup == 1


def test_paths_that_are_not_utf8_round_trip(tmp_path: Path) -> None:
    odd = os.fsdecode(b"/var/log/caf\xe9.log")
    states = [state(1, 5, path=odd), state(2, 6, path="/var/log/日本.log")]
    Registry(tmp_path).save(states)
    assert Registry(tmp_path).load() == states


def test_a_state_is_made_from_a_file_identity(tmp_path: Path) -> None:
    path = tmp_path / "a.log"
    path.write_bytes(b"hello\n")
    fid = file_id(path)
    saved = FileState.of(fid, str(path), 6, "app")
    Registry(tmp_path / "state").save([saved])
    [loaded] = Registry(tmp_path / "state").load()
    assert loaded.fid == fid and loaded.fid.same_file(fid)


def test_an_unknown_policy_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="on_corrupt"):
        Registry(tmp_path, on_corrupt="ignore")


def test_one_agent_per_state_directory(tmp_path: Path) -> None:
    first, second = Registry(tmp_path), Registry(tmp_path)
    first.lock()
    with pytest.raises(RegistryError, match="in use"):
        second.lock()
    first.close()
    second.lock()
    second.close()
