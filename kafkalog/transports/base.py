"""What every transport shares: the record shape, the ``Transport`` protocol, and the base class
that keeps the state and the waits both transports have. No Kafka client is imported here."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol

from kafkalog.config import PipelineConfig
from kafkalog.errors import TransportError
from kafkalog.transports.security import login_of

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


class BaseTransport:
    """The part of a :class:`Transport` that does not depend on the client library.

    It holds where records go (the handler's topic, the partition it pins), who this client
    logs in as, the clock, and the flag :meth:`interrupt` sets; and it cuts every wait into
    slices of ``WAIT_SLICE_S`` so that the flag is noticed promptly. A transport adds
    ``send``, ``close`` and ``disown``, and sets up its own state in :meth:`_setup`.
    """

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
        self._interrupted = threading.Event()
        #: Set by the worker while Kafka is known to be down and a caller waits for records:
        #: a send still waiting to connect (no record on the wire) returns at once, its records
        #: retriable, so that the worker can spill them. The worker clears it.
        self.hurried = threading.Event()
        # Who this client is, for messages about refusals (never the password).
        self._login = login_of(config)
        self._setup()

    def _setup(self) -> None:
        """Set up the transport's own state (its client library's); the last step of
        ``__init__``, so that a transport need not repeat the constructor's signature."""

    def interrupt(self) -> None:
        """Cut short the ``send`` in progress and any later ones (used at close)."""
        self._interrupted.set()

    def _new_client(self) -> None:
        """Tell the owner that a new client was built (the pipeline keeps its exit hook ahead
        of the one the client library registers)."""
        if self._on_new_client is not None:
            self._on_new_client()

    def _destination(self, topic: str | None) -> tuple[str, int | None]:
        """The topic of a send to ``topic`` (None: the handler's) and the partition pinned for
        it (None: the partitioner picks). The ``partition`` option pins the handler's topic only.
        """
        if topic is None:
            return self._topic, self._partition
        return topic, None

    def _slices(
        self, deadline: float, *, interruptible: bool = True, slice_s: float = WAIT_SLICE_S
    ) -> Iterator[float]:
        """The lengths of the waits that fill the time until ``deadline``, each at most
        ``slice_s``; they end early once :meth:`interrupt` is called (if ``interruptible``).

        The caller checks between slices whether it still needs to wait.
        """
        clock, interrupted = self._clock, self._interrupted
        while not (interruptible and interrupted.is_set()):
            remaining = deadline - clock()
            if remaining <= 0:
                return
            yield min(remaining, slice_s)

    def _wait(self, event: threading.Event, timeout_s: float, *, hurry: bool = False) -> bool:
        """Wait up to ``timeout_s`` for ``event`` (less if interrupted, or if ``hurry`` and
        :attr:`hurried` is set); whether it is set."""
        for wait_s in self._slices(self._clock() + timeout_s):
            if event.is_set() or (hurry and self.hurried.is_set()):
                break
            event.wait(wait_s)
        return event.is_set()
