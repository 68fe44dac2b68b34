"""The life of a kafka-python producer around the sends: its bootstrap on a thread of its own,
the connections that report why they were refused, and dropping it without a flush."""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any

import kafka
import kafka.errors

from kafkalog.diagnostics import quiet_client_logs
from kafkalog.errors import TransportError
from kafkalog.transports.reach import ReachCheck

# Producers a forked child inherited: kept alive so that their __del__ never runs there.
_ORPHANS: list[Any] = []


def abandon(producer: Any) -> None:
    """Stop a kafka-python client now, failing what it still holds instead of waiting for it.

    Its ``close()`` flushes first and, if records are still unacknowledged at the timeout
    (always, with ``timeout=0``), raises before it stops the client's I/O thread. The client
    would then live on, resending its batches by itself (duplicates of the records the worker
    resends), and its ``__del__`` would close it again with a 1 s flush in whichever thread
    dropped the last reference, an application thread included.
    """
    sender = getattr(producer, "_sender", None)
    if sender is not None:
        sender.force_close()  # the I/O thread fails its pending batches and exits
    producer._closed = True  # kafka-python's own "already closed" flag: no more flushing
    producer.close(timeout=0)  # now only unregisters its atexit hook


def orphan(producer: Any) -> None:
    """In a forked child: make the parent's producer inert without touching its sockets.

    It has no sender thread in the child; closing it normally would wait for that thread and
    could write to sockets the parent still uses. Marked closed, its ``close()`` (called by its
    atexit hook and ``__del__``) is a no-op, and it is kept alive for good.
    """
    producer._closed = True  # kafka-python's own "already closed" flag
    producer.close(timeout=0)  # now only unregisters its atexit hook
    _ORPHANS.append(producer)  # keep it alive so __del__ never runs in the child


def watching_client_factory(
    sink: collections.deque[BaseException], is_refusal: Callable[[BaseException], bool]
) -> Callable[..., Any] | None:
    """A ``kafka_client`` factory for kafka-python whose connections report why they failed.

    kafka-python retries a refused TLS handshake or SASL login until its bootstrap times
    out, then raises only ``KafkaTimeoutError``; the refusal itself is logged, not raised.
    This client appends each failure that ``is_refusal`` (by exception type) to ``sink``, so the
    transport can name the cause at once. Its event loop does not warn about slow steps (see
    ``factory``). Built on kafka-python 3's connection manager; with another version it returns
    None and errors are reported as kafka-python raises them.
    """
    try:
        from kafka.net.compat import KafkaNetClient  # noqa: PLC0415
        from kafka.net.manager import KafkaConnectionManager  # noqa: PLC0415
        from kafka.net.selector import NetworkSelector  # noqa: PLC0415
    except ImportError:
        return None

    def record(exc: BaseException) -> None:
        # Only refusals: plain disconnects, far more frequent, must not push them out.
        if is_refusal(exc):
            sink.append(exc)

    class WatchingManager(KafkaConnectionManager):  # type: ignore[misc]
        def get_connection(self, node_id: Any, *args: Any, **kwargs: Any) -> Any:
            conn = super().get_connection(node_id, *args, **kwargs)
            if not getattr(conn, "_kafkalog_watched", False):
                conn._kafkalog_watched = True
                # A refused login can fail the init future as a plain disconnect first;
                # the close future then carries the broker's actual answer.
                conn.init_future.add_errback(record)
                conn.close_future.add_errback(record)
            return conn

    def factory(**configs: Any) -> Any:
        # Off: kafka-python warns when one step of its event loop takes over 0.1 s of wall
        # time, but in an application's process that time is mostly the wait for the GIL
        # while the application's threads run, and the warning would blame kafka-python's
        # loop for it (kafkalog summarised it once a minute under heavy logging).
        net = NetworkSelector(**{**configs, "slow_task_threshold_secs": 0})
        return KafkaNetClient(net=net, manager=WatchingManager(net, **configs), **configs)

    return factory


class ConnectAttempt:
    """One attempt to build a ``KafkaProducer``, running on a daemon thread of its own.

    ``is_refusal`` says, by exception type, which connection failures are TLS, login or
    permission refusals (see :meth:`refusal`).
    """

    def __init__(
        self, settings: dict[str, Any], is_refusal: Callable[[BaseException], bool]
    ) -> None:
        quiet_client_logs()  # its log lines go to kafkalog's summary, not the console
        # Why the servers do not answer, if they do not: tried alongside, for the messages.
        self.reach = ReachCheck(list(settings.get("bootstrap_servers") or ()))
        self.done = threading.Event()
        self.producer: Any = None
        self.error: BaseException | None = None
        self._abandoned = False
        # Orders _run()'s hand-over against abandon(): exactly one of them closes the producer.
        self._lock = threading.Lock()
        self._settings = dict(settings)
        self._refusals: collections.deque[BaseException] = collections.deque(maxlen=4)
        factory = watching_client_factory(self._refusals, is_refusal)
        if factory is not None and "kafka_client" not in self._settings:
            self._settings["kafka_client"] = factory
        try:
            threading.Thread(target=self._run, name="kafkalog-connect", daemon=True).start()
        except RuntimeError as exc:
            # CPython 3.12.0 and 3.12.1 start no thread once the interpreter is exiting, atexit
            # hooks included (3.12.2 allows it again), and kafka-python needs threads. Nothing
            # can be sent from here, but Kafka refused nothing: retriable, so the records are
            # spilled (or counted dropped) as when Kafka is unreachable, never dead-lettered.
            self.error = TransportError(
                f"cannot start a thread to connect to Kafka (interpreter exiting?): {exc}",
                retriable=True, cause_name=type(exc).__name__,
            )
            self.done.set()

    def _run(self) -> None:
        try:
            producer = kafka.KafkaProducer(**self._settings)
        except Exception as exc:
            # kafka-python reports a bootstrap whose every attempt was refused (a TLS
            # certificate, a login) only as a timeout: report the refusal instead.
            self.error = self.refusal() or exc
        else:
            with self._lock:
                abandoned = self._abandoned
                if not abandoned:
                    self.producer = producer
            if abandoned:  # closed while we were connecting: nobody will use it
                producer.close(timeout=0)
        finally:
            self.done.set()

    @property
    def failed(self) -> bool:
        """Whether the attempt is over without a producer (a new one may be started)."""
        return self.done.is_set() and self.error is not None

    def refusal(self) -> BaseException | None:
        """The latest connection failure of this attempt that was a TLS, login or permission
        refusal (judged by exception type), or None."""
        return self._refusals[-1] if self._refusals else None

    def abandon(self) -> None:
        """The transport closed: close the producer when (if) it arrives."""
        with self._lock:  # else _run() could check the flag before it is set, and hand the
            self._abandoned = True  # producer over after this looked for it: never closed
            producer = self.producer
        if producer is not None:
            producer.close(timeout=0)


def watch_topic_errors(producer: Any, sink: dict[str, type[BaseException]]) -> bool:
    """Keep, in ``sink``, the error type of each topic in the producer's metadata responses.

    kafka-python only logs that a topic it waits for is unknown or invalid, then times out;
    the broker's error code per topic (as kafka-python's error type) lets the transport say
    which. Built on kafka-python 3's ``ClusterMetadata``; False if its internals differ.
    """
    metadata: Any = getattr(producer, "_metadata", None)
    update = getattr(metadata, "update_metadata", None)
    if metadata is None or update is None:
        return False

    def update_metadata(response: Any) -> Any:
        try:
            for entry in getattr(response, "topics", None) or ():
                name = getattr(entry, "name", None)
                if isinstance(name, str):
                    sink[name] = kafka.errors.for_code(int(entry.error_code))
        except Exception:  # a response of another shape: no diagnosis, nothing else lost
            sink.clear()
        return update(response)

    metadata.update_metadata = update_metadata
    return True
