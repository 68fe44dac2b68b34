"""Shared fixtures: real Kafka brokers (and OpenSearch, from search_fixtures) for the tests.

Brokers start lazily, only when a test requests one of these fixtures, so the unit
tests never need Java. Set ``KAFKALOG_TEST_BOOTSTRAP=host:port`` to run against an
already running broker instead; tests that need to kill or restart a broker skip then.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from broker.kraft import KafkaBroker, KafkaCluster, create_topic
from search_fixtures import (  # noqa: F401 (fixtures, found by name)
    opensearch,
    opensearch_artifacts,
    opensearch_index,
    opensearch_session,
    opensearch_tls,
    opensearch_tls_session,
)

EXTERNAL_BOOTSTRAP_ENV = "KAFKALOG_TEST_BOOTSTRAP"
_INTEGRATION_DIR = Path(__file__).resolve().parent / "integration"


@dataclass(frozen=True)
class ExternalBroker:
    """A broker somebody else runs (``KAFKALOG_TEST_BOOTSTRAP``): usable, not killable."""

    bootstrap: str
    managed: bool = False


def _external_bootstrap() -> str | None:
    return os.environ.get(EXTERNAL_BOOTSTRAP_ENV) or None


def _require_managed() -> None:
    if _external_bootstrap():
        pytest.skip(f"{EXTERNAL_BOOTSTRAP_ENV} is set: this test needs a broker it can kill")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test under tests/integration with ``integration``."""
    for item in items:
        if _INTEGRATION_DIR in item.path.resolve().parents:
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def kafka_broker(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[KafkaBroker | ExternalBroker]:
    """The session's broker (started on first use); has ``.bootstrap`` and ``.managed``.

    If it cannot be started the requesting tests ERROR (never skip): a silently
    skipped integration suite would hide a broken setup.
    """
    external = _external_bootstrap()
    if external:
        yield ExternalBroker(external)
        return
    broker = KafkaBroker(tmp_path_factory.mktemp("kafka-session-broker"))
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()


def _topic_name(request: pytest.FixtureRequest) -> str:
    # Legal topic chars only; the test name makes broker logs easy to correlate.
    test = re.sub(r"[^A-Za-z0-9._-]", "-", request.node.name)[:80]
    return f"kafkalog.{test}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def topic(kafka_broker: KafkaBroker | ExternalBroker, request: pytest.FixtureRequest) -> str:
    """A fresh, unique topic with 3 partitions on the session broker."""
    return create_topic(kafka_broker.bootstrap, _topic_name(request), partitions=3)


@pytest.fixture
def fresh_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A started broker of the test's own, free to be stopped, killed and restarted."""
    _require_managed()
    broker = KafkaBroker(tmp_path / "kafka-broker")
    broker.start()
    try:
        yield broker
    finally:
        # Its data is thrown away, so no need for a graceful shutdown.
        broker.stop(kill=True)


@pytest.fixture
def no_auto_create_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A started broker of the test's own with ``auto.create.topics.enable=false``."""
    _require_managed()
    broker = KafkaBroker(tmp_path / "no-auto-create",
                         config={"auto.create.topics.enable": "false"})
    broker.start()
    try:
        yield broker
    finally:
        broker.stop(kill=True)


@pytest.fixture
def kafka_cluster(tmp_path: Path) -> Iterator[KafkaCluster]:
    """A started 3-node KRaft cluster (RF 3, min.insync.replicas 2) of the test's own."""
    _require_managed()
    cluster = KafkaCluster(3, tmp_path / "kafka-cluster")
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.close()


@pytest.fixture(autouse=True)
def _isolated_state_dir(tmp_path_factory: pytest.TempPathFactory,
                        monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point platformdirs' state dir (the default spill_dir) at a temporary directory.

    XDG_STATE_HOME is read by platformdirs on every call, in this process and in the
    subprocesses tests start, so no test writes spill segments into the real home directory.
    """
    state = tmp_path_factory.mktemp("xdg-state")
    monkeypatch.setenv("XDG_STATE_HOME", str(state))
    return state


@pytest.fixture
def logger(request: pytest.FixtureRequest) -> Iterator[logging.Logger]:
    """A logger of the test's own (DEBUG, not propagating); its handlers are closed after."""
    log = logging.getLogger(f"test.{request.node.name}.{uuid.uuid4().hex[:8]}")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    yield log
    for handler in list(log.handlers):
        log.removeHandler(handler)
        handler.close()


@pytest.fixture(params=["kafka-python", "confluent"])
def transport_name(request: pytest.FixtureRequest) -> str:
    """The ``transport`` option: a test taking this runs once with each client library."""
    return str(request.param)


@pytest.fixture
def warnings_heard() -> Iterator[list[str]]:
    """The messages of kafkalog's own diagnostics (its rate-limited warnings) while the test
    runs."""
    from kafkalog import diagnostics  # noqa: PLC0415 - only the tests that ask import it

    heard: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            heard.append(record.getMessage())

    collect = Collect()
    diagnostics.log.addHandler(collect)
    try:
        yield heard
    finally:
        diagnostics.log.removeHandler(collect)


@pytest.fixture
def silent_address() -> Iterator[str]:
    """127.0.0.1:port whose accept backlog is full: a connect there gets no answer, as with an
    unroutable address (which a test may not use: only 127.0.0.1)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    held: list[socket.socket] = []
    for _ in range(8):  # fill the backlog; the first connect that blocks proves it is full
        client = socket.socket()
        client.settimeout(0.3)
        try:
            client.connect(server.getsockname())
        except TimeoutError:
            client.close()
            break
        held.append(client)
    else:
        pytest.skip("the accept backlog never filled on this system")
    yield f"127.0.0.1:{server.getsockname()[1]}"
    for client in held:
        client.close()
    server.close()
