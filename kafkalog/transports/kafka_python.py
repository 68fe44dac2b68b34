"""The only module that talks to Kafka: a ``Transport`` protocol and its kafka-python version.

The worker hands a transport a batch of encoded records and gets back, for each record, None
(acknowledged) or a :class:`~kafkalog.errors.TransportError` that says whether retrying may help.
The producer is built lazily on the worker thread, so bootstrapping never blocks the
application, and it is thrown away and rebuilt after it fails.
"""

from __future__ import annotations

import bisect
import collections
import contextlib

# socket.getaddrinfo() imports this codec the first time it resolves a host name, and it ran on
# the connect thread. A fork while that thread held the module's import lock (a gunicorn
# --preload master forks its workers right after the app logs its first record) left the lock
# held in the child for good: its own connect thread then waited on it forever. Imported here,
# on the thread that builds the handler, it is loaded before any thread of kafkalog's exists.
import encodings.idna  # noqa: F401
import itertools
import random
import ssl
import threading
import time
from collections.abc import Callable, Sequence
from operator import itemgetter
from typing import Any

import kafka
import kafka.errors
from kafka.partitioner.default import DefaultPartitioner, murmur2
from kafka.producer.producer_batch import ProducerBatch
from kafka.record.memory_records import MemoryRecordsBuilder
from kafka.structs import TopicPartition

from kafkalog.config import PipelineConfig
from kafkalog.diagnostics import log
from kafkalog.errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigError,
    SecurityError,
    TlsVerificationError,
    TransportError,
)
from kafkalog.transports.base import WAIT_SLICE_S, OutRecord
from kafkalog.transports.recordbatch import encode_chunks, record_size

# Upper bound on how long send() may wait for a topic's metadata on the worker thread. Beyond
# it the worker's own backoff takes over, and close() stays prompt.
MAX_BLOCK_MS = 1000
# How long one send() waits for a bootstrap in progress before the worker backs off and retries.
CONNECT_WAIT_S = 1.0

_COMPRESSION_LIBS = {"lz4": "lz4", "zstd": "zstandard", "snappy": "snappy"}


def classify(
    exc: BaseException, *, topic: str | None = None, login: str | None = None
) -> TransportError:
    """Turn any client exception into a TransportError, retriable or not, by its type.

    TLS, login and permission failures become a :class:`~kafkalog.errors.SecurityError`
    whose message names the cause; ``topic`` and ``login`` (who logged in how, never a
    password) make those messages say which topic and which user.
    """
    if isinstance(exc, TransportError):
        return exc
    security = _security_error(exc, topic=topic, login=login)
    if security is not None:
        return security
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


def check_producer_config(config: PipelineConfig) -> None:
    """Reject ``producer_config`` keys that kafka-python does not know, at construction.

    Otherwise a typo would surface only on the worker thread, as every record failing.
    """
    known = set(kafka.KafkaProducer.DEFAULT_CONFIG)
    unknown = sorted(set(config.producer_config) - known)
    if unknown:
        raise ConfigError(
            "producer_config", f"kafka-python does not know {unknown} (see KafkaProducer's docs)"
        )
    check_tls_files(config)


# -- connecting to a secured cluster ----------------------------------------------------------

def security_settings(config: PipelineConfig) -> dict[str, Any]:
    """The kafka-python settings (producer, consumer or admin) for the security options."""
    c = config
    settings: dict[str, Any] = {"security_protocol": c.security_protocol}
    if c.security_protocol in ("SSL", "SASL_SSL"):
        settings["ssl_check_hostname"] = c.ssl_check_hostname
        for name in ("ssl_cafile", "ssl_certfile", "ssl_keyfile"):
            if getattr(c, name) is not None:
                settings[name] = getattr(c, name)
    if c.sasl_mechanism is not None:
        settings["sasl_mechanism"] = c.sasl_mechanism
    if c.sasl_username is not None:
        settings["sasl_plain_username"] = c.sasl_username
    if c.sasl_password is not None:
        settings["sasl_plain_password"] = c.sasl_password.reveal()
    return settings


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password,
    # blocking the thread; this makes such a key fail to load instead.
    return b""


def check_tls_files(config: PipelineConfig) -> None:
    """Load the CA, certificate and key files once at construction, so that a file in the
    wrong format is a :class:`~kafkalog.errors.ConfigError` now, not a failure on every send."""
    if config.security_protocol not in ("SSL", "SASL_SSL"):
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    option = "ssl_cafile"
    try:
        if config.ssl_cafile is not None:
            ctx.load_verify_locations(config.ssl_cafile)
        option = "ssl_certfile" if config.ssl_keyfile is None else "ssl_certfile/ssl_keyfile"
        if config.ssl_certfile is not None:
            password = config.producer_config.get("ssl_password") or _no_password
            ctx.load_cert_chain(config.ssl_certfile, config.ssl_keyfile, password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(option, f"could not be loaded for TLS ({reason})") from None


def _tls_failed(exc: ssl.SSLCertVerificationError, server: str | None) -> TlsVerificationError:
    why = getattr(exc, "verify_message", None) or getattr(exc, "reason", None) or "rejected"
    return TlsVerificationError.failed(str(why), server=server)


_LOGIN_ERRORS = (
    kafka.errors.SaslAuthenticationFailedError,
    kafka.errors.UnsupportedSaslMechanismError,
)


def _security_error(
    exc: BaseException, *, topic: str | None, login: str | None
) -> SecurityError | None:
    """The SecurityError for ``exc`` or the exceptions it was raised from, by type."""
    seen: BaseException | None = exc
    for _ in range(5):  # kafka-python wraps at most a level or two
        if seen is None:
            return None
        if isinstance(seen, ssl.SSLCertVerificationError):
            return _tls_failed(seen, None)
        if isinstance(seen, _LOGIN_ERRORS):
            return AuthenticationError.rejected(type(seen).__name__, login=login)
        if isinstance(seen, kafka.errors.AuthorizationError):
            # Without WRITE on any topic the idempotent producer's id is refused (cluster
            # authorization) before the topic is: the remedy is the same ACL. Outside a send
            # (topic None) which operation was refused is not known here.
            return AuthorizationError.denied(type(seen).__name__, topic=topic, login=login)
        seen = seen.__cause__ or seen.__context__
    return None


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
        config: PipelineConfig,
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
        self._hashes: dict[bytes, int] = {}
        self._whole = False

    @property
    def bulk(self) -> bool:
        """True if the last batch went to kafka-python whole rather than record by record."""
        return self._whole

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
            # kafka-python, like librdkafka, puts at most one batch per partition in a produce
            # request, and each request costs its network thread Python time under the GIL:
            # with 16 KiB batches a tight logging loop made ~1,900 requests per 100k records,
            # with batches of max_request_size 60-90. kafkalog's batch_size stays the worker's
            # trigger (queued bytes that end its linger early), as with the confluent transport.
            "batch_size": c.max_request_size,
            "max_request_size": c.max_request_size,
            # kafka-python's own sensors: kafkalog keeps its stats itself and never reads them,
            # and recording them took ~15% of the network thread's time under the GIL.
            "metrics_enabled": False,
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
        settings.update(security_settings(c))
        settings.update(c.producer_config)
        return settings

    def _classify(self, exc: BaseException, topic: str | None = None) -> TransportError:
        c = self._config
        login = None
        if c.sasl_mechanism is not None:
            login = f"SASL user {c.sasl_username!r} ({c.sasl_mechanism})"
        elif c.ssl_certfile is not None:
            login = f"the client certificate {c.ssl_certfile}"
        return classify(exc, topic=topic or self._topic, login=login)

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
            # A refused certificate or login is known long before the bootstrap gives up.
            failure = connect.refusal()
            if failure is not None:
                raise failure
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
                _abandon(producer)  # the worker resends what it still holds
            except Exception:
                log.debug("abandoning a failed producer", exc_info=True)

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        """Send the batch and wait for acknowledgements, up to ``timeout_s``."""
        deadline = self._clock() + timeout_s
        try:
            producer = self._ensure_producer(timeout_s)
        except Exception as exc:
            err = self._classify(exc, topic)
            return [err] * len(records)
        self._whole = _bulk_usable(producer)
        if self._whole:
            return self._send_bulk(producer, records, deadline, topic)
        return self._send_each(producer, records, deadline, topic)

    def _send_each(
        self, producer: Any, records: Sequence[OutRecord], deadline: float, topic: str | None
    ) -> list[TransportError | None]:
        """The public path: one ``KafkaProducer.send()`` per record."""
        results: list[TransportError | None] = [None] * len(records)
        futures: list[tuple[int, Any]] = []
        partition = self._partition
        if topic is None:
            topic = self._topic
        else:
            partition = None  # a pinned partition belongs to the main topic
        refused = False  # TLS, login or ACL: this client is refused, whatever it sends
        for i, (value, key) in enumerate(records):
            try:
                future = producer.send(topic, value=value, key=key, partition=partition)
                futures.append((i, future))
                if future.is_done and future.failed():
                    # kafka-python hands back a refused topic as a failed future, after
                    # waiting on metadata for each record: stop at the first refusal.
                    err = self._classify(future.exception, topic)
                    if isinstance(err, SecurityError):
                        refused = True
                        for j in range(i + 1, len(records)):
                            results[j] = err
                        break
            except Exception as exc:
                err = self._classify(exc, topic)
                refused = isinstance(err, SecurityError)
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

        broken = refused  # a refused client may hold a fatal state (a refused producer id)
        for i, future in futures:
            if not future.is_done:
                results[i] = TransportError(
                    "KafkaTimeoutError: not acknowledged in time",
                    retriable=True,
                    cause_name="KafkaTimeoutError",
                )
                broken = True
            elif future.failed():
                err = self._classify(future.exception, topic)
                results[i] = err
                broken = True  # after a fatal error kafka-python fails every later batch too
        if broken:
            # Rebuild rather than let a client with stale connections keep retrying on its own:
            # those retries would race the worker's and send duplicates.
            self._discard_producer()
        return results

    def _partition_of(self, key: bytes, partitions: Sequence[int]) -> int:
        """kafka-python's default partitioner for a keyed record: murmur2 of the key."""
        hashes = self._hashes
        h = hashes.get(key)
        if h is None:
            if len(hashes) >= _HASH_CACHE_SIZE:
                hashes.clear()  # keys are mostly few (loggers, tenants) or one-off (request ids)
            h = hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[h % len(partitions)]

    def _group(
        self, producer: Any, records: Sequence[OutRecord], topic: str, pinned: int | None,
        skip: set[int], *, unkeyed_only: bool,
    ) -> tuple[dict[int, list[int]], list[int]]:
        """Record positions by partition, in order; and the positions of unkeyed records.

        Positions in ``skip`` are left out.
        """
        partitions = sorted(producer.partitions_for(topic))  # waits for metadata, bounded
        if pinned is not None:
            if pinned not in partitions:
                raise ValueError(f"Unrecognized partition {pinned} for topic {topic}")
            return {pinned: [i for i in range(len(records)) if i not in skip]}, []
        if unkeyed_only and not skip:  # the default (no key_field): no loop in Python
            return {}, list(range(len(records)))
        groups: dict[int, list[int]] = {}
        unkeyed: list[int] = []
        partition_of = self._partition_of
        for i, (_, key) in enumerate(records):
            if skip and i in skip:
                continue
            if key is None:
                unkeyed.append(i)
            else:
                p = partition_of(key, partitions)
                group = groups.get(p)
                if group is None:
                    groups[p] = [i]
                else:
                    group.append(i)
        return groups, unkeyed

    def _send_bulk(
        self, producer: Any, records: Sequence[OutRecord], deadline: float, topic: str | None
    ) -> list[TransportError | None]:
        """Encode each producer batch in one pass and hand it to kafka-python whole.

        kafka-python's sender still assigns the idempotent sequence, compresses, sends,
        retries and completes each batch; only the per-record ``send()`` bookkeeping is
        skipped: one future per producer batch instead of one per record.
        """
        n = len(records)
        results: list[TransportError | None] = [None] * n
        pinned = self._partition
        if topic is None:
            topic = self._topic
        else:
            pinned = None  # a pinned partition belongs to the main topic
        limit = producer.config["max_request_size"]
        # As send() would: a record over max_request_size fails alone, the rest go on. The
        # handler already cuts values to fit, so first a check in C over all the lengths.
        keys = list(map(itemgetter(1), records))
        unkeyed_only = keys.count(None) == n
        longest = max(map(len, map(itemgetter(0), records)), default=0)
        if not unkeyed_only:
            longest += max((len(k) for k in keys if k is not None), default=0)
        too_big: set[int] = set()
        if record_size(b"", None) + longest > limit:
            too_big = {i for i, (v, k) in enumerate(records) if record_size(v, k) > limit}
        for i in too_big:
            results[i] = self._classify(kafka.errors.MessageSizeTooLargeError(
                f"a record of {len(records[i][0])} bytes is over max_request_size ({limit})"
            ), topic)
        try:
            groups, unkeyed = self._group(producer, records, topic, pinned, too_big,
                                          unkeyed_only=unkeyed_only)
        except Exception as exc:
            err = self._classify(exc, topic)
            if isinstance(err, SecurityError):
                self._discard_producer()
            return [results[i] if i in too_big else err for i in range(n)]

        acc = producer._accumulator
        batch_bytes = acc.config["batch_size"]
        now_ms = int(time.time() * 1000)
        placed: list[tuple[Any, list[int]]] = []  # (kafka-python batch, record positions)
        work = list(groups.items())
        if unkeyed:
            pool = list(producer._metadata.available_partitions_for_topic(topic) or ())
            pool = pool or sorted(producer.partitions_for(topic))
            spread: dict[int, list[int]] = {}
            for run in _runs(records, unkeyed, self._config.batch_size):
                spread.setdefault(random.choice(pool), []).extend(run)
            work += spread.items()
        for p, idx in work:
            start = 0
            chosen = records if len(idx) == n else [records[i] for i in idx]
            tp = TopicPartition(topic, p)
            for chunk in encode_chunks(chosen, batch_bytes):
                placed.append((_append_batch(acc, tp, chunk, now_ms), idx[start:start + chunk[0]]))
                start += chunk[0]
        producer._sender.wakeup()

        # Wait in slices so that interrupt() is noticed; what is still open when the time is up
        # is reported as retriable below.
        trackers = [batch._record_futures for batch, _ in placed]
        while not self._interrupted.is_set():
            trackers = [t for t in trackers if not t.done()]
            remaining = deadline - self._clock()
            if not trackers or remaining <= 0:
                break
            with contextlib.suppress(kafka.errors.KafkaError):
                producer.flush(timeout=min(remaining, WAIT_SLICE_S))

        broken = False
        for batch, idx in placed:
            errors = batch._record_futures.results(lambda exc: self._classify(exc, topic))
            if errors is None:
                continue  # all acknowledged
            broken = True
            for i, error in zip(idx, errors, strict=True):
                results[i] = error
        if broken:
            # As in _send_each: a client that failed may hold stale connections or a fatal
            # state; rebuild it rather than let its own retries race the worker's.
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
                with contextlib.suppress(Exception):
                    _abandon(producer)  # not flushed in time: stop it anyway

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


# Entries of the key -> murmur2 cache before it is emptied.
_HASH_CACHE_SIZE = 4096


def _runs(records: Sequence[OutRecord], positions: list[int], run_bytes: int) -> list[list[int]]:
    """``positions`` cut into consecutive runs of about ``run_bytes`` of values each.

    Each run of unkeyed records goes to a partition picked at random among those with a leader,
    as the sticky partitioners of Kafka's clients switch partition every ``batch.size`` bytes
    (KIP-794); runs that land on the same partition share its producer batches, so a hand-over
    still makes at most one batch per partition until a batch is full.
    """
    if len(positions) == len(records):  # every record is unkeyed: sizes summed in C
        ends = list(itertools.accumulate(map(len, map(itemgetter(0), records))))
    else:
        ends = list(itertools.accumulate(len(records[i][0]) for i in positions))
    runs: list[list[int]] = []
    start = 0
    while start < len(positions):
        # The first position whose running total passes the next run's end (at least one).
        stop = max(bisect.bisect_left(ends, ends[start] - len(records[positions[start]][0])
                                      + run_bytes), start + 1)
        runs.append(positions[start:stop])
        start = stop
    return runs


def _append_batch(acc: Any, tp: TopicPartition, chunk: tuple[int, bytes], timestamp_ms: int) -> Any:
    """Put one producer batch of ``count`` encoded records into kafka-python's accumulator.

    The batch is built as kafka-python's own ``append`` would leave it (see
    :func:`_bulk_supported`), then queued behind the partition's other batches.
    """
    builder = MemoryRecordsBuilder(acc.config["message_version"], acc.config["compression_attrs"],
                                   acc.config["batch_size"])
    _fill(builder, chunk[0], chunk[1], timestamp_ms)
    batch = ProducerBatch(tp, builder)
    batch._record_futures = _Positions(batch.produce_future, chunk[0])
    acc._appends_in_progress.increment()  # so that a forced close aborts this batch too
    try:
        with acc._tp_lock(tp):
            if acc._closed:
                raise kafka.errors.IllegalStateError("RecordAccumulator is closed")
            acc._batches[tp].append(batch)
            acc._incomplete.add(batch)
    finally:
        acc._appends_in_progress.decrement()
    return batch


def _fill(builder: Any, count: int, body: bytes, timestamp_ms: int) -> None:
    """Set a fresh ``MemoryRecordsBuilder`` to hold ``body``: ``count`` records of one time."""
    inner = builder._builder
    inner._buffer += body
    inner._first_timestamp = inner._max_timestamp = timestamp_ms
    inner._last_offset = count - 1
    inner._num_records = count
    builder._next_offset = count


def _bulk_supported() -> bool:
    """Whether this kafka-python's batch builder holds what :func:`_fill` puts in it.

    Checked once, by building the same batch both ways (kafka-python's per-record ``append``
    and :func:`_fill`) and comparing the finished bytes; with a kafka-python whose internals
    differ, the transport keeps to the public per-record ``send()``.
    """
    sample = [(b'{"m":"a"}', b"key"), (b"x" * 300, None), (b"", b""), (b"y" * 20000, b"k2")]
    try:
        ours = MemoryRecordsBuilder(2, 0, 1 << 20)
        _fill(ours, len(sample), encode_chunks(sample, 1 << 20)[0][1], 1_700_000_000_000)
        theirs = MemoryRecordsBuilder(2, 0, 1 << 20)
        for value, key in sample:
            theirs.append(1_700_000_000_000, key, value, [])
        ours.close()
        theirs.close()
        return bytes(ours.buffer()) == bytes(theirs.buffer())
    except Exception:
        log.debug("kafka-python's batch builder is not as expected", exc_info=True)
        return False


_BULK_SUPPORTED: list[bool] = []


def _bulk_usable(producer: Any) -> bool:
    """Whether batches can go to this producer whole: a verified kafka-python, the v2 record
    format, the default partitioner and no transactions or serializers of its own."""
    if not _BULK_SUPPORTED:
        _BULK_SUPPORTED.append(_bulk_supported())
    config = producer.config
    return (
        _BULK_SUPPORTED[0]
        and producer._accumulator.config["message_version"] == 2
        and type(config["partitioner"]) is DefaultPartitioner
        and config.get("transactional_id") is None
        and config.get("key_serializer") is None
        and config.get("value_serializer") is None
    )


class _Positions:
    """Stands in for a producer batch's per-record futures, of which ours has none.

    kafka-python reads them in one place: when the broker finds a batch too large, it splits
    the batch in two and moves each record's future to the new batch with ``rebind``. Here a
    record is a position, created only if it is moved, and the move is written down, so the
    result of every record can still be found, through any number of splits, without a
    future per record.
    """

    __slots__ = ("_count", "_future", "moved")

    def __init__(self, future: Any, count: int) -> None:
        self._future = future
        self._count = count
        self.moved: dict[int, tuple[Any, int]] = {}  # position -> (batch future, index in it)

    def __len__(self) -> int:
        return self._count

    def __getitem__(self, position: int) -> _Moved:
        return _Moved(self, position)

    def _where(self) -> list[tuple[Any, int]]:
        future, moved = self._future, self.moved
        return [moved.get(k, (future, k)) for k in range(self._count)]

    def done(self) -> bool:
        """Whether kafka-python has settled every record of the batch."""
        if not self.moved:
            return bool(self._future.is_done)
        return all(future.is_done for future, _ in self._where())

    def results(
        self, classify: Callable[[BaseException], TransportError]
    ) -> list[TransportError | None] | None:
        """None if every record was acknowledged, else one result per record."""
        if not self.moved:
            outcome = _batch_outcome(self._future, classify)
            if outcome is None:
                return None
            if callable(outcome):
                return [outcome(k) for k in range(self._count)]
            return [outcome] * self._count
        results: list[TransportError | None] = []
        for future, index in self._where():
            outcome = _batch_outcome(future, classify)
            results.append(outcome(index) if callable(outcome) else outcome)
        return results if any(results) else None


class _Moved:
    """One record of a split batch, as kafka-python's ``split_and_reenqueue`` handles it."""

    __slots__ = ("_position", "_positions")

    def __init__(self, positions: _Positions, position: int) -> None:
        self._positions = positions
        self._position = position

    def rebind(self, future: Any, index: int) -> None:
        """The record now is record ``index`` of the batch whose future is ``future``."""
        self._positions.moved[self._position] = (future, index)


def _batch_outcome(
    future: Any, classify: Callable[[BaseException], TransportError]
) -> TransportError | Callable[[int], TransportError] | None:
    """A batch's result: None (acknowledged), one error for all its records, or a function of
    the record's index (the broker refused some records of the batch)."""
    if not future.is_done:
        return TransportError("KafkaTimeoutError: not acknowledged in time", retriable=True,
                              cause_name="KafkaTimeoutError")
    if future.failed():
        return classify(future.exception)
    failures = future.value[2]  # kafka-python completes failed batches this way too
    if failures is None:
        return None
    return lambda index: classify(failures(index))


_ORPHANS: list[Any] = []


def _abandon(producer: Any) -> None:
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


def _watching_client_factory(
    sink: collections.deque[BaseException],
) -> Callable[..., Any] | None:
    """A ``kafka_client`` factory for kafka-python whose connections report why they failed.

    kafka-python retries a refused TLS handshake or SASL login until its bootstrap times
    out, then raises only ``KafkaTimeoutError``; the refusal itself is logged, not raised.
    This client appends each such refusal (by exception type) to ``sink``, so the transport can
    name the cause at once. Built on kafka-python 3's connection manager; with another
    version it returns None and errors are reported as kafka-python raises them.
    """
    try:
        from kafka.net.compat import KafkaNetClient  # noqa: PLC0415
        from kafka.net.manager import KafkaConnectionManager  # noqa: PLC0415
        from kafka.net.selector import NetworkSelector  # noqa: PLC0415
    except ImportError:
        return None

    def record(exc: BaseException) -> None:
        # Only refusals: plain disconnects, far more frequent, must not push them out.
        if _security_error(exc, topic=None, login=None) is not None:
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
        net = NetworkSelector(**configs)
        return KafkaNetClient(net=net, manager=WatchingManager(net, **configs), **configs)

    return factory


class _Connect:
    """One attempt to build a ``KafkaProducer``, running on a daemon thread of its own."""

    def __init__(self, settings: dict[str, Any]) -> None:
        self.done = threading.Event()
        self.producer: Any = None
        self.error: BaseException | None = None
        self._abandoned = False
        self._settings = dict(settings)
        self._refusals: collections.deque[BaseException] = collections.deque(maxlen=4)
        factory = _watching_client_factory(self._refusals)
        if factory is not None and "kafka_client" not in self._settings:
            self._settings["kafka_client"] = factory
        threading.Thread(target=self._run, name="kafkalog-connect", daemon=True).start()

    def _run(self) -> None:
        try:
            producer = kafka.KafkaProducer(**self._settings)
        except Exception as exc:
            # kafka-python reports a bootstrap whose every attempt was refused (a TLS
            # certificate, a login) only as a timeout: report the refusal instead.
            self.error = self.refusal() or exc
        else:
            if self._abandoned:  # closed while we were connecting: nobody will use it
                producer.close(timeout=0)
            else:
                self.producer = producer
        finally:
            self.done.set()

    def refusal(self) -> BaseException | None:
        """The latest connection failure of this attempt that was a TLS, login or permission
        refusal (judged by exception type), or None."""
        return self._refusals[-1] if self._refusals else None

    def abandon(self) -> None:
        """The transport closed: close the producer when (if) it arrives."""
        self._abandoned = True
        if self.done.is_set() and self.producer is not None:
            self.producer.close(timeout=0)
