"""The confluent transport's delivery reports: which send() a librdkafka report belongs to,
and each record's result in it (None until a failure is reported).

Imported only with ``transport="confluent"`` (confluent-kafka is an optional extra).
"""

from __future__ import annotations

from confluent_kafka import KafkaError

from kafkalog.errors import TransportError
from kafkalog.transports.confluent_errors import PURGE_CODES, classify_error

PURGED = TransportError("taken back at the end of the attempt", retriable=True,
                         cause_name="_PURGE_QUEUE")


class Outcome:
    """Results of one send(): None (delivered) unless a delivery callback reports a failure.

    The producer runs with ``delivery.report.only.error``, so librdkafka's successes never reach
    Python; a record with no failure report is delivered once librdkafka holds nothing more.
    """

    __slots__ = ("login", "purged", "results", "topic")

    def __init__(self, count: int, topic: str, login: str | None) -> None:
        self.results: list[TransportError | None] = [None] * count
        self.purged = 0
        self.topic = topic
        self.login = login

    def failed(self, index: int, err: KafkaError | None) -> None:
        if err is None:
            return  # a success: delivered is what results already says
        if err.code() in PURGE_CODES:
            self.results[index] = PURGED  # send() says why: the client's last error
            self.purged += 1
        else:
            self.results[index] = classify_error(err, topic=self.topic, login=self.login)


class Current:
    """Which send() the delivery callbacks of one producer report to (None between sends)."""

    __slots__ = ("outcome",)

    def __init__(self) -> None:
        self.outcome: Outcome | None = None


class Report:
    """The delivery callback of the record at ``index`` of whichever batch is being sent.

    One per position, made once per producer and reused by every send(): a new callable per
    record (and the dict produce_batch() wants) kept tens of thousands of young objects alive
    per batch, and the garbage collector's passes over them cost more than the sending.
    """

    __slots__ = ("current", "index")

    def __init__(self, current: Current, index: int) -> None:
        self.current = current
        self.index = index

    def __call__(self, err: KafkaError | None, _msg: object) -> None:
        outcome = self.current.outcome
        if outcome is not None:  # else a report after send() returned: the worker has acted
            outcome.failed(self.index, err)
