"""The confluent-kafka (librdkafka) transport, without a broker: bounded, interruptible,
fork-safe, and one result per record in order."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
import threading
import time
from typing import Any, ClassVar

import pytest
from broker.kraft import free_port
from confluent_kafka import KafkaError, KafkaException

from kafkalog.config import HandlerConfig
from kafkalog.transports.confluent import ConfluentTransport


def config(**options: Any) -> HandlerConfig:
    return HandlerConfig.from_options({"topic": "t", "transport": "confluent", **options})


# -- the transport without a broker: bounded, interruptible, fork-safe ---------------------------


def test_send_to_an_unreachable_broker_returns_retriable_errors_in_time() -> None:
    transport = ConfluentTransport(config(bootstrap_servers=f"127.0.0.1:{free_port()}"))
    try:
        started = time.monotonic()
        results = transport.send([(b"a", None), (b"b", b"k")], timeout_s=0.5)
        took = time.monotonic() - started
        assert 0.4 < took < 10.0  # the timeout and the purge's short graces, not more
        assert len(results) == 2
        assert all(r is not None and r.retriable for r in results)
        # Not "purged": the warning names what the client ran into.
        assert re.search(r"last client error: _(TRANSPORT|ALL_BROKERS_DOWN)", str(results[0]))
        # Nothing is left in librdkafka to be sent behind the worker's back.
        producer = transport._producer
        assert producer is not None
        producer.poll(0)  # serve a connection error reported since: len() counts events too
        assert len(producer) == 0
    finally:
        transport.close(1.0)


def test_interrupt_cuts_a_waiting_send_short() -> None:
    transport = ConfluentTransport(config(bootstrap_servers=f"127.0.0.1:{free_port()}"))
    results: list[Any] = []
    sender = threading.Thread(target=lambda: results.extend(transport.send([(b"x", None)], 30)))
    started = time.monotonic()
    sender.start()
    deadline = time.monotonic() + 30
    while transport._producer is None and time.monotonic() < deadline:
        time.sleep(0.01)  # polling for the send to have handed its record over; bounded
    assert transport._producer is not None
    transport.interrupt()
    sender.join(30)
    assert not sender.is_alive()
    assert time.monotonic() - started < 15.0  # well short of the send's 30 s timeout
    assert results and results[0] is not None and results[0].retriable
    transport.close(1.0)


def test_a_producer_that_can_not_be_built_holds_the_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def refuse(_props: Any) -> Any:
        raise KafkaException(KafkaError(KafkaError._INVALID_ARG, "ssl.ca.location: no such file"))

    monkeypatch.setattr("kafkalog.transports.confluent.confluent_kafka.Producer", refuse)
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    results = transport.send([(b"a", None), (b"b", None)], 1.0)
    assert [r is not None and r.retriable for r in results] == [True, True]
    assert results[0] is not None and results[0].cause_name == "_INVALID_ARG"


class SilentProducer:
    """A stand-in for librdkafka that queues everything and never reports on anything."""

    built: ClassVar[list[SilentProducer]] = []

    def __init__(self, _props: Any) -> None:
        self.purged = 0
        SilentProducer.built.append(self)

    def produce(self, *_args: Any) -> None:
        pass

    def flush(self, timeout: float = -1) -> int:
        time.sleep(min(timeout, 0.01))  # stands for librdkafka's wait; bounded
        return 1

    def poll(self, timeout: float = -1) -> int:
        return 0

    def purge(self, **_flags: bool) -> None:
        self.purged += 1

    def __len__(self) -> int:
        return 1


def test_records_librdkafka_never_reports_on_are_retriable_and_its_producer_is_dropped(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("kafkalog.transports.confluent.confluent_kafka.Producer", SilentProducer)
    SilentProducer.built.clear()
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    results = transport.send([(b"a", None), (b"b", b"k")], 0.2)
    assert [r is not None and r.retriable for r in results] == [True, True]
    assert SilentProducer.built[0].purged >= 1
    # It might still deliver them behind the worker's back: the next send uses a new one.
    assert transport._producer is None
    transport.send([(b"c", None)], 0.05)
    assert len(SilentProducer.built) == 2


def test_empty_batch_sends_nothing() -> None:
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    assert transport.send([], 1.0) == []
    assert transport._producer is None


def test_a_forked_child_exits_normally_after_disowning_the_parents_producer() -> None:
    # Destroying an inherited librdkafka client in a child waits for threads that do not exist
    # there; disown() must make sure that never happens, even at interpreter shutdown.
    script = textwrap.dedent(
        f"""
        import os, sys
        from kafkalog.config import HandlerConfig
        from kafkalog.transports.confluent import ConfluentTransport
        config = HandlerConfig.from_options({{
            "topic": "t", "transport": "confluent", "bootstrap_servers": "127.0.0.1:{free_port()}"
        }})
        transport = ConfluentTransport(config)
        transport.send([(b"x", None)], 0.3)
        pid = os.fork()
        if pid == 0:
            transport.disown()
            del transport
            sys.exit(0)
        _, status = os.waitpid(pid, 0)
        transport.close(1.0)
        sys.exit(os.waitstatus_to_exitcode(status))
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)


# -- one result per record, in order: failures land on their own records ------------------------


class ScriptedProducer:
    """A stand-in for librdkafka that delivers every record it queued, except ``fail``.

    ``fail`` maps a record's position in the batch to the error librdkafka reports for it, in
    the dict's order (reports for different partitions come in any order); ``refuse`` maps a
    position to what ``produce()`` raises for it. Like confluent-kafka with
    ``delivery.report.only.error``, it calls back for failures only. With ``hold`` it neither
    acknowledges nor reports anything until a purge, which reports every queued record purged.
    """

    def __init__(self, props: dict[str, Any], *, fail: dict[int, int] | None = None,
                 refuse: dict[int, Exception] | None = None, hold: bool = False) -> None:
        self.props = props
        self.fail = fail or {}
        self.refuse = refuse or {}
        self.hold = hold
        self.queued: dict[int, Any] = {}  # produce() position -> its callback
        self.produced = 0
        self.callbacks: list[Any] = []

    def produce(self, topic: str, value: bytes, key: bytes | None, partition: int,
                callback: Any) -> None:
        position = self.produced
        self.produced += 1
        refused = self.refuse.get(position)
        if refused is not None:
            raise refused
        self.queued[position] = callback
        self.callbacks.append(callback)

    def flush(self, timeout: float = -1) -> int:
        if self.hold:
            return len(self.queued)
        for position, code in self.fail.items():
            callback = self.queued.get(position)
            if callback is not None:
                callback(KafkaError(code), None)
        self.queued.clear()
        self.produced = 0
        return 0

    def poll(self, timeout: float = -1) -> int:
        return 0

    def purge(self, *, in_queue: bool = True, in_flight: bool = True,
              blocking: bool = True) -> None:
        for callback in self.queued.values():
            callback(KafkaError(KafkaError._PURGE_QUEUE), None)
        self.queued.clear()
        self.produced = 0

    def __len__(self) -> int:
        return len(self.queued)


def scripted(monkeypatch: pytest.MonkeyPatch, **script: Any) -> list[ScriptedProducer]:
    built: list[ScriptedProducer] = []

    def build(props: dict[str, Any]) -> ScriptedProducer:
        built.append(ScriptedProducer(props, **script))
        return built[-1]

    monkeypatch.setattr("kafkalog.transports.confluent.confluent_kafka.Producer", build)
    return built


def batch(count: int) -> list[tuple[bytes, bytes | None]]:
    return [(b"record %d" % i, None if i % 2 else b"k") for i in range(count)]


def test_failures_reported_out_of_order_land_on_their_own_records(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Reports of records on different partitions interleave: 4's comes before 1's.
    built = scripted(monkeypatch, fail={4: KafkaError.NOT_ENOUGH_REPLICAS,
                                        1: KafkaError.MSG_SIZE_TOO_LARGE})
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    results = transport.send(batch(6), 5.0)
    assert [r if r is None else (r.cause_name, r.retriable) for r in results] == [
        None, ("MSG_SIZE_TOO_LARGE", False), None, None, ("NOT_ENOUGH_REPLICAS", True), None]
    # Successes are not reported to Python at all: that is what makes a record cheap.
    assert built[0].props["delivery.report.only.error"] is True
    assert transport._producer is built[0]  # nothing held back: the producer is kept


def test_a_record_librdkafka_refuses_to_queue_gets_its_own_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    too_large = KafkaException(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE))
    scripted(monkeypatch, refuse={0: BufferError("Local: Queue full"), 3: too_large},
             fail={2: KafkaError.REQUEST_TIMED_OUT})
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    results = transport.send(batch(5), 5.0)
    assert [r if r is None else (r.cause_name, r.retriable) for r in results] == [
        ("BufferError", True), None, ("REQUEST_TIMED_OUT", True), ("MSG_SIZE_TOO_LARGE", False),
        None]


def test_every_record_refused_at_produce_sends_nothing_and_waits_for_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scripted(monkeypatch, refuse={0: TypeError("bad value"), 1: TypeError("bad value")})
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    started = time.monotonic()
    results = transport.send(batch(2), 30.0)
    assert time.monotonic() - started < 15.0  # not the 30 s a wait for reports would take
    assert [r is not None and not r.retriable for r in results] == [True, True]


def test_a_report_after_send_returned_changes_no_result(monkeypatch: pytest.MonkeyPatch) -> None:
    built = scripted(monkeypatch)
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    first = transport.send(batch(3), 5.0)
    late = built[0].callbacks[1]
    late(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)  # the worker has already acted
    assert first == [None, None, None]
    built[0].fail = {0: KafkaError.NOT_ENOUGH_REPLICAS}
    second = transport.send(batch(2), 5.0)
    late(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
    assert [r is None for r in second] == [False, True]
    assert second[0] is not None and second[0].cause_name == "NOT_ENOUGH_REPLICAS"


def test_delivery_callbacks_are_made_once_per_position_and_anew_for_a_new_producer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A callable per record made each batch tens of thousands of objects for the garbage
    # collector; the same positions reuse the same callbacks instead.
    built = scripted(monkeypatch)
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    transport.send(batch(4), 5.0)
    transport.send(batch(6), 5.0)
    callbacks = built[0].callbacks
    assert len(callbacks) == 10
    assert callbacks[4:8] == callbacks[0:4]
    assert len({id(c) for c in callbacks}) == 6
    # A new producer (after the old one was dropped) never shares callbacks with the old one.
    transport._discard_producer()
    transport.send(batch(2), 5.0)
    assert not {id(c) for c in built[1].callbacks} & {id(c) for c in callbacks}


def test_records_purged_at_the_deadline_name_the_clients_last_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    built = scripted(monkeypatch, hold=True)
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    transport._ensure_producer()
    transport._client_error(KafkaError(KafkaError._TRANSPORT, "Connection refused"))
    results = transport.send(batch(3), 0.2)
    assert all(r is not None and r.retriable and r.cause_name == "_MSG_TIMED_OUT"
               for r in results)
    assert "last client error: _TRANSPORT" in str(results[0])
    # Every record came back purged, so librdkafka holds nothing: the producer is kept.
    assert transport._producer is built[0]


def test_with_records_still_held_a_failure_keeps_its_own_error_and_the_rest_are_resent(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class StuckProducer(ScriptedProducer):
        """Reports one failure, then neither acknowledges nor purges the rest."""

        def flush(self, timeout: float = -1) -> int:
            callback = self.queued.pop(1, None)
            if callback is not None:
                callback(KafkaError(KafkaError.MSG_SIZE_TOO_LARGE), None)
            time.sleep(min(timeout, 0.01))  # stands for librdkafka's wait; bounded
            return len(self.queued)

        def purge(self, **_flags: bool) -> None:
            pass

    built: list[StuckProducer] = []

    def build(props: dict[str, Any]) -> StuckProducer:
        built.append(StuckProducer(props))
        return built[-1]

    monkeypatch.setattr("kafkalog.transports.confluent.confluent_kafka.Producer", build)
    transport = ConfluentTransport(config(bootstrap_servers="127.0.0.1:1"))
    results = transport.send(batch(3), 0.2)
    # Record 1 was refused; 0 and 2 may or may not have been written: resent, never lost.
    assert [r if r is None else (r.cause_name, r.retriable) for r in results] == [
        ("_MSG_TIMED_OUT", True), ("MSG_SIZE_TOO_LARGE", False), ("_MSG_TIMED_OUT", True)]
    assert transport._producer is None  # it could still deliver them: dropped
