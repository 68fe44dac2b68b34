"""What the worker knows about an outage, and what it tells the user about it.

Kafka is *known to be down* once an attempt failed with a retriable error and nothing was
acknowledged since. While it is, a caller that waits for its records (``sync_level``,
``flush()``) has them spilled at once instead of waiting out the retries: the worker skips
attempts, its backoff sleep wakes up, and a send still waiting to connect returns
(the transport's ``hurried`` event). One rate-limited warning per cause says why records wait.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from kafkalog.diagnostics import RateLimitedWarnings
from kafkalog.errors import SecurityError, TransportError
from kafkalog.transports import Transport
from kafkalog.transports.errors import TopicMissingError


class Outage:
    """Whether Kafka is known to be down, for one worker; and its warnings about retries."""

    def __init__(
        self, transport: Transport, warnings: RateLimitedWarnings, *, topic: str, spill: bool
    ) -> None:
        #: The error of the last failed attempt while nothing is acknowledged; None: not down.
        self.down: TransportError | None = None
        #: Wakes the worker's backoff sleep when a caller starts waiting.
        self.nudge = threading.Event()
        # Optional in the Transport protocol (a test double need not have it).
        self._hurried: threading.Event | None = getattr(transport, "hurried", None)
        self._warnings = warnings
        self._topic = topic
        self._kept = " in the spill" if spill else " (up to delivery_timeout_ms)"

    def caller_waits(self) -> None:
        """A caller waits for records while Kafka is down: stop waiting on Kafka for them."""
        self.nudge.set()
        if self._hurried is not None:
            self._hurried.set()  # a send waiting to connect returns: its records spill

    def attempt_starts(self, spill_now: Callable[[], bool]) -> None:
        """Before each attempt; raises the last error instead when ``spill_now()`` (the retry
        policy then gives the batch up to the spill, or the replay sleep spills the queue)."""
        if self._hurried is not None:
            self._hurried.clear()  # before the check: a caller arriving later sets it again
        # Asked only now, after the clear: a caller that set ``hurried`` just before it is seen
        # here, and one that comes later sets it again for the send.
        if spill_now() and self.down is not None:
            raise self.down

    def attempt_ended(self, delivered: int, error: TransportError | None) -> None:
        """After each attempt: ``delivered`` records were acknowledged; ``error`` the retriable
        error of the rest, if any."""
        if delivered:
            self.down = None
        elif error is not None:
            self.down = error

    def warn(self, exc: BaseException) -> None:
        """The rate-limited warning for an attempt that will be retried, by the error's type."""
        if isinstance(exc, TopicMissingError):
            # Not an outage either: somebody has to create the topic (the text says how).
            self._warnings.warn(
                "topic-missing", "%s; records are kept%s and sent once the topic exists",
                exc, self._kept,
            )  # fmt: skip
        elif isinstance(exc, SecurityError):
            # Not an outage: somebody has to fix a CA, a password or an ACL. Say what, and
            # that the records wait for it rather than being dropped.
            self._warnings.warn(
                f"security:{exc.cause_name}",
                "%s; records for topic %r are kept%s and sent once this is fixed",
                exc, self._topic, self._kept,
            )  # fmt: skip
        else:
            self._warnings.warn(
                f"retry:{getattr(exc, 'cause_name', type(exc).__name__)}",
                "cannot deliver to Kafka yet (%s); retrying with backoff",
                exc,
            )
