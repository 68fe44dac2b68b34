"""Test doubles for the sink's unit tests: records, an output, dead letters, a consumer."""

from __future__ import annotations

import threading
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from kafkalog.client.group import GroupRecord, Partition
from kafkalog.sink.documents import Document
from kafkalog.sink.outputs import ItemResult, StoreUnavailableError


def record(offset: int, value: bytes | None, *, partition: int = 0, topic: str = "logs",
           key: bytes | None = None, timestamp_ms: int = 1_700_000_000_000) -> GroupRecord:
    return GroupRecord(topic, partition, offset, timestamp_ms, key, value)


class MemoryOutput:
    """Keeps documents by (index, _id); fails the next ``fail_next`` writes as a whole, and
    answers ``verdicts[_id]`` for those documents."""

    name = "memory"

    def __init__(self) -> None:
        self.docs: dict[tuple[str, str], bytes] = {}
        self.writes = 0
        self.fail_next = 0
        self.verdicts: dict[str, ItemResult] = {}
        self.started = self.closed = False
        self.lock = threading.Lock()

    def start(self) -> None:
        self.started = True

    def write(self, docs: Sequence[Document]) -> list[ItemResult]:
        with self.lock:
            self.writes += 1
            if self.fail_next:
                self.fail_next -= 1
                raise StoreUnavailableError("store down (test)")
            out: list[ItemResult] = []
            for doc in docs:
                verdict = self.verdicts.pop(doc.doc_id, None)
                if verdict is None:
                    self.docs[(doc.index, doc.doc_id)] = doc.source
                out.append(verdict)
            return out

    def tick(self) -> None:
        pass

    def close(self) -> None:
        self.closed = True


class MemoryDeadLetters:
    """Collects (document, reason) pairs."""

    def __init__(self) -> None:
        self.letters: list[tuple[Document, str]] = []

    def send(self, letters: Sequence[tuple[Document, str]]) -> None:
        self.letters.extend(letters)

    def close(self) -> None:
        pass


class FakeConsumer:
    """A GroupConsumer over lists of records: one partition set, commits remembered."""

    def __init__(self, records: Sequence[GroupRecord], *, listener: Any,
                 partitions: Collection[Partition]) -> None:
        self.pending = list(records)
        self.listener = listener
        self.owned = set(partitions)
        self.paused: set[Partition] = set()
        self.commits: list[dict[Partition, int]] = []
        self.async_commits: list[dict[Partition, int]] = []
        #: Called at the start of each poll, as kafka-python calls the rebalance listener.
        self.before_poll: Any = None
        self.closed = False
        self.announced = False
        self.polls = 0

    def poll(self, timeout_s: float, max_records: int) -> list[GroupRecord]:
        self.polls += 1
        if self.before_poll is not None:
            self.before_poll(self)
        if not self.announced:
            self.announced = True
            self.listener.assigned(list(self.owned))
        out = [r for r in self.pending
               if Partition(r.topic, r.partition) not in self.paused][:max_records]
        for r in out:
            self.pending.remove(r)
        if not out:
            threading.Event().wait(0.005)  # as a real poll would wait a little
        return out

    def assignment(self) -> set[Partition]:
        return set(self.owned)

    def pause(self, partitions: Collection[Partition]) -> None:
        self.paused.update(partitions)

    def resume(self, partitions: Collection[Partition]) -> None:
        self.paused.difference_update(partitions)

    def commit(self, offsets: Mapping[Partition, int]) -> None:
        self.commits.append(dict(offsets))

    def commit_async(self, offsets: Mapping[Partition, int]) -> None:
        self.async_commits.append(dict(offsets))

    def lag(self) -> dict[Partition, int]:
        return {}

    def close(self) -> None:
        self.closed = True

    def last_committed(self) -> dict[Partition, int]:
        out: dict[Partition, int] = {}
        for commit in self.commits:
            out.update(commit)
        return out
