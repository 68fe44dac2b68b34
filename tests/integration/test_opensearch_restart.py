"""The OpenSearch harness's restart with an index that has a replica one node cannot assign.

Such an index keeps the single-node cluster yellow for good. The harness must count that as
started (every primary active, nothing initializing), or an outage test whose sink or user
created one would wait for green until its timeout.
"""

from __future__ import annotations

from search.opensearch import OpenSearchNode


def test_a_restart_with_an_unassignable_replica_comes_back_yellow(
    opensearch: OpenSearchNode, opensearch_index: str
) -> None:
    status, body = opensearch.request(
        "PUT", f"/{opensearch_index}", {"settings": {"number_of_shards": 1,
                                                     "number_of_replicas": 1}})
    assert status == 200, body
    status, body = opensearch.request("PUT", f"/{opensearch_index}/_doc/kept?refresh=true",
                                      {"message": "before the restart"})
    assert status == 201, body
    _, health = opensearch.request("GET", "/_cluster/health")
    assert health["status"] == "yellow" and health["unassigned_shards"] >= 1

    opensearch.restart(timeout=60)  # before the fix: "not green within 60s"

    _, health = opensearch.request("GET", "/_cluster/health")
    assert health["status"] == "yellow"
    assert health["initializing_shards"] == 0
    status, body = opensearch.request("GET", f"/{opensearch_index}/_doc/kept")
    assert status == 200 and body["_source"] == {"message": "before the restart"}, body
