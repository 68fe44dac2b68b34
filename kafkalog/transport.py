"""The only module that talks to Kafka: a ``Transport`` protocol and its kafka-python version.

The worker hands a transport a batch of encoded records and gets back, for each record, None
(acknowledged) or a :class:`~kafkalog.errors.TransportError` that says whether retrying may help.
The producer is built lazily on the worker thread, so bootstrapping never blocks the
application, and it is thrown away and rebuilt after it fails.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import kafka
import kafka.errors

from kafkalog.config import HandlerConfig
from kafkalog.diagnostics import log
from kafkalog.errors import TransportError

# One record as the transport sees it: (value, key).
OutRecord = tuple[bytes, "bytes | None"]

# Upper bound on how long any one call into kafka-python may block the worker (bootstrap,
# metadata). Beyond it the worker's own backoff takes over, and close() stays prompt.
MAX_BLOCK_CAP_MS = 5000

_COMPRESSION_LIBS = {"lz4": "lz4", "zstd": "zstandard", "snappy": "snappy"}


class Transport(Protocol):
    """What the worker needs from a way of sending records to Kafka."""

    def send(self, records: Sequence[OutRecord], timeout_s: float) -> list[TransportError | None]:
        """Send ``records`` and wait up to ``timeout_s``; one result per record, in order."""

    def close(self, timeout_s: float) -> None:
        """Release connections and threads; wait at most ``timeout_s``."""

    def disown(self) -> None:
        """In a forked child: forget the parent's connections without touching them."""


def classify(exc: BaseException) -> TransportError:
    """Turn any client exception into a TransportError, retriable or not, by its type."""
    if isinstance(exc, TransportError):
        return exc
    name = type(exc).__name__
    if isinstance(exc, kafka.errors.KafkaError):
        retriable = bool(type(exc).retriable)
    else:
        # Socket-level failures can pass again; anything else (TypeError, ValueError from a
        # bad record) will fail the same way every time.
        retriable = isinstance(exc, (OSError, TimeoutError))
    return TransportError(f"{name}: {exc}", retriable=retriable, cause_name=name)


def check_compression_available(codec: str) -> str | None:
    """The name of the missing Python package needed for ``codec``, or None if usable."""
    module = _COMPRESSION_LIBS.get(codec)
    if module is None:
        return None
    try:
        __import__(module)
    except ImportError:
        return {"snappy": "python-snappy", "zstandard": "zstandard"}.get(module, module)
    return None


class KafkaPythonTransport:
    """A :class:`Transport` over ``kafka.KafkaProducer`` (kafka-python)."""

    def __init__(
        self,
        config: HandlerConfig,
        *,
        on_new_client: Callable[[], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = config
        self._topic = config.topic
        self._partition = config.partition
        self._on_new_client = on_new_client
        self._clock = clock
        self._producer: Any = None
        self._lock = threading.Lock()
        self.clients_built = 0

    def producer_settings(self, bootstrap_timeout_ms: int) -> dict[str, Any]:
        """The keyword arguments kafkalog gives ``KafkaProducer``."""
        c = self._config
        max_block_ms = min(MAX_BLOCK_CAP_MS, c.request_timeout_ms)
        settings: dict[str, Any] = {
            "bootstrap_servers": list(c.bootstrap_servers),
            "acks": c.acks,
            "compression_type": None if c.compression_type == "none" else c.compression_type,
            # The worker already lingers and hands over whole batches, then flushes; a second
            # linger inside kafka-python would only add latency.
            "linger_ms": 0,
            "batch_size": c.batch_size,
            "max_request_size": c.max_request_size,
            "request_timeout_ms": c.request_timeout_ms,
            "retry_backoff_ms": c.retry_backoff_ms,
            "max_block_ms": max_block_ms,
            "bootstrap_timeout_ms": bootstrap_timeout_ms,
            # Idempotence keeps per-partition order through kafka-python's internal retries;
            # it needs acks=all, so it follows the acks setting instead of warning about it.
            "enable_idempotence": c.acks == -1,
        }
        if c.client_id:
            settings["client_id"] = c.client_id
        settings.update(c.producer_config)
        return settings

    def _ensure_producer(self, timeout_s: float) -> Any:
        if self._producer is None:
            bootstrap_ms = max(1, min(int(timeout_s * 1000), MAX_BLOCK_CAP_MS))
            self._producer = kafka.KafkaProducer(**self.producer_settings(bootstrap_ms))
            self.clients_built += 1
            if self._on_new_client is not None:
                self._on_new_client()
        return self._producer

    def _discard_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                # timeout=0: abandon what it still holds; the worker resends those records.
                producer.close(timeout=0)
            except Exception:
                log.debug("closing a failed producer", exc_info=True)

    def send(self, records: Sequence[OutRecord], timeout_s: float) -> list[TransportError | None]:
        """Send the batch and wait for acknowledgements, up to ``timeout_s``."""
        deadline = self._clock() + timeout_s
        results: list[TransportError | None] = [None] * len(records)
        try:
            producer = self._ensure_producer(timeout_s)
        except Exception as exc:
            err = classify(exc)
            return [err] * len(records)

        futures: list[tuple[int, Any]] = []
        topic, partition = self._topic, self._partition
        for i, (value, key) in enumerate(records):
            try:
                futures.append((i, producer.send(topic, value=value, key=key, partition=partition)))
            except Exception as exc:
                err = classify(exc)
                if err.retriable:
                    # Missing metadata or a full buffer: the rest would wait and fail the same way.
                    for j in range(i, len(records)):
                        results[j] = err
                    break
                results[i] = err

        if futures:
            # On timeout the futures still pending are reported as retriable below.
            with contextlib.suppress(kafka.errors.KafkaTimeoutError):
                producer.flush(timeout=max(0.0, deadline - self._clock()))

        broken = False
        for i, future in futures:
            if not future.is_done:
                results[i] = TransportError(
                    "KafkaTimeoutError: not acknowledged in time",
                    retriable=True,
                    cause_name="KafkaTimeoutError",
                )
                broken = True
            elif future.failed():
                err = classify(future.exception)
                results[i] = err
                broken = broken or err.retriable
        if broken:
            # Rebuild rather than let a client with stale connections keep retrying on its own:
            # those retries would race the worker's and send duplicates.
            self._discard_producer()
        return results

    def close(self, timeout_s: float) -> None:
        """Flush what the client holds (bounded) and close it."""
        producer, self._producer = self._producer, None
        if producer is not None:
            try:
                producer.close(timeout=max(0.0, timeout_s))
            except Exception:
                log.debug("closing the producer", exc_info=True)

    def disown(self) -> None:
        """In a forked child: drop the parent's producer without flushing or closing its sockets.

        The inherited ``KafkaProducer`` has no sender thread in the child; closing it normally
        would wait for that thread and could write to sockets the parent still uses. Marking it
        closed makes its ``close()`` (called by its atexit hook and ``__del__``) a no-op.
        """
        producer, self._producer = self._producer, None
        if producer is not None:
            producer._closed = True  # kafka-python's own "already closed" flag
            producer.close(timeout=0)  # now only unregisters its atexit hook
            _ORPHANS.append(producer)  # keep it alive so __del__ never runs in the child


_ORPHANS: list[Any] = []
