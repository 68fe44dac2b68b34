"""The OpenSearch output: bulk ``index`` requests built from the records' own bytes.

Each document goes in as ``{"index": {"_index": ..., "_id": ...}}`` and the record's bytes, so
a record written twice overwrites itself. The request body is the records' bytes joined, not
re-serialised; the response is asked for only each item's status and error
(``filter_path``), which keeps parsing it cheap.

Errors by type: a connection refused, a timeout, 429 or a 5xx for the whole request raise
:class:`~kafkalog.sink.outputs.StoreUnavailableError` (the bulk is retried); an item with 429 or a
5xx is a :class:`~kafkalog.sink.outputs.Retry`; any other refused item (a 400 mapping
conflict) is :class:`~kafkalog.sink.outputs.Refused`, and goes to the dead-letter topic.

Needs ``opensearch-py`` (``pip install kafkalog[opensearch]``). Elasticsearch 8 and 9 speak the
same bulk API, but only OpenSearch is tested.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from typing import Any

import orjson

from kafkalog.config import Secret
from kafkalog.errors import ConfigError
from kafkalog.sink.config import SinkConfig
from kafkalog.sink.documents import Document
from kafkalog.sink.outputs import ItemResult, Refused, Retry, StoreSetupError, StoreUnavailableError
from kafkalog.sink.secrets import API_KEY_ENV, PASSWORD_ENV, read_secret
from kafkalog.sink.template import index_template

try:
    import opensearchpy
    from opensearchpy import exceptions as os_errors
except ImportError:  # pragma: no cover - the extra is not installed
    opensearchpy = None

__all__ = ["OpenSearchOutput"]

_FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"


def _retriable_status(status: Any) -> bool:
    return isinstance(status, int) and (status == 429 or status >= 500)


class OpenSearchOutput:
    """Writes documents to OpenSearch with the bulk API."""

    name = "opensearch"

    def __init__(self, client: Any, *, template: dict[str, Any] | None, template_name: str,
                 hosts: Sequence[str]) -> None:
        self._client = client
        self._template = template
        self._template_name = template_name
        self._hosts = tuple(hosts)
        self._actions: dict[str, bytes] = {}
        self.template_installed = False

    @classmethod
    def from_config(cls, config: SinkConfig) -> OpenSearchOutput:
        """An output for ``config``'s hosts, TLS and credentials (read now, never shown)."""
        if opensearchpy is None:
            raise ConfigError("to", "the OpenSearch output needs opensearch-py: "
                                    "pip install 'kafkalog[opensearch]'")
        password = read_secret(PASSWORD_ENV, config.password_file, option="password_file")
        api_key = read_secret(API_KEY_ENV, config.api_key_file, option="api_key_file")
        options: dict[str, Any] = {
            "hosts": list(config.hosts),
            "timeout": config.request_timeout_ms / 1000,
            "max_retries": 0,  # the bulk workers retry, with backoff, and pause the consumer
            "verify_certs": True,
            "http_compress": False,
        }
        if config.ca_certs:
            options["ca_certs"] = config.ca_certs
        if config.username:
            if password is None:
                raise ConfigError("username", f"needs a password: ${PASSWORD_ENV} or "
                                              "password_file")
            options["http_auth"] = (config.username, password.reveal())
        elif password is not None and config.password_file:
            raise ConfigError("password_file", "needs a username")
        if api_key is not None:
            options["headers"] = {"Authorization": _api_key_header(api_key)}
        pattern = config.index_pattern()
        template = None
        if config.template:
            template = index_template([pattern.wildcard(), pattern.fallback], config.schema,
                                      config.template_settings)
        return cls(opensearchpy.OpenSearch(**options), template=template,
                   template_name=config.template_name, hosts=config.hosts)

    def start(self) -> None:
        """Check that the store answers and accepts these credentials; install the index
        template unless it exists (or ``--no-template``)."""
        where = ", ".join(self._hosts)
        try:
            self._client.info()
            if self._template is not None and not self._client.indices.exists_index_template(
                    name=self._template_name):
                self._client.indices.put_index_template(name=self._template_name,
                                                        body=self._template)
                self.template_installed = True
        except Exception as exc:
            raise StoreSetupError(f"OpenSearch at {where}: {_setup_cause(exc)}") from None

    def write(self, docs: Sequence[Document]) -> list[ItemResult]:
        """One bulk request for ``docs``; one result per document."""
        body = self._body(docs)
        try:
            response = self._client.bulk(body=body, filter_path=_FILTER_PATH)
        except Exception as exc:
            raise StoreUnavailableError(_request_cause(exc)) from None
        if not response.get("errors"):
            return [None] * len(docs)
        items = response.get("items") or []
        if len(items) != len(docs):
            raise StoreUnavailableError(f"bulk answered {len(items)} items for {len(docs)}")
        return [_item_result(item) for item in items]

    def tick(self) -> None:
        """Nothing is due by time."""

    def close(self) -> None:
        """Close the connections."""
        close = getattr(self._client, "close", None)
        if close is not None:
            close()

    def _body(self, docs: Sequence[Document]) -> bytes:
        actions = self._actions
        parts: list[bytes] = []
        append = parts.append
        dumps = orjson.dumps
        for doc in docs:
            head = actions.get(doc.index)
            if head is None:
                if len(actions) > 10_000:
                    actions.clear()
                head = actions[doc.index] = b'{"index":{"_index":' + dumps(doc.index) + b',"_id":'
            append(head)
            append(dumps(doc.doc_id))
            append(b"}}\n")
            append(doc.source)
            append(b"\n")
        return b"".join(parts)


def _api_key_header(key: Secret) -> str:
    """``ApiKey <base64>``: an ``id:key`` pair is encoded, an encoded key is used as it is."""
    text = key.reveal()
    if ":" in text:
        text = base64.b64encode(text.encode()).decode("ascii")
    return f"ApiKey {text}"


def _item_result(item: dict[str, Any]) -> ItemResult:
    result: dict[str, Any] = next(iter(item.values()), {}) if item else {}
    status = result.get("status")
    if isinstance(status, int) and status < 300:
        return None
    error = result.get("error") or {}
    reason = f"{status} {error.get('type', 'error')}: {error.get('reason', '')}".strip()
    return Retry(reason) if _retriable_status(status) else Refused(reason)


def _status(exc: Exception) -> Any:
    return getattr(exc, "status_code", None)


def _request_cause(exc: Exception) -> str:
    """A failed request's cause, by exception type and status: never its text, which may
    quote the request (and so a record)."""
    status = _status(exc)
    kind = type(exc).__name__
    return f"bulk request failed: {kind}" + (f" (HTTP {status})" if isinstance(status, int)
                                             else "")


def _setup_cause(exc: Exception) -> str:
    """Why the store cannot be used, in the operator's words."""
    if opensearchpy is not None:
        if isinstance(exc, os_errors.SSLError):
            return ("TLS verification failed (unknown CA or wrong host name): check ca_certs "
                    "(--ca-certs)")
        if isinstance(exc, os_errors.AuthenticationException):
            return "the user name or password (or API key) was refused (HTTP 401)"
        if isinstance(exc, os_errors.AuthorizationException):
            return "this user may not do that (HTTP 403): it needs cluster monitor, index " \
                   "template and index write permissions"
        if isinstance(exc, os_errors.ConnectionError):
            return "cannot connect (refused, unreachable or timed out)"
    return _request_cause(exc)
