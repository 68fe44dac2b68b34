"""The dead-letter topic: records the store refused for good, or that were not JSON.

A dead letter is a JSON record with the reason, where the original was (topic, partition,
offset, timestamp) and the original value (text, or base64 when it is not UTF-8), keyed as
the original. It holds no setting of the sink, so no secret can end up in it.

The dead letters go through kafkalog's own delivery pipeline (:class:`~kafkalog.pipeline.
Pipeline`), the one producer-side part the sink uses, on purpose: it brings the retries, the
spill to disk while Kafka is away, the security options under the handler's names, and a
truthful outcome per record. :meth:`DeadLetters.send` returns only once every dead letter is
delivered or fsynced in the spill, so the sink commits a refused record's offset only when its
dead letter is safe.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Sequence

import orjson

from kafkalog.config import PipelineConfig
from kafkalog.errors import KafkalogError
from kafkalog.pipeline import Outcome, Pipeline
from kafkalog.pipeline.outcome import OutcomeLedger
from kafkalog.sink.documents import Document

__all__ = ["DeadLetterError", "DeadLetters", "dead_letter"]


class DeadLetterError(KafkalogError):
    """Dead letters could not be made safe in time (Kafka away and the spill full, say);
    the bulk is retried, its offsets not committed."""

    retriable = True


def dead_letter(doc: Document, reason: str) -> bytes:
    """The dead-letter record for ``doc``'s original record."""
    record = doc.record
    value = record.value or b""
    letter: dict[str, object] = {
        "reason": reason,
        "topic": record.topic,
        "partition": record.partition,
        "offset": record.offset,
        "timestamp_ms": record.timestamp_ms,
        "id": doc.doc_id,
    }
    try:
        letter["value"] = value.decode("utf-8")
    except UnicodeDecodeError:
        letter["value"] = base64.b64encode(value).decode("ascii")
        letter["value_encoding"] = "base64"
    return orjson.dumps(letter)


class DeadLetters:
    """Writes dead letters to the topic of ``config`` and waits until they are safe."""

    def __init__(self, config: PipelineConfig, *, wait_s: float = 60.0) -> None:
        self.topic = config.topic
        self._wait_s = wait_s
        self._lock = threading.Lock()
        self._lost: list[range] = []  # numbers reported DROPPED
        # The numbers whose report reached _on_outcome. The pipeline's wait() ends once they
        # are resolved, which can be before their reports are handed to the callback: a
        # dropped letter would then look safe. send() waits for this watermark too.
        self._heard = OutcomeLedger()
        self._pipeline = Pipeline(config=config, on_outcome=self._on_outcome)

    def _on_outcome(self, outcome: Outcome, numbers: range) -> None:
        if outcome is Outcome.DROPPED:
            with self._lock:
                self._lost.append(numbers)
                del self._lost[:-1000]  # only a waiting send() needs them: recent ones
        self._heard.resolve(numbers, outcome)  # after _lost: a send() woken by it sees them

    def send(self, letters: Sequence[tuple[Document, str]]) -> None:
        """Send one dead letter per (document, reason); return once all are safe. Raises
        :class:`DeadLetterError` if one was dropped or not safe within the wait."""
        if not letters:
            return
        numbers = [self._pipeline.submit(dead_letter(doc, reason), doc.record.key)
                   for doc, reason in letters]
        if 0 in numbers:
            raise DeadLetterError(f"dead-letter pipeline refused a record ({self.topic})")
        deadline = time.monotonic() + self._wait_s
        if not (self._pipeline.wait(max(numbers), timeout_s=self._wait_s) and self._heard.wait(
                max(numbers), max(0.0, deadline - time.monotonic()))):
            raise DeadLetterError(f"dead letters not safe within {self._wait_s:.0f} s")
        with self._lock:
            lost = any(n in run for run in self._lost for n in numbers)
        if lost:
            raise DeadLetterError(f"dead letters dropped by the pipeline ({self.topic})")

    def close(self) -> None:
        """Deliver or spill what is queued, and stop the pipeline."""
        self._pipeline.close()
