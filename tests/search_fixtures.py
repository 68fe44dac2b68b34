"""Fixtures for tests against a real OpenSearch 2.19.6 (imported by tests/conftest.py).

``opensearch`` is one node for the whole session (started on first use, so tests that do not
ask for it never need Java 17). Each test gets it running: a test may stop it, kill it or
restart it (an outage), and the next test finds it up again, with the same port and data.
``opensearch_tls`` is the same node behind HTTPS with basic auth or an API key (a proxy: see
``search/tlsproxy.py``), for the sink's security tests.

Without a usable Java or the jars (no Maven, no network on first use) the tests that ask for
OpenSearch skip, saying why, on a developer's machine; under ``CI=true`` they fail instead,
since a silently skipped suite would hide a broken set-up.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NoReturn

import pytest
from broker.tls import make_pki
from search.opensearch import (
    ArtifactError,
    JavaNotFoundError,
    OpenSearchNode,
    ensure_artifacts,
    find_java,
)
from search.tlsproxy import TlsAuthProxy

__all__ = [
    "opensearch",
    "opensearch_artifacts",
    "opensearch_index",
    "opensearch_session",
    "opensearch_tls",
    "opensearch_tls_session",
]


def _unavailable(reason: str) -> NoReturn:
    message = f"OpenSearch is not available: {reason}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{message} (CI=true: failing instead of skipping)", pytrace=False)
    print(f"\n{message}")  # shown with -s or -rs; the skip reason says it too
    pytest.skip(message)


@pytest.fixture(scope="session")
def opensearch_artifacts() -> Path:
    """The directory of OpenSearch's ``lib/`` and ``modules/`` (downloaded on first use)."""
    try:
        find_java()
        return ensure_artifacts()
    except (JavaNotFoundError, ArtifactError) as exc:
        # Skipped or failed outside the except block: no "during handling" chain to read.
        reason = str(exc)
    _unavailable(reason)


@pytest.fixture(scope="session")
def opensearch_session(opensearch_artifacts: Path) -> Iterator[OpenSearchNode]:
    """The session's node (started on first use); prefer ``opensearch``, which restarts it."""
    node = OpenSearchNode()
    node.start()
    try:
        yield node
    finally:
        node.close()


@pytest.fixture
def opensearch(opensearch_session: OpenSearchNode) -> OpenSearchNode:
    """The session's running node: ``.url``, ``.stop()``, ``.start()``, ``.restart()``.

    If an earlier test left it stopped (an outage test that failed half-way), it is started
    again here, on the same port with the same data.
    """
    if not opensearch_session.is_running:
        opensearch_session.start()
    return opensearch_session


@pytest.fixture
def opensearch_index(opensearch: OpenSearchNode, request: pytest.FixtureRequest) -> Iterator[str]:
    """A unique index name for this test (not created); the index is deleted afterwards."""
    test = re.sub(r"[^a-z0-9_-]", "-", request.node.name.lower())[:60].strip("-_")
    name = f"kafkalog-{test}-{uuid.uuid4().hex[:8]}"
    yield name
    if opensearch.is_running:
        opensearch.request("DELETE", f"/{name}*")


@pytest.fixture(scope="session")
def opensearch_tls_session(
    opensearch_session: OpenSearchNode, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[TlsAuthProxy]:
    """The session's HTTPS endpoint in front of the session's node; prefer ``opensearch_tls``."""
    pki = make_pki(tmp_path_factory.mktemp("opensearch-tls"))
    proxy = TlsAuthProxy(
        lambda: opensearch_session.url,
        cert_file=pki.broker_cert, key_file=pki.broker_key,
        ca_file=pki.ca_cert, other_ca_file=pki.other_ca_cert,
    )  # fmt: skip
    with proxy:
        yield proxy


@pytest.fixture
def opensearch_tls(
    opensearch: OpenSearchNode, opensearch_tls_session: TlsAuthProxy
) -> TlsAuthProxy:
    """HTTPS on 127.0.0.1 with a test CA, in front of the running session node.

    ``.url``, ``.ca_file`` (the CA to trust), ``.other_ca_file`` (a CA that signed nothing
    here), ``.username`` and ``.password`` (basic auth), ``.api_key`` (for
    ``Authorization: ApiKey <api_key>``). Anything else gets 401.
    """
    return opensearch_tls_session
