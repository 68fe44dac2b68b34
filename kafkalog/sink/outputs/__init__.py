"""The stores a sink writes to, behind one interface: :class:`Output`.

An output takes a bulk of :class:`~kafkalog.sink.documents.Document` s and says, for each one,
whether the store has it (``None``), refused it for good (:class:`Refused`, it goes to the
dead-letter topic), or may take it on a retry (:class:`Retry`). A failure of the whole request
(the store down, overloaded, a timeout) raises :class:`StoreUnavailableError`; the bulk is retried
whole. Each output is one module: :mod:`.opensearch`, :mod:`.file`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from kafkalog.errors import KafkalogError
from kafkalog.sink.documents import Document

__all__ = ["ItemResult", "Output", "Refused", "Retry", "StoreSetupError", "StoreUnavailableError"]


@dataclass(frozen=True)
class Refused:
    """The store will never take this document as it is (a mapping conflict, say)."""

    reason: str


@dataclass(frozen=True)
class Retry:
    """The store did not take this document now, and may later (429, a shard not ready)."""

    reason: str


#: One document's fate in a bulk: None (the store has it), Refused, or Retry.
ItemResult = Refused | Retry | None


class StoreUnavailableError(KafkalogError):
    """The whole request failed and may succeed later: connection refused, a timeout, 429 or a
    5xx for the request. ``reason`` names the cause by type or status, never with secrets."""

    retriable = True


class StoreSetupError(KafkalogError):
    """The store cannot be used as configured (wrong password, unknown CA, bad template):
    raised at start, with a message that names the cause."""


class Output(Protocol):
    """A store the sink writes documents to. ``write`` is called from several bulk workers
    at once; an output that cannot take that serialises inside."""

    #: A name for progress and logs, such as ``opensearch`` or ``file``.
    name: str

    def start(self) -> None:
        """Check the store and set it up (template, directory); raises
        :class:`StoreSetupError` with the cause if it cannot be used."""

    def write(self, docs: Sequence[Document]) -> list[ItemResult]:
        """Write ``docs``; one result per document, in order. Raises
        :class:`StoreUnavailableError` if the request failed as a whole."""

    def tick(self) -> None:
        """Called about once a second by the consumer loop, with or without traffic: for
        work due by time (a file older than its rotation age)."""

    def close(self) -> None:
        """Release what the output holds (connections, files)."""
