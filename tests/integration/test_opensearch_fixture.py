"""The OpenSearch test harness itself: the server the sink's tests rely on behaves like one.

It indexes and returns documents, keeps them across a stop and a crash, comes back on the same
port, and runs as an unprivileged user when the suite runs as root.
"""

from __future__ import annotations

import os
import pwd
from pathlib import Path

from search.opensearch import OPENSEARCH_VERSION, OpenSearchNode


def _index(node: OpenSearchNode, index: str, doc_id: str, doc: dict[str, object]) -> None:
    status, body = node.request("PUT", f"/{index}/_doc/{doc_id}?refresh=true", doc)
    assert status in (200, 201), body


def _get(node: OpenSearchNode, index: str, doc_id: str) -> dict[str, object]:
    status, body = node.request("GET", f"/{index}/_doc/{doc_id}")
    assert status == 200, body
    source: dict[str, object] = body["_source"]
    return source


def test_the_server_is_opensearch_of_the_pinned_version(opensearch: OpenSearchNode) -> None:
    status, body = opensearch.request("GET", "/")
    assert status == 200
    assert body["version"]["distribution"] == "opensearch"
    assert body["version"]["number"] == OPENSEARCH_VERSION
    assert opensearch.url.startswith("http://127.0.0.1:")


def test_the_modules_are_loaded(opensearch: OpenSearchNode) -> None:
    status, body = opensearch.request("GET", "/_nodes/plugins")
    assert status == 200
    (node,) = body["nodes"].values()
    modules = {m["name"] for m in node["modules"]}
    assert {"transport-netty4", "lang-painless", "analysis-common", "mapper-extras",
            "reindex"} <= modules  # fmt: skip


def test_a_document_is_indexed_and_read_back(
    opensearch: OpenSearchNode, opensearch_index: str
) -> None:
    doc = {"@timestamp": "2026-01-02T03:04:05Z", "level": "INFO", "message": "hello, search"}
    _index(opensearch, opensearch_index, "r-1", doc)
    assert _get(opensearch, opensearch_index, "r-1") == doc
    query = {"query": {"match": {"message": "search"}}}
    status, body = opensearch.request("POST", f"/{opensearch_index}/_search", query)
    assert status == 200
    assert [hit["_id"] for hit in body["hits"]["hits"]] == ["r-1"]


def test_bulk_requests_work(opensearch: OpenSearchNode, opensearch_index: str) -> None:
    lines = []
    for i in range(50):
        lines.append(f'{{"index":{{"_index":"{opensearch_index}","_id":"{i}"}}}}')
        lines.append(f'{{"n":{i}}}')
    status, body = opensearch.request("POST", "/_bulk?refresh=true", "\n".join(lines) + "\n")
    assert status == 200 and body["errors"] is False, body
    status, body = opensearch.request("GET", f"/{opensearch_index}/_count")
    assert body["count"] == 50


def test_a_stop_and_a_start_keep_the_data_and_the_port(
    opensearch: OpenSearchNode, opensearch_index: str
) -> None:
    _index(opensearch, opensearch_index, "kept", {"message": "before the stop"})
    url = opensearch.url
    opensearch.stop()
    assert not opensearch.is_running
    opensearch.start()
    assert opensearch.url == url
    assert _get(opensearch, opensearch_index, "kept") == {"message": "before the stop"}


def test_a_crash_keeps_acknowledged_data(
    opensearch: OpenSearchNode, opensearch_index: str
) -> None:
    # No refresh needed: an acknowledged write is in the translog, which recovery replays.
    status, body = opensearch.request("PUT", f"/{opensearch_index}/_doc/acked", {"n": 1})
    assert status == 201, body
    opensearch.kill()
    opensearch.start()
    assert _get(opensearch, opensearch_index, "acked") == {"n": 1}


def test_the_server_runs_unprivileged(opensearch: OpenSearchNode) -> None:
    pid = opensearch.pid
    assert pid is not None
    uid = Path(f"/proc/{pid}").stat().st_uid
    if os.geteuid() == 0:
        assert uid != 0
        assert pwd.getpwuid(uid).pw_name == "kafkalog-search"
    else:
        assert uid == os.geteuid()
    rss = opensearch.rss_bytes()
    assert rss is not None and rss > 0
