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
from kafkalog.errors import ConfigError, TransportError

# One record as the transport sees it: (value, key).
OutRecord = tuple[bytes, "bytes | None"]

# Upper bound on how long send() may wait for a topic's metadata on the worker thread. Beyond
# it the worker's own backoff takes over, and close() stays prompt.
MAX_BLOCK_MS = 1000
# How long one send() waits for a bootstrap in progress before the worker backs off and retries.
CONNECT_WAIT_S = 1.0
# Waits are cut into slices this long so that interrupt() takes effect promptly.
WAIT_SLICE_S = 0.1

_COMPRESSION_LIBS = {"lz4": "lz4", "zstd": "zstandard", "snappy": "snappy"}


class Transport(Protocol):
    """What the worker needs from a way of sending records to Kafka."""

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        """Send ``records`` (to ``topic``, default the handler's) and wait up to ``timeout_s``.

        One result per record, in order: None if acknowledged, else the error.
        """

    def close(self, timeout_s: float) -> None:
        """Release connections and threads; wait at most ``timeout_s``."""

    def interrupt(self) -> None:
        """Make a ``send`` that is waiting return now, its unacknowledged records retriable."""

    def disown(self) -> None:
        """In a forked child: forget the parent's connections without touching them."""


def classify(exc: BaseException) -> TransportError:
    """Turn any client exception into a TransportError, retriable or not, by its type."""
    if isinstance(exc, TransportError):
        return exc
    name = type(exc).__name__
    text = f"{name}: {exc}"
    if isinstance(exc, kafka.errors.KafkaError):
        retriable = bool(type(exc).retriable)
        text = str(exc)  # kafka-python's errors already start with their class name
    else:
        # Socket-level failures can pass again; anything else (TypeError, ValueError from a
        # bad record) will fail the same way every time.
        retriable = isinstance(exc, (OSError, TimeoutError))
    return TransportError(text, retriable=retriable, cause_name=name)


def check_producer_config(config: HandlerConfig) -> None:
    """Reject ``producer_config`` keys that kafka-python does not know, at construction.

    Otherwise a typo would surface only on the worker thread, as every record failing.
    """
    known = set(kafka.KafkaProducer.DEFAULT_CONFIG)
    unknown = sorted(set(config.producer_config) - known)
    if unknown:
        raise ConfigError(
            "producer_config", f"kafka-python does not know {unknown} (see KafkaProducer's docs)"
        )


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
        self._connect: _Connect | None = None
        self._interrupted = threading.Event()
        self._lock = threading.Lock()

    def producer_settings(self, bootstrap_timeout_ms: int) -> dict[str, Any]:
        """The keyword arguments kafkalog gives ``KafkaProducer``."""
        c = self._config
        max_block_ms = min(MAX_BLOCK_MS, c.request_timeout_ms)
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
        """The producer, building it on a helper thread and waiting at most ``timeout_s``.

        kafka-python's constructor blocks until it has bootstrapped. Running it on its own
        thread keeps every call of the worker bounded (so close() is prompt), and lets one
        bootstrap attempt go on across several of the worker's retries instead of restarting.
        """
        if self._producer is not None:
            return self._producer
        with self._lock:
            connect = self._connect
            if connect is None or (connect.done.is_set() and connect.error is not None):
                connect = _Connect(self.producer_settings(self._config.request_timeout_ms))
                self._connect = connect
        # At most CONNECT_WAIT_S per call: the worker's backoff and deadlines apply between.
        if not self._wait(connect.done, min(timeout_s, CONNECT_WAIT_S)):
            raise kafka.errors.KafkaTimeoutError("still connecting to the bootstrap servers")
        if connect.error is not None:
            raise connect.error
        with self._lock:
            self._producer, self._connect = connect.producer, None
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

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        """Send the batch and wait for acknowledgements, up to ``timeout_s``."""
        deadline = self._clock() + timeout_s
        results: list[TransportError | None] = [None] * len(records)
        try:
            producer = self._ensure_producer(timeout_s)
        except Exception as exc:
            err = classify(exc)
            return [err] * len(records)

        futures: list[tuple[int, Any]] = []
        partition = self._partition
        if topic is None:
            topic = self._topic
        else:
            partition = None  # a pinned partition belongs to the main topic
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

        # Wait in slices so that interrupt() is noticed; what is still pending when the time is
        # up is reported as retriable below. flush() can raise on its own (a batch being split
        # and retried): that only ends the slice, the futures say how each record fared.
        first_open = 0
        while not self._interrupted.is_set():
            while first_open < len(futures) and futures[first_open][1].is_done:
                first_open += 1
            remaining = deadline - self._clock()
            if first_open == len(futures) or remaining <= 0:
                break
            with contextlib.suppress(kafka.errors.KafkaError):
                producer.flush(timeout=min(remaining, WAIT_SLICE_S))

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
                broken = True  # after a fatal error kafka-python fails every later batch too
        if broken:
            # Rebuild rather than let a client with stale connections keep retrying on its own:
            # those retries would race the worker's and send duplicates.
            self._discard_producer()
        return results

    def _wait(self, event: threading.Event, timeout_s: float) -> bool:
        deadline = self._clock() + timeout_s
        while not event.is_set() and not self._interrupted.is_set():
            remaining = deadline - self._clock()
            if remaining <= 0:
                break
            event.wait(min(remaining, WAIT_SLICE_S))
        return event.is_set()

    def interrupt(self) -> None:
        """Cut short the ``send`` in progress and any later ones (used at close)."""
        self._interrupted.set()

    def close(self, timeout_s: float) -> None:
        """Flush what the client holds (bounded) and close it."""
        with self._lock:
            producer, self._producer = self._producer, None
            connect, self._connect = self._connect, None
        if connect is not None:
            connect.abandon()
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
        self._connect = None  # its thread did not survive the fork
        self._lock = threading.Lock()
        if producer is not None:
            producer._closed = True  # kafka-python's own "already closed" flag
            producer.close(timeout=0)  # now only unregisters its atexit hook
            _ORPHANS.append(producer)  # keep it alive so __del__ never runs in the child


_ORPHANS: list[Any] = []


class _Connect:
    """One attempt to build a ``KafkaProducer``, running on a daemon thread of its own."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.done = threading.Event()
        self.producer: Any = None
        self.error: BaseException | None = None
        self._abandoned = False
        self._settings = settings
        threading.Thread(target=self._run, name="kafkalog-connect", daemon=True).start()

    def _run(self) -> None:
        try:
            producer = kafka.KafkaProducer(**self._settings)
        except Exception as exc:
            self.error = exc
        else:
            if self._abandoned:  # closed while we were connecting: nobody will use it
                producer.close(timeout=0)
            else:
                self.producer = producer
        finally:
            self.done.set()

    def abandon(self) -> None:
        """The transport closed: close the producer when (if) it arrives."""
        self._abandoned = True
        if self.done.is_set() and self.producer is not None:
            self.producer.close(timeout=0)
