"""The OpenSearch test harness itself: the server the sink's tests rely on behaves like one.

It indexes and returns documents, keeps them across a stop and a crash, comes back on the same
port, and runs as an unprivileged user when the suite runs as root. Its HTTPS endpoint lets in
the right password or API key only, and a client that does not trust its CA fails.
"""

from __future__ import annotations

import base64
import json
import os
import pwd
import ssl
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from search.artifacts import _artifact_name
from search.opensearch import OPENSEARCH_VERSION, OpenSearchNode
from search.tlsproxy import TlsAuthProxy


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
    with pytest.raises(urllib.error.URLError) as refused:  # what a client sees in an outage
        opensearch.request("GET", "/", timeout=5)
    assert isinstance(refused.value.reason, ConnectionRefusedError)
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
    opensearch.restart(down_for=0.5)  # the outage helper: down, then up on the same port
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


# --------------------------------------------------------------------------- TLS and auth


def _https(
    proxy: TlsAuthProxy, path: str, *, cafile: Path | None, authorization: str | None
) -> tuple[int, dict[str, Any]]:
    context = ssl.create_default_context(cafile=str(cafile) if cafile else None)
    headers = {"Authorization": authorization} if authorization else {}
    req = urllib.request.Request(proxy.url + path, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30, context=context) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _basic(username: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{username}:{password}".encode()).decode()


def test_tls_endpoint_serves_the_node_to_the_right_password(
    opensearch_tls: TlsAuthProxy,
) -> None:
    assert opensearch_tls.url.startswith("https://127.0.0.1:")
    auth = _basic(opensearch_tls.username, opensearch_tls.password)
    status, body = _https(opensearch_tls, "/", cafile=opensearch_tls.ca_file, authorization=auth)
    assert status == 200
    assert body["version"]["number"] == OPENSEARCH_VERSION


def test_tls_endpoint_takes_the_api_key(opensearch_tls: TlsAuthProxy) -> None:
    status, body = _https(
        opensearch_tls, "/_cluster/health", cafile=opensearch_tls.ca_file,
        authorization=f"ApiKey {opensearch_tls.api_key}",
    )  # fmt: skip
    assert status == 200
    assert body["status"] == "green"


def test_tls_endpoint_refuses_a_wrong_password_or_none(opensearch_tls: TlsAuthProxy) -> None:
    forwarded = opensearch_tls.forwarded
    for authorization in (
        _basic(opensearch_tls.username, opensearch_tls.password + "x"),
        _basic("somebody-else", opensearch_tls.password),
        "ApiKey " + base64.b64encode(b"key:wrong").decode(),
        None,
    ):
        status, body = _https(
            opensearch_tls, "/", cafile=opensearch_tls.ca_file, authorization=authorization
        )
        assert status == 401, authorization
        assert body["error"]["type"] == "security_exception"
    assert opensearch_tls.forwarded == forwarded  # nothing reached the node


def test_tls_endpoint_fails_verification_against_an_unknown_ca(
    opensearch_tls: TlsAuthProxy,
) -> None:
    auth = _basic(opensearch_tls.username, opensearch_tls.password)
    assert opensearch_tls.other_ca_file is not None
    for cafile in (opensearch_tls.other_ca_file, None):  # another CA; the system's CAs
        with pytest.raises(urllib.error.URLError) as info:
            _https(opensearch_tls, "/", cafile=cafile, authorization=auth)
        assert isinstance(info.value.reason, ssl.SSLCertVerificationError)


def test_tls_endpoint_answers_502_while_the_node_is_down_and_recovers(
    opensearch: OpenSearchNode, opensearch_tls: TlsAuthProxy
) -> None:
    auth = _basic(opensearch_tls.username, opensearch_tls.password)
    opensearch.stop()
    status, body = _https(opensearch_tls, "/", cafile=opensearch_tls.ca_file, authorization=auth)
    assert status == 502, body
    opensearch.start()
    status, _ = _https(opensearch_tls, "/", cafile=opensearch_tls.ca_file, authorization=auth)
    assert status == 200


# --------------------------------------------------------------------------- pieces


@pytest.mark.parametrize(
    ("jar", "name"),
    [
        ("netty-codec-http-4.1.135.Final.jar", "netty-codec-http"),
        ("opensearch-2.19.6.jar", "opensearch"),
        ("zstd-jni-1.5.5-5.jar", "zstd-jni"),
        ("HdrHistogram-2.2.2.jar", "HdrHistogram"),
        ("log4j-api-2.25.4.jar", "log4j-api"),
        ("asm-analysis-9.7.jar", "asm-analysis"),
    ],
)
def test_a_jar_is_known_by_its_name_without_the_version(jar: str, name: str) -> None:
    # A module's copy of a jar already in lib/ is dropped by this name (else: jar hell).
    assert _artifact_name(jar) == name


def test_the_cached_modules_hold_no_jar_of_lib(opensearch_artifacts: Path) -> None:
    root = opensearch_artifacts
    in_lib = {_artifact_name(p.name) for p in (root / "lib").glob("*.jar")}
    assert "log4j-core" in in_lib
    for module in (root / "modules").iterdir():
        assert (module / "plugin-descriptor.properties").is_file()
        assert (module / "plugin-security.policy").is_file()
        assert not {_artifact_name(p.name) for p in module.glob("*.jar")} & in_lib, module


def test_opensearch_py_bulk_indexes_through_the_tls_endpoint(
    opensearch_tls: TlsAuthProxy, opensearch_index: str
) -> None:
    # The client the sink uses, configured as a user would: https, a CA file, credentials.
    opensearchpy = pytest.importorskip("opensearchpy")
    helpers = pytest.importorskip("opensearchpy.helpers")
    by_password = opensearchpy.OpenSearch(
        [opensearch_tls.url], http_auth=(opensearch_tls.username, opensearch_tls.password),
        use_ssl=True, verify_certs=True, ca_certs=str(opensearch_tls.ca_file), timeout=30,
    )  # fmt: skip
    actions = ({"_index": opensearch_index, "_id": str(i), "n": i} for i in range(100))
    ok, errors = helpers.bulk(by_password, actions, refresh=True)
    assert (ok, errors) == (100, [])
    by_key = opensearchpy.OpenSearch(
        [opensearch_tls.url], headers={"Authorization": f"ApiKey {opensearch_tls.api_key}"},
        use_ssl=True, verify_certs=True, ca_certs=str(opensearch_tls.ca_file), timeout=30,
    )  # fmt: skip
    assert by_key.count(index=opensearch_index)["count"] == 100
    wrong = opensearchpy.OpenSearch(
        [opensearch_tls.url], http_auth=(opensearch_tls.username, "wrong"),
        use_ssl=True, verify_certs=True, ca_certs=str(opensearch_tls.ca_file), timeout=30,
    )  # fmt: skip
    with pytest.raises(opensearchpy.AuthenticationException):
        wrong.info()
