"""The OpenSearch output with a stand-in client: the bulk body, item results, error types."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sink_fakes import record

from kafkalog.errors import ConfigError
from kafkalog.sink import sink_config
from kafkalog.sink.documents import Preparer
from kafkalog.sink.outputs import Refused, Retry, StoreSetupError, StoreUnavailableError
from kafkalog.sink.outputs.opensearch import OpenSearchOutput
from kafkalog.sink.routing import IndexPattern
from kafkalog.sink.template import index_template

opensearchpy = pytest.importorskip("opensearchpy")
BASE = {"topics": ["t"], "group": "g", "to": "opensearch"}


class Indices:
    def __init__(self, exists: bool) -> None:
        self.exists = exists
        self.put: list[tuple[str, Any]] = []

    def exists_index_template(self, name: str) -> bool:
        return self.exists

    def put_index_template(self, name: str, body: Any) -> None:
        self.put.append((name, body))


class Client:
    def __init__(self, *, response: Any = None, error: Exception | None = None,
                 template_exists: bool = False, info_error: Exception | None = None) -> None:
        self.response = response if response is not None else {"errors": False}
        self.error = error
        self.info_error = info_error
        self.indices = Indices(template_exists)
        self.bodies: list[bytes] = []

    def info(self) -> dict[str, Any]:
        if self.info_error:
            raise self.info_error
        return {"version": {"number": "2.19.6"}}

    def bulk(self, *, body: bytes, filter_path: str) -> Any:
        self.bodies.append(body)
        if self.error:
            raise self.error
        return self.response


def output(client: Client, template: bool = True) -> OpenSearchOutput:
    body = index_template(["logs-*", "unrouted"], "default") if template else None
    return OpenSearchOutput(client, template=body, template_name="kafkalog",
                            hosts=["http://127.0.0.1:9200"])


def docs() -> list:
    values = [b'{"id":"a","app":"shop","message":"x"}', b'{"message":"no id"}']
    return Preparer(IndexPattern("logs-{app}", "unrouted"), "index").prepare(
        [record(n, v) for n, v in enumerate(values)])


def test_the_bulk_body_is_index_actions_and_the_records_own_bytes() -> None:
    client = Client()
    assert output(client).write(docs()) == [None, None]
    (body,) = client.bodies
    assert body == (b'{"index":{"_index":"logs-shop","_id":"a"}}\n'
                    b'{"id":"a","app":"shop","message":"x"}\n'
                    b'{"index":{"_index":"unrouted","_id":"logs-0-1"}}\n'
                    b'{"message":"no id"}\n')


def test_items_are_stored_retried_or_refused_by_their_status() -> None:
    response = {"errors": True, "items": [
        {"index": {"status": 429, "error": {"type": "es_rejected_execution_exception",
                                            "reason": "queue full"}}},
        {"index": {"status": 400, "error": {"type": "mapper_parsing_exception",
                                            "reason": "failed to parse field [n]"}}},
    ]}  # fmt: skip
    results = output(Client(response=response)).write(docs())
    assert results == [Retry("429 es_rejected_execution_exception: queue full"),
                       Refused("400 mapper_parsing_exception: failed to parse field [n]")]


@pytest.mark.parametrize("error", [
    opensearchpy.ConnectionError("N/A", "refused", Exception()),
    opensearchpy.TransportError(503, "unavailable", {}),
    opensearchpy.TransportError(429, "too many requests", {}),
])  # fmt: skip
def test_a_failed_request_is_store_unavailable_named_by_type_not_text(error: Exception) -> None:
    with pytest.raises(StoreUnavailableError) as caught:
        output(Client(error=error)).write(docs())
    assert type(error).__name__ in str(caught.value)
    assert "refused" not in str(caught.value) and "unavailable" not in str(caught.value)


def test_the_template_is_installed_only_if_missing() -> None:
    missing, present = Client(), Client(template_exists=True)
    output(missing).start()
    output(present).start()
    output(Client(), template=False).start()
    (name, body), = missing.indices.put
    assert name == "kafkalog" and body["index_patterns"] == ["logs-*", "unrouted"]
    props = body["template"]["mappings"]["properties"]
    assert (props["@timestamp"]["type"], props["level"]["type"], props["message"]["type"]) == (
        "date", "keyword", "text")
    assert present.indices.put == []


@pytest.mark.parametrize(("error", "cause"), [
    (opensearchpy.AuthenticationException(401, "unauthorized", {}), "password"),
    (opensearchpy.SSLError("N/A", "certificate verify failed", Exception()), "TLS"),
    (opensearchpy.ConnectionError("N/A", "refused", Exception()), "cannot connect"),
])  # fmt: skip
def test_a_store_that_cannot_be_used_fails_at_start_naming_the_cause(error: Exception,
                                                                     cause: str) -> None:
    with pytest.raises(StoreSetupError, match=cause):
        output(Client(info_error=error)).start()


def test_secrets_come_from_the_environment_or_a_file_and_never_show(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    monkeypatch.setenv("KAFKALOG_SINK_PASSWORD", "s3cret-pw")
    config = sink_config({**BASE, "username": "admin"})
    out = OpenSearchOutput.from_config(config)
    connection = out._client.transport.connection_pool.connections[0]
    assert connection.headers["authorization"] == "Basic " + base64.b64encode(
        b"admin:s3cret-pw").decode()
    assert "s3cret-pw" not in repr(config) + repr(out)
    key_file = tmp_path / "key"
    key_file.write_text("id:key\n")
    monkeypatch.delenv("KAFKALOG_SINK_PASSWORD")
    out = OpenSearchOutput.from_config(sink_config({**BASE, "api_key_file": str(key_file)}))
    connection = out._client.transport.connection_pool.connections[0]
    assert connection.headers["authorization"] == "ApiKey " + base64.b64encode(
        b"id:key").decode()


def test_a_user_name_without_a_password_is_refused_at_start() -> None:
    with pytest.raises(ConfigError) as caught:
        OpenSearchOutput.from_config(sink_config({**BASE, "username": "admin"}))
    assert caught.value.option == "username"
