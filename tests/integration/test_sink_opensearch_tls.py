"""``kafkalog sink`` against an HTTPS endpoint with basic auth or an API key (the harness's
TLS proxy in front of the real OpenSearch): it indexes, and a wrong password or an unknown CA
fails at start with a message that names the cause, and never shows a secret."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import ExternalBroker
from sink_harness import Search, log_records, sink, stop, wait_for

pytest.importorskip("opensearchpy")

N = 200


@pytest.fixture
def search(opensearch: Any) -> Iterator[Search]:
    client = Search(opensearch.url)  # straight to the node, for the assertions
    client.delete("sinktls-*")
    yield client
    if opensearch.is_running:
        client.delete("sinktls-*")


def args(kafka_broker: ExternalBroker, topic: str, url: str, *extra: str) -> list[str]:
    return ["--topic", topic, "--group", f"g-{uuid.uuid4().hex[:8]}", "--bootstrap-servers",
            kafka_broker.bootstrap, "--to", "opensearch", "--hosts", url, "--index",
            "sinktls-%Y.%m.%d", "--fallback-index", "sinktls-unrouted", *extra]


def test_https_with_basic_auth_from_the_environment(
        kafka_broker: ExternalBroker, topic: str, opensearch_tls: Any, search: Search) -> None:
    log_records(kafka_broker.bootstrap, topic, N)
    process = sink(*args(kafka_broker, topic, opensearch_tls.url, "--ca-certs",
                         str(opensearch_tls.ca_file), "--username", opensearch_tls.username),
                   env={"KAFKALOG_SINK_PASSWORD": opensearch_tls.password})
    wait_for(lambda: search.count("sinktls-*") >= N, process=process, what=f"{N} documents")
    out = stop(process)
    assert search.count("sinktls-*") == N
    assert opensearch_tls.password not in out


def test_an_api_key_from_a_file(kafka_broker: ExternalBroker, topic: str, opensearch_tls: Any,
                                search: Search, tmp_path: Path) -> None:
    log_records(kafka_broker.bootstrap, topic, N)
    key_file = tmp_path / "api-key"
    key_file.write_text(opensearch_tls.api_key + "\n")
    process = sink(*args(kafka_broker, topic, opensearch_tls.url, "--ca-certs",
                         str(opensearch_tls.ca_file), "--api-key-file", str(key_file)))
    wait_for(lambda: search.count("sinktls-*") >= N, process=process, what=f"{N} documents")
    out = stop(process)
    assert opensearch_tls.api_key not in out


def test_a_wrong_password_fails_at_start_naming_the_cause(
        kafka_broker: ExternalBroker, topic: str, opensearch_tls: Any) -> None:
    process = sink(*args(kafka_broker, topic, opensearch_tls.url, "--ca-certs",
                         str(opensearch_tls.ca_file), "--username", opensearch_tls.username),
                   env={"KAFKALOG_SINK_PASSWORD": "not-the-password-42"})
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 3, out
    assert "password" in out and "401" in out
    assert "not-the-password-42" not in out


def test_an_unknown_ca_fails_at_start_naming_the_cause(
        kafka_broker: ExternalBroker, topic: str, opensearch_tls: Any) -> None:
    process = sink(*args(kafka_broker, topic, opensearch_tls.url, "--ca-certs",
                         str(opensearch_tls.other_ca_file), "--username",
                         opensearch_tls.username),
                   env={"KAFKALOG_SINK_PASSWORD": opensearch_tls.password})
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 3, out
    assert "TLS verification failed" in out
    assert opensearch_tls.password not in out
