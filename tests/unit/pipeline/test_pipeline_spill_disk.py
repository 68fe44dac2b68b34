"""The pipeline and its spill directory: a spill_dir it cannot write to is refused at
construction; close() does not wait while Kafka is unreachable and everything is spilled; on a
full disk each record's outcome says what became of it."""

from __future__ import annotations

import os
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from race_hooks import HookOnClear
from spill_store_helpers import small_filesystem

from kafkalog import ConfigError, TransportError
from kafkalog.pipeline import Outcome, Pipeline
from kafkalog.spill import read_segment
from kafkalog.testing import MemoryTransport

DOWN = TransportError("broker down", retriable=True, cause_name="Down")


def make(transport: MemoryTransport, on_outcome: object = None, **options: object) -> Pipeline:
    opts: dict[str, object] = {"topic": "t", "linger_ms": 0, "retry_backoff_ms": 1,
                               "retry_backoff_max_ms": 5}
    opts.update(options)
    return Pipeline(transport_factory=MemoryTransport.factory(transport),
                    on_outcome=on_outcome, **opts)  # type: ignore[arg-type]


class Outcomes:
    """The last outcome heard for each record number."""

    def __init__(self) -> None:
        self.final: dict[int, Outcome] = {}
        self.changed = threading.Condition()

    def __call__(self, outcome: Outcome, numbers: range) -> None:
        with self.changed:
            for n in numbers:
                self.final[n] = outcome
            self.changed.notify_all()

    def wait_for(self, count: int, timeout_s: float = 30.0) -> bool:
        """Wait until ``count`` records were heard of (reports come after resolution)."""
        with self.changed:
            return self.changed.wait_for(lambda: len(self.final) >= count, timeout_s)


# -- spill_dir is checked at construction ------------------------------------------------------


def test_a_spill_dir_that_is_a_file_is_refused_at_construction_naming_it(tmp_path: Path) -> None:
    a_file = tmp_path / "not-a-dir"
    a_file.write_text("")
    for spill_dir in (a_file, a_file / "below"):
        with pytest.raises(ConfigError, match="spill_dir") as raised:
            make(MemoryTransport(), spill_dir=str(spill_dir))
        assert str(spill_dir) in str(raised.value)


@pytest.fixture
def unwritable_dir(tmp_path: Path) -> Iterator[Path]:
    """A directory this process may not create files in: read-only for a user, a read-only
    mount for root (who may write anywhere else)."""
    if os.geteuid() != 0:
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(stat.S_IRUSR | stat.S_IXUSR)
        yield locked
        locked.chmod(stat.S_IRWXU)
        return
    with small_filesystem(tmp_path / "ro", 64 * 1024) as mountpoint:
        mountpoint.joinpath("spill").mkdir()
        subprocess.run(["mount", "-o", "remount,ro", str(mountpoint)], check=False,
                       capture_output=True, timeout=30)
        if not os.statvfs(mountpoint).f_flag & os.ST_RDONLY:
            pytest.skip("cannot remount the tmpfs read-only")
        yield mountpoint


def test_an_unwritable_spill_dir_is_refused_at_construction_naming_it(
    unwritable_dir: Path,
) -> None:
    for spill_dir in (unwritable_dir, unwritable_dir / "not" / "there"):
        with pytest.raises(ConfigError, match="spill_dir") as raised:
            make(MemoryTransport(), spill_dir=str(spill_dir))
        assert str(spill_dir) in str(raised.value)


def test_a_spill_dir_that_does_not_exist_yet_is_accepted_and_not_created(tmp_path: Path) -> None:
    spill_dir = tmp_path / "new" / "spill"
    pipeline = make(MemoryTransport(), spill_dir=str(spill_dir))
    assert not spill_dir.exists(), "nothing is created before something is spilled"
    pipeline.close()


# -- close() while Kafka is unreachable --------------------------------------------------------


def spilling_with_kafka_down(tmp_path: Path, outcomes: Outcomes) -> Pipeline:
    """A pipeline whose Kafka is down for good: every batch goes to the spill at once, and the
    worker then sits in a minute's replay backoff (close_timeout_ms is ten minutes)."""
    transport = MemoryTransport()
    transport.fail_next = [DOWN] * 100_000
    return make(transport, outcomes, spill_dir=str(tmp_path / "spill"), spill_after_ms=0,
                close_timeout_ms=600_000, retry_backoff_ms=60_000, retry_backoff_max_ms=60_000)


def test_close_does_not_wait_for_close_timeout_when_kafka_is_unreachable_and_all_is_spilled(
    tmp_path: Path,
) -> None:
    outcomes = Outcomes()
    pipeline = spilling_with_kafka_down(tmp_path, outcomes)
    for i in range(200):
        pipeline.submit(b"record %d" % i)
    assert pipeline.flush(30.0), "everything is durably in the spill"
    closed = threading.Event()
    threading.Thread(target=lambda: (pipeline.close(), closed.set()), daemon=True).start()
    assert closed.wait(60.0), "close() waited for close_timeout_ms (10 minutes)"
    stats = pipeline.stats()
    assert stats["spilled"] == stats["spill_pending_records"] == 200
    assert outcomes.wait_for(200)
    assert set(outcomes.final.values()) == {Outcome.SPILLED}
    kept = [r for p in (tmp_path / "spill").glob("*.seg") for r in read_segment(p)[1]]
    assert sorted(v for v, _ in kept) == sorted(b"record %d" % i for i in range(200))


def test_close_spills_what_is_still_in_memory_when_kafka_is_unreachable(tmp_path: Path) -> None:
    outcomes = Outcomes()
    pipeline = spilling_with_kafka_down(tmp_path, outcomes)
    assert pipeline.wait(pipeline.submit(b"first"), 30.0)
    for i in range(500):  # the worker sits in a minute's backoff: these stay queued a while
        pipeline.submit(b"later %d" % i)
    closed = threading.Event()
    threading.Thread(target=lambda: (pipeline.close(), closed.set()), daemon=True).start()
    assert closed.wait(60.0), "close() waited for close_timeout_ms (10 minutes)"
    assert pipeline.resolved() == 501
    assert outcomes.wait_for(501)
    assert set(outcomes.final.values()) == {Outcome.SPILLED}
    assert pipeline.stats()["spill_pending_records"] == 501


def test_an_abort_just_before_the_replay_sleep_clears_its_wakeup_is_not_slept_through(
    tmp_path: Path,
) -> None:
    # The race behind a CI failure: abort() set the event, the sleeping worker cleared it and
    # then waited out a whole backoff (here a minute) before noticing.
    outcomes = Outcomes()
    pipeline = spilling_with_kafka_down(tmp_path, outcomes)
    wakeup = HookOnClear()
    pipeline._queue.wakeup = wakeup
    assert pipeline.wait(pipeline.submit(b"first"), 30.0)
    worker = pipeline._worker
    deadline = time.monotonic() + 30.0
    while pipeline.stats()["retries"] < 1:  # the replay failed: the worker is in its backoff
        assert time.monotonic() < deadline, "the replay of the spilled record was not retried"
        time.sleep(0.01)  # polled, bounded: the worker runs on its own thread
    wakeup.hook = worker.abort
    wakeup.set()  # the sleep loop turns once more: the abort lands just before its clear
    assert worker.join(20.0), "the worker slept through abort() for a whole backoff"
    pipeline.close()
    assert outcomes.wait_for(1)
    assert outcomes.final == {1: Outcome.SPILLED}


def test_close_during_the_first_outage_spills_and_returns_without_waiting(tmp_path: Path) -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    transport.fail_next = [DOWN] * 100_000
    pipeline = make(transport, outcomes, spill_dir=str(tmp_path / "spill"), spill_after_ms=300,
                    close_timeout_ms=600_000)
    for i in range(100):
        pipeline.submit(b"r%d" % i)
    closed = threading.Event()  # closed while the first batch is still retried in memory
    threading.Thread(target=lambda: (pipeline.close(), closed.set()), daemon=True).start()
    assert closed.wait(60.0), "close() went on replaying to an unreachable Kafka"
    assert outcomes.wait_for(100)
    assert set(outcomes.final.values()) == {Outcome.SPILLED}
    assert pipeline.stats()["spill_pending_records"] == 100


def test_close_still_delivers_once_kafka_is_back(tmp_path: Path) -> None:
    transport = MemoryTransport()
    transport.fail_next = [DOWN]
    pipeline = make(transport, spill_dir=str(tmp_path / "spill"), spill_after_ms=0,
                    close_timeout_ms=600_000)
    for i in range(10):
        pipeline.submit(b"r%d" % i)
    for _ in range(3000):  # the worker's progress, polled (bounded)
        if pipeline.stats()["replayed"] == 10:
            break
        threading.Event().wait(0.01)
    assert pipeline.stats()["replayed"] == 10, "the spill was replayed once Kafka took it"
    transport.gate = threading.Event()  # Kafka is slow to answer, not unreachable
    for i in range(10, 15):
        pipeline.submit(b"r%d" % i)
    closed = threading.Event()
    threading.Thread(target=lambda: (pipeline.close(), closed.set()), daemon=True).start()
    transport.gate.set()
    assert closed.wait(60.0)
    assert sorted(v for v, _ in transport.records) == sorted(b"r%d" % i for i in range(15)), (
        "close() gave up on a Kafka that was answering"
    )


# -- a full disk -------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_on_a_full_disk_every_record_is_reported_spilled_or_dropped_truthfully(
    tmp_path: Path, policy: str
) -> None:
    transport, outcomes = MemoryTransport(), Outcomes()
    transport.fail_next = [DOWN] * 100_000
    with small_filesystem(tmp_path / "mnt", 256 * 1024) as disk:
        pipeline = make(transport, outcomes, spill_dir=str(disk / "spill"), spill_after_ms=0,
                        spill_full_policy=policy, retry_backoff_ms=60_000,
                        retry_backoff_max_ms=60_000)
        count = 2000  # about 4 times what the disk holds
        for i in range(count):
            pipeline.submit(b"%06d|" % i + b"v" * 400)
        pipeline.flush(30.0)
        assert pipeline.resolved() == count
        assert outcomes.wait_for(count)
        on_disk = sorted(
            int(v[:6]) + 1 for p in (disk / "spill").glob("*.seg") for v, _ in read_segment(p)[1]
        )
        final = outcomes.final
        spilled = sorted(n for n, o in final.items() if o is Outcome.SPILLED)
        dropped = [n for n, o in final.items() if o is Outcome.DROPPED]
        assert len(final) == count
        assert spilled == on_disk, "spilled means on disk; dropped means gone"
        assert len(dropped) + len(spilled) == count
        assert len(spilled) > count // 6, f"kept only {len(spilled)} records"
        assert pipeline.stats()["spill_dropped"] == len(dropped), "each drop counted once"
        if policy == "drop_newest":
            assert spilled == list(range(1, len(spilled) + 1)), "the oldest are kept"
        else:
            assert spilled == list(range(count - len(spilled) + 1, count + 1)), "the newest"
        pipeline.close()
