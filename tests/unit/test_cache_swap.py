"""The test suite's download cache (tests/cache_swap.py, behind the Kafka jars and OpenSearch):
a download is used only once complete, a stale one is replaced, a failed one leaves nothing."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from cache_swap import MARKER, fill_cache, is_complete


def download_into(count: list[int]) -> Callable[[Path], None]:
    def download(staging: Path) -> None:
        count.append(1)
        (staging / "lib").mkdir()
        (staging / "lib" / "server.jar").write_text(f"download {len(count)}")
    return download


def test_a_download_is_marked_and_renamed_into_place_then_reused(tmp_path: Path) -> None:
    target = tmp_path / "cache" / "thing"
    calls: list[int] = []
    fill = download_into(calls)
    assert fill_cache(target, "d1", "lib/server.jar", fill, timeout=5, what="t") == target
    assert (target / MARKER).read_text() == "d1\n"
    assert is_complete(target, "d1", "lib/server.jar")
    fill_cache(target, "d1", "lib/server.jar", fill, timeout=5, what="t")
    assert len(calls) == 1
    # Only the cache and its lock remain beside it: no staging or stale directory.
    assert sorted(p.name for p in target.parent.iterdir()) == [".thing.lock", "thing"]


def test_a_cache_of_another_digest_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "thing"
    calls: list[int] = []
    fill = download_into(calls)
    fill_cache(target, "old", "lib/server.jar", fill, timeout=5, what="t")
    (target / "left-by-old").write_text("x")
    fill_cache(target, "new", "lib/server.jar", fill, timeout=5, what="t")
    assert (target / "lib" / "server.jar").read_text() == "download 2"
    assert not (target / "left-by-old").exists()
    assert is_complete(target, "new", "lib/server.jar")
    assert not is_complete(target, "old", "lib/server.jar")


def test_a_failed_download_leaves_the_old_cache_and_no_staging(tmp_path: Path) -> None:
    target = tmp_path / "thing"
    target.mkdir()
    (target / "half").write_text("an interrupted run's")

    def broken(staging: Path) -> None:
        (staging / "partial.jar").write_text("x")
        raise RuntimeError("maven failed")

    with pytest.raises(RuntimeError, match="maven failed"):
        fill_cache(target, "d", "lib/server.jar", broken, timeout=5, what="t")
    assert sorted(p.name for p in target.iterdir()) == ["half"]
    assert sorted(p.name for p in tmp_path.iterdir()) == [".thing.lock", "thing"]
    assert not is_complete(target, "d", "lib/server.jar")
