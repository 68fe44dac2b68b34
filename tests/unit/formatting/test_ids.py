"""Record ids (kafkalog.formatting.ids): unique across blocks, threads and forks; pre-assigned
ids; the host name renewed in a forked child."""

from __future__ import annotations

import os
import socket
import threading

import orjson
import pytest
from record_json import (
    ID_RE,
    encode,
    make_record,
)

from kafkalog.formatting import JsonFormatter, new_record_id


def test_ids_unique_and_compact() -> None:
    ids = [new_record_id() for _ in range(1000)]
    assert len(set(ids)) == 1000
    assert all(ID_RE.match(i) for i in ids)
    assert len({i.split("-")[0] for i in ids}) == 1  # one prefix per process


def test_ids_count_up_in_hex_across_blocks() -> None:
    # Ids are made in blocks of 256; written out they must still be the counter in hex.
    counters = [int(new_record_id().split("-")[1], 16) for _ in range(600)]
    assert counters == list(range(counters[0], counters[0] + 600))
    assert all(ID_RE.match(new_record_id()) for _ in range(300))


def test_pre_assigned_id_is_used() -> None:
    assert encode(make_record(extra={"kafkalog_id": "pre-1"}))["id"] == "pre-1"
    ecs = encode(make_record(extra={"kafkalog_id": "pre-2"}), JsonFormatter("ecs"))
    assert ecs["event"]["id"] == "pre-2"
    assert "kafkalog_id" not in ecs


def test_non_string_pre_assigned_id_is_ignored() -> None:
    doc = encode(make_record(extra={"kafkalog_id": 7}))
    assert ID_RE.match(doc["id"])
    assert "kafkalog_id" not in doc


def test_ids_unique_across_threads() -> None:
    formatter = JsonFormatter()
    results: list[list[str]] = [[] for _ in range(8)]
    barrier = threading.Barrier(8)

    def work(slot: list[str]) -> None:
        barrier.wait()
        for _ in range(2000):
            slot.append(orjson.loads(formatter.encode(make_record()))["id"])

    threads = [threading.Thread(target=work, args=(slot,)) for slot in results]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    all_ids = [i for slot in results for i in slot]
    assert len(all_ids) == 16000
    assert len(set(all_ids)) == 16000


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_ids_unique_after_fork_and_host_refreshed(monkeypatch: pytest.MonkeyPatch) -> None:
    formatter = JsonFormatter()
    before = new_record_id()
    parent_ecs = orjson.loads(JsonFormatter("ecs").encode(make_record()))  # shared objects made
    # The child must recompute the hostname after fork; make it observable.
    monkeypatch.setattr(socket, "gethostname", lambda: "child-host")
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the child
        code = 1
        try:
            os.close(read_fd)
            docs = [orjson.loads(formatter.encode(make_record())) for _ in range(100)]
            # Plain records take the fast path; these two are built as dicts.
            built = [orjson.loads(formatter.encode(make_record(extra={"k": 1}))),
                     orjson.loads(JsonFormatter("ecs").encode(make_record()))]
            payload = orjson.dumps({"ids": [d["id"] for d in docs], "host": docs[0]["host"],
                                    "built_ids": [built[0]["id"], built[1]["event"]["id"]],
                                    "built_hosts": [built[0]["host"],
                                                    built[1]["host"]["hostname"]],
                                    "pid": os.getpid(), "ecs_process": built[1]["process"]})
            os.write(write_fd, payload)
            code = 0
        finally:
            os._exit(code)
    os.close(write_fd)
    chunks = []
    with os.fdopen(read_fd, "rb") as reader:
        chunks.append(reader.read())
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    child = orjson.loads(b"".join(chunks))
    parent_ids = [before] + [new_record_id() for _ in range(100)]
    assert len(child["ids"]) == 100
    assert not set(child["ids"]) & set(parent_ids)
    assert child["ids"][0].split("-")[0] != before.split("-")[0]
    assert child["host"] == "child-host"
    assert child["built_hosts"] == ["child-host", "child-host"]
    assert child["ecs_process"]["pid"] == child["pid"] != parent_ecs["process"]["pid"]
    assert not set(child["built_ids"]) & set(parent_ids)
    assert {i.split("-")[0] for i in child["built_ids"]} == {child["ids"][0].split("-")[0]}
    # The parent keeps the hostname computed at import.
    assert encode(make_record())["host"] != "child-host"
