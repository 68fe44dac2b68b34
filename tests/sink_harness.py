"""Helpers for the sink's integration tests: an app that logs through the handler, the sink as
a process, reading what it wrote, and the group's committed offsets."""

from __future__ import annotations

import gzip
import logging
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from kafkalog import KafkaHandler


def log_records(bootstrap: str, topic: str, count: int, *, first: int = 0,
                **handler_options: Any) -> list[str]:
    """Log ``count`` records through a KafkaHandler (with extras and a key), flush, and return
    their messages."""
    handler = KafkaHandler(topic=topic, bootstrap_servers=bootstrap, key="user",
                           **handler_options)
    log = logging.getLogger(f"sink-app-{uuid.uuid4().hex[:8]}")
    log.propagate = False
    log.setLevel(logging.INFO)
    log.addHandler(handler)
    messages = []
    try:
        for n in range(first, first + count):
            message = f"record {n:06d}"
            log.info(message, extra={"user": f"u{n % 7}", "n": n, "app": "shop"})
            messages.append(message)
        assert handler.flush(60)
        stats = handler.stats()
        assert stats["delivered"] >= count, stats
    finally:
        log.removeHandler(handler)
        handler.close()
    return messages


def sink(*args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    """``kafkalog sink ARGS`` as a process (output captured; ``env`` added to ours)."""
    return subprocess.Popen([sys.executable, "-m", "kafkalog.cli", "sink", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})})


def stop(process: subprocess.Popen[str], timeout_s: float = 60) -> str:
    """SIGTERM, and the output once it exited 0."""
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=timeout_s)
    assert process.returncode == 0, out
    return out


def kill(process: subprocess.Popen[str]) -> None:
    """SIGKILL, and reap it."""
    process.kill()
    process.communicate(timeout=30)


def wait_for(predicate: Callable[[], bool], timeout_s: float = 60.0,
             what: str = "condition", process: subprocess.Popen[str] | None = None) -> None:
    """Poll ``predicate`` (bounded) until it is true; fail early if ``process`` exited."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if process is not None and process.poll() is not None:
            raise AssertionError(f"the sink exited ({process.returncode}) waiting for {what}: "
                                 f"{process.communicate()[0]}")
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def file_lines(directory: Path) -> list[bytes]:
    """Every line of every file the file output wrote (open, finished, compressed). A running
    sink may finish a file while it is read: the listing is then taken again (bounded)."""
    for _ in range(20):
        out: list[bytes] = []
        try:
            for path in sorted(directory.glob("kafkalog-*")):
                if path.name.endswith(".tmp"):
                    continue
                data = path.read_bytes()
                if path.name.endswith(".gz"):
                    data = gzip.decompress(data)
                out.extend(line for line in data.split(b"\n") if line)
        except FileNotFoundError:
            continue
        return out
    raise AssertionError(f"the files of {directory} kept changing while read")


def wait_running(process: subprocess.Popen[str], bootstrap: str, group: str) -> None:
    """Wait (bounded) until ``process`` is a member of ``group`` (its client id names its
    pid): past its start-up, so SIGTERM reaches its handler."""
    wait_for(lambda: any(m.endswith(f"-{process.pid}") for m in group_members(bootstrap, group)),
             process=process, what="the sink in its group")


def file_docs(directory: Path) -> list[dict[str, Any]]:
    """The parsed lines of :func:`file_lines`."""
    return [orjson.loads(line) for line in file_lines(directory)]


def committed(bootstrap: str, group: str, topic: str, partitions: Sequence[int]) -> dict[int, int]:
    """The group's committed offset per partition (those it has one for)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                             enable_auto_commit=False)
    try:
        out = {}
        for p in partitions:
            offset = consumer.committed(TopicPartition(topic, p), timeout_ms=10_000)
            if offset is not None:
                out[p] = int(offset)
        return out
    finally:
        consumer.close(autocommit=False)


def records_below(bootstrap: str, topic: str, offsets: dict[int, int]) -> list[Any]:
    """The records of ``topic`` below ``offsets`` (per partition), read with no group."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    try:
        wanted = {TopicPartition(topic, p): n for p, n in offsets.items() if n > 0}
        if not wanted:
            return []
        consumer.assign(list(wanted))
        consumer.seek_to_beginning(*wanted)
        out: list[Any] = []
        deadline = time.monotonic() + 60
        while any(consumer.position(tp) < n for tp, n in wanted.items()):
            assert time.monotonic() < deadline, "timed out reading the topic back"
            for tp, records in consumer.poll(timeout_ms=500).items():
                out.extend(r for r in records if r.offset < wanted[tp])
        return out
    finally:
        consumer.close()


def group_members(bootstrap: str, group: str) -> list[str]:
    """The client ids of group ``group``'s members, once it is stable (none before)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        try:
            found = admin.describe_groups([group]).get(group) or {}
        except KafkaError:  # no coordinator yet (the group's first moments): not stable
            return []
        if found.get("group_state") != "Stable":
            return []
        return [str(m.get("client_id")) for m in found.get("members") or []]
    finally:
        admin.close()


class Search:
    """A small OpenSearch client for assertions (opensearch-py, refresh before reading)."""

    def __init__(self, url: str) -> None:
        from opensearchpy import OpenSearch  # noqa: PLC0415 - the extra, only where used

        self.client = OpenSearch(hosts=[url], timeout=30, max_retries=0)
        # One node: replicas could never be assigned, and a yellow cluster is not "up" to the
        # harness after a restart.
        self.client.cluster.put_settings(
            body={"persistent": {"cluster.default_number_of_replicas": 0}})

    def count(self, index: str) -> int:
        """Documents in ``index`` (a pattern), after a refresh; 0 if it does not exist."""
        try:
            self.client.indices.refresh(index=index, ignore_unavailable=True,
                                        allow_no_indices=True)
            return int(self.client.count(index=index, params={"ignore_unavailable": "true",
                                                              "allow_no_indices": "true"})
                       ["count"])
        except Exception:  # the store restarting: not there yet
            return -1

    def docs(self, index: str) -> list[dict[str, Any]]:
        """Every document of ``index`` (a pattern) with ``_id``, ``_index``, ``_version``."""
        self.client.indices.refresh(index=index)
        out: list[dict[str, Any]] = []
        response = self.client.search(index=index, body={"query": {"match_all": {}},
                                                         "sort": ["_doc"], "version": True},
                                      size=5000, scroll="1m")
        while response["hits"]["hits"]:
            out.extend(response["hits"]["hits"])
            response = self.client.scroll(scroll_id=response["_scroll_id"], scroll="1m")
        return out

    def mapping(self, index: str) -> dict[str, Any]:
        """The properties of the first index matching ``index``."""
        found = self.client.indices.get_mapping(index=index)
        return dict(next(iter(found.values()))["mappings"]["properties"])

    def delete(self, index: str) -> None:
        """Delete the indices matching ``index`` (and the sink's template)."""
        self.client.indices.delete(index=index, ignore_unavailable=True)
        if self.client.indices.exists_index_template(name="kafkalog"):
            self.client.indices.delete_index_template(name="kafkalog")


def group_state(bootstrap: str, group: str) -> str:
    """The group's state as the coordinator reports it (``Stable``, ``Empty``...)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        return str((admin.describe_groups([group]).get(group) or {}).get("group_state"))
    finally:
        admin.close()
