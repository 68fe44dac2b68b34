"""What every transport shares: the record shape, the ``Transport`` protocol, and the bounds
of a wait. No Kafka client is imported here."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from kafkalog.errors import TransportError

# One record as the transport sees it: (value, key).
OutRecord = tuple[bytes, "bytes | None"]

# Waits are cut into slices this long so that interrupt() takes effect promptly.
WAIT_SLICE_S = 0.1


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
