"""The confluent transport: a :class:`~kafkalog.transports.base.Transport` over librdkafka,
chosen with ``transport="confluent"`` (``pip install 'kafkalog[confluent]'``).

It keeps the contract of the kafka-python transport: the worker hands over a batch, gets one
result per record, and decides about retries and spilling itself. Differences that matter here:

- librdkafka never blocks to bootstrap, so the producer is built directly on the worker thread;
- a record not acknowledged when an attempt ends is *purged* from librdkafka's queues before
  ``send`` returns, so the client can not deliver it on its own later while the worker resends
  it (that race is why the kafka-python transport throws its client away instead);
- librdkafka reports errors as codes: they are classified by code (and its own
  ``retriable()``/``fatal()`` flags), never by message text
  (:mod:`kafkalog.transports.confluent_errors`).

kafkalog's options become librdkafka properties in :mod:`kafkalog.transports.confluent_config`.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Sequence
from typing import Any

import confluent_kafka
from confluent_kafka import KafkaError, KafkaException

from kafkalog.diagnostics import log
from kafkalog.errors import TransportError
from kafkalog.transports.base import WAIT_SLICE_S, BaseTransport, OutRecord
from kafkalog.transports.confluent_config import (
    MANAGED_PROPERTIES,
    SECURITY_PROPERTIES,
    LibrdkafkaLog,
    check_producer_config,
    producer_properties,
)
from kafkalog.transports.confluent_errors import (
    INVALID_TOPIC_CODES,
    RETRIABLE_CODES,
    UNKNOWN_TOPIC_CODES,
    classify,
    classify_error,
    security_error,
)
from kafkalog.transports.confluent_reports import PURGED, Current, Outcome, Report
from kafkalog.transports.errors import TopicMissingError, invalid_topic, not_acknowledged
from kafkalog.transports.reach import NETWORK_KINDS, ReachCheck, summary

# The names this module had before its settings and errors had modules of their own.
__all__ = [
    "MANAGED_PROPERTIES",
    "RETRIABLE_CODES",
    "SECURITY_PROPERTIES",
    "ConfluentTransport",
    "check_producer_config",
    "classify",
    "classify_error",
    "producer_properties",
    "security_error",
]

# How long close() waits for librdkafka to stop its threads before leaving it to finish alone.
_CLOSE_WAIT_S = 1.0
# After a purge, how long send() waits for librdkafka to report on the purged records.
_PURGE_REPORT_WAIT_S = 0.5
# At the end of an attempt, how long records already sent may still be acknowledged.
_IN_FLIGHT_GRACE_S = 0.5
# A send with nothing acknowledged after this long asks the cluster about the topic (once),
# waiting at most _METADATA_WAIT_S: librdkafka would hold records for a missing topic, or while
# no broker answers, until the attempt's end (request_timeout_ms), and say nothing of why.
# kafka-python waits as long for metadata (its max_block_ms) and for a connection.
_STUCK_CHECK_S = 1.0
_METADATA_WAIT_S = 1.0
# How long the worker waits for the servers to be tried when no broker answers.
_REACH_WAIT_S = 0.5


class ConfluentTransport(BaseTransport):
    """A :class:`~kafkalog.transports.base.Transport` over ``confluent_kafka.Producer``
    (librdkafka).

    .. versionadded:: 0.1.0
    """

    def _setup(self) -> None:
        self._producer: confluent_kafka.Producer | None = None
        # The current producer's delivery callbacks, one per position in a batch (see Report).
        self._current = Current()
        self._reports: list[Report] = []
        self._fatal = False
        self._last_client_error: str | None = None
        self._last_client_code: int | None = None
        # Why the cluster does not answer, once a send found that it does not (None: it does).
        self._unreachable: TransportError | None = None
        self._reach: ReachCheck | None = None

    def producer_settings(self) -> dict[str, Any]:
        """The librdkafka properties kafkalog gives the producer (``producer_config`` last)."""
        props = producer_properties(self._config)
        props.update(self._config.producer_config)
        return props

    def _ensure_producer(self) -> confluent_kafka.Producer:
        producer = self._producer
        if producer is None:
            props = self.producer_settings()
            props["logger"] = LibrdkafkaLog()
            props["error_cb"] = self._client_error
            # Only failures reach the per-record callbacks, which spares a Message object and
            # a Python call per delivered record. confluent-kafka implements this itself (it
            # still frees each record's state); librdkafka still counts every record until it
            # is acknowledged, which is how send() knows the silent ones were delivered.
            props["delivery.report.only.error"] = True
            # librdkafka connects in the background: building it never waits for a broker.
            producer = confluent_kafka.Producer(props)
            self._producer = producer
            # New callbacks too: a report from the old producer (being destroyed on another
            # thread) can never land in this one's results.
            self._current = Current()
            self._reports = []
            self._fatal = False
            self._last_client_error = self._last_client_code = None
            # Tried alongside the first connection: why the servers do not answer, if not.
            self._reach = ReachCheck(self._config.bootstrap_servers)
            self._new_client()
        return producer

    def _client_error(self, err: KafkaError) -> None:
        """librdkafka's error callback (served on the worker thread, from poll/flush)."""
        if err.code() == KafkaError._ALL_BROKERS_DOWN and self._last_client_error is not None:
            return  # a summary of failures already seen: keep the one that says why
        self._last_client_error = f"{err.name()}: {err.str()}"
        self._last_client_code = err.code()
        if err.fatal():
            self._fatal = True

    def send(
        self, records: Sequence[OutRecord], timeout_s: float, topic: str | None = None
    ) -> list[TransportError | None]:
        """Send the batch and wait for acknowledgements, up to ``timeout_s``."""
        if not records:
            return []
        deadline = self._clock() + timeout_s
        try:
            producer = self._ensure_producer()
        except Exception as exc:
            # A client that can not be built says nothing about the records: never dead-letter
            # them for it (the settings were checked at construction; a file may have gone).
            err = classify(exc)
            err = TransportError(str(err), retriable=True, cause_name=err.cause_name)
            return [err] * len(records)
        topic, pinned = self._destination(topic)
        partition = -1 if pinned is None else pinned  # -1: librdkafka's partitioner decides
        outcome = Outcome(len(records), topic, self._login)
        current = self._current
        current.outcome = outcome
        stuck: TransportError | None = None  # why the attempt was ended early, if it was
        try:
            held = self._produce(producer, records, topic, partition, outcome)
            # flush() makes librdkafka send at once and serves the failure reports; it waits in
            # slices so that interrupt() is noticed promptly. It returns what librdkafka still
            # holds: 0 means every record has been acknowledged or reported as failed.
            check_at = self._clock() + _STUCK_CHECK_S
            for wait_s in self._slices(deadline):
                if held <= 0:
                    break
                if self._unreachable is not None and self.hurried.is_set():
                    stuck = self._unreachable  # known down, and a caller waits: spill now
                    break
                held = producer.flush(wait_s)
                if held > 0 and self._clock() >= check_at:
                    check_at = float("inf")
                    stuck = self._why_stuck(producer, topic)
                    if stuck is not None:
                        break
            if held > 0:
                # Out of time: take back what was never sent (certainly not delivered), and give
                # what is on the wire a short grace to be acknowledged: a record purged in
                # flight may still have been written, and the worker's resend would duplicate it.
                self._purge(producer, in_flight=False)
                held = self._serve_reports(producer, _IN_FLIGHT_GRACE_S, interruptible=True)
            if held > 0:
                # Take the rest back, so that librdkafka can not deliver it by itself after the
                # worker has decided to resend or spill it.
                held = self._purge(producer, wait_s=_PURGE_REPORT_WAIT_S)
        finally:
            current.outcome = None
        results = outcome.results
        if stuck is not None:
            # Ended early for a known cause: say it for every record without another result.
            results = [stuck if r is None or r is PURGED else r for r in results]
        elif held > 0:
            # librdkafka still holds something after the purge and its grace: a record
            # without a failure report may have been delivered or not. Resending it is the
            # safe side (a possible duplicate, never a loss).
            timeout = self._timeout_error()
            results = [timeout if r is None or r is PURGED else r for r in results]
        elif outcome.purged:
            # Reports that only say "purged": name the client's last error instead (a refused
            # connection, a failed TLS handshake or login).
            timeout = self._timeout_error()
            results = [timeout if r is PURGED else r for r in results]
        elif not any(results):
            # All delivered: an old error no longer applies.
            self._last_client_error = self._last_client_code = None
            self._unreachable = None
        del producer  # so that a discarded producer is destroyed off this thread
        if self._fatal or held > 0:
            # Fatal: the idempotent producer's state is broken for good. Held: librdkafka
            # still has records the worker will resend; destroying it (without a flush) is
            # the one way to be sure it does not deliver them as well.
            self._discard_producer()
        return results

    def _why_stuck(self, producer: confluent_kafka.Producer, topic: str) -> TransportError | None:
        """Nothing acknowledged yet: ask the cluster about ``topic``. The error that ends the
        attempt now (no broker answers; the topic is missing or refused), or None (wait on).

        Judged by librdkafka's error codes: a metadata request that fails at all means no
        broker answered it; an answer carries the topic's own error code.
        """
        try:
            metadata = producer.list_topics(topic, timeout=_METADATA_WAIT_S)
        except KafkaException:
            # A refused certificate or login also leaves the metadata request unanswered:
            # that refusal is the cause, and keeps its own kind of error.
            self._unreachable = self._refusal() or self._not_connected()
            return self._unreachable
        except Exception:
            log.debug("asking for the metadata of %s", topic, exc_info=True)
            return None
        self._unreachable = None
        found = metadata.topics.get(topic)
        err = found.error if found is not None else None
        if not isinstance(err, KafkaError):
            return None  # the topic is there: records are merely slow
        if err.code() in UNKNOWN_TOPIC_CODES:
            return TopicMissingError.on(topic, self._config.bootstrap_servers)
        if err.code() in INVALID_TOPIC_CODES:
            return invalid_topic(topic, err.name())
        return None

    def _not_connected(self) -> TransportError:
        """No broker answers: why, server by server (and librdkafka's last word)."""
        reach = self._reach
        if reach is None or reach.done.is_set():
            # Found before the cluster went away, or never: try the servers again now.
            reach = self._reach = ReachCheck(self._config.bootstrap_servers)
        reach.done.wait(_REACH_WAIT_S)  # a refused port or a bad name is known at once
        findings = reach.findings()
        cause, where = summary(findings)
        named = any(f.kind in NETWORK_KINDS for f in findings)  # else librdkafka may say why
        last = self._last_client_error
        last = f" (last client error: {last})" if last and not named else ""
        return TransportError(f"no broker answers: {where}{last}", retriable=True,
                              cause_name=cause)

    def _produce(
        self,
        producer: confluent_kafka.Producer,
        records: Sequence[OutRecord],
        topic: str,
        partition: int,
        outcome: Outcome,
    ) -> int:
        """Hand ``records`` to librdkafka; return how much it holds (0: nothing was queued).

        A produce() per record with a reused callback measured cheaper than produce_batch()
        with a dict per record. A record librdkafka refuses to queue (its queue is full, the
        record too large) gets its error here and no report later.
        """
        reports = self._reports
        if len(reports) < len(records):
            current = self._current
            reports.extend(Report(current, i) for i in range(len(reports), len(records)))
        produce = producer.produce
        refused = 0
        for (value, key), report in zip(records, reports, strict=False):  # reports may be longer
            try:
                produce(topic, value, key, partition, report)
            except Exception as exc:
                outcome.results[report.index] = classify(exc)
                refused += 1
        return 0 if refused == len(records) else _held(producer)

    def _serve_reports(
        self, producer: confluent_kafka.Producer, wait_s: float, *, interruptible: bool = False
    ) -> int:
        """Serve delivery reports while librdkafka holds something, for up to ``wait_s`` (less
        if ``interruptible`` and interrupt() is called); return what it still holds."""
        end = self._clock() + wait_s
        held = _held(producer)
        for poll_s in self._slices(end, interruptible=interruptible, slice_s=WAIT_SLICE_S / 2):
            if held <= 0:
                break
            producer.poll(poll_s)
            held = _held(producer)
        return held

    def _purge(
        self, producer: confluent_kafka.Producer, *, in_flight: bool = True, wait_s: float = 0.0
    ) -> int:
        """Take every unacknowledged record out of librdkafka and serve their reports.

        Reports of purged records normally come at once; those of records that were in flight
        can lag a little, so this waits up to ``wait_s`` for librdkafka to hold nothing more.
        Returns what it still holds.
        """
        try:
            producer.purge(in_queue=True, in_flight=in_flight, blocking=True)
            producer.poll(0)
            return self._serve_reports(producer, wait_s)
        except Exception:
            log.debug("purging the producer", exc_info=True)
            return _held(producer)

    def _timeout_error(self) -> TransportError:
        refused = self._refusal()
        if refused is not None:
            return refused
        if self._unreachable is not None:
            return self._unreachable  # found by an earlier attempt, and still so
        last = self._last_client_error
        return not_acknowledged("_MSG_TIMED_OUT", f" (last client error: {last})" if last else "")

    def _refusal(self) -> TransportError | None:
        """The client's last error, if it is a TLS, login or ACL refusal (by its code)."""
        last, code = self._last_client_error, self._last_client_code
        if last is None or code is None:
            return None
        return security_error(code, last, topic=self._topic, login=self._login)

    def _discard_producer(self, wait_s: float = 0.0) -> None:
        producer = self._producer
        if producer is None:
            return
        self._purge(producer)
        holder = [producer]
        self._producer = None
        del producer
        _destroy_in_background(holder, wait_s)

    def close(self, timeout_s: float) -> None:
        """Drop what librdkafka still holds (the worker has resolved every record) and stop it."""
        self._discard_producer(min(max(0.0, timeout_s), _CLOSE_WAIT_S))

    def disown(self) -> None:
        """In a forked child: forget the parent's producer without touching it.

        librdkafka's threads do not exist in the child, and destroying the producer there waits
        for them (it hangs). So the child keeps it alive forever: one extra reference that is
        never released, so that neither the garbage collector nor interpreter shutdown
        destroys it.
        """
        producer, self._producer = self._producer, None
        if producer is not None:
            ctypes.pythonapi.Py_IncRef(ctypes.py_object(producer))


def _held(producer: confluent_kafka.Producer) -> int:
    """What librdkafka still holds: records not yet acknowledged or reported, and unserved
    events. A producer that can not say counts as holding something."""
    try:
        return len(producer)
    except Exception:
        return 1


def _destroy_in_background(holder: list[confluent_kafka.Producer], wait_s: float) -> None:
    """Destroy the producer in ``holder`` (its only reference) on a daemon thread.

    Dropping the last reference destroys the client without flushing; ``Producer.close()``
    would first wait, without a time limit, for every record it still holds. Destroying joins
    librdkafka's threads, which can take a while when one is in a blocking call (a DNS lookup),
    so the worker waits at most ``wait_s`` for it.
    """
    thread = threading.Thread(target=holder.clear, name="kafkalog-confluent-close", daemon=True)
    thread.start()
    thread.join(wait_s)
