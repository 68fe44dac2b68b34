"""kafkalog's own diagnostics: a ``kafkalog`` logger of its own, with rate-limited warnings,
which also summarise the Kafka client's log lines (kept off the application's console).

The logger is not part of the logging hierarchy: it writes to stderr, never propagates (so its
reports can not travel back into a KafkaHandler on the root logger; the handler also ignores
the ``kafkalog`` name, as a second guard), and ``dictConfig(disable_existing_loggers=True)``
can not silence it by accident. To route or quieten it, change ``kafkalog.diagnostics.log``.
"""

from __future__ import annotations

import logging
import math
import sys
import threading
import time
from collections.abc import Callable

LOGGER_NAME = "kafkalog"

log = logging.Logger(LOGGER_NAME, logging.INFO)
log.propagate = False
_stderr = logging.StreamHandler(sys.stderr)
_stderr.setFormatter(logging.Formatter("kafkalog: %(levelname)s: %(message)s"))
log.addHandler(_stderr)


class RateLimitedWarnings:
    """Emit at most one warning per key per ``interval_s``, counting the ones held back.

    A broker outage produces the same failure thousands of times a second; the operator needs
    to see it once a minute, with how many times it happened since.
    """

    def __init__(self, interval_s: float = 60.0, clock: Callable[[], float] = time.monotonic):
        self._interval_s = interval_s
        self._clock = clock
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Log ``message % args`` unless ``key`` was warned about recently. True if logged."""
        now = self._clock()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return False
            self._last[key] = now
            held_back = self._suppressed.pop(key, 0)
        if held_back:
            message += " (%d similar warnings suppressed)"
            args = (*args, held_back)
        log.warning(message, *args)
        return True


# -- kafka-python's own log lines ---------------------------------------------------------------

#: kafka-python's top-level logger. Its records never go to a KafkaHandler (the handler skips
#: them); by default they do not reach the application's console either (see below).
CLIENT_LOGGER_NAME = "kafka"
# Where the docs say how to see kafka-python's lines again.
_SHOW_HOW = "see 'kafka-python's own log lines' in docs/troubleshooting.md to show them"
#: How long kafka-python's lines must go on before kafkalog summarises them (seconds).
CLIENT_LOG_PERSIST_S = 5.0
_CLIENT_LOG_RUN_GAP_S = 60.0


class ClientLogSummary(logging.Handler):
    """kafka-python's records at WARNING and above, summarised as kafkalog's own warnings.

    With the broker down kafka-python logs a dozen ERROR lines a second, and one per metadata
    refresh while a topic is missing. kafkalog's worker already names the cause once a minute;
    this keeps kafka-python's lines off the console and says, at most once a minute, how many
    there were and what the latest one said.

    Only lines that go on for ``persist_s`` are summarised: kafka-python logs an ERROR when a
    topic is created on first use, and a transient like that, over within a second or two,
    would put a warning in front of every new user for nothing.
    """

    def __init__(
        self,
        warnings: RateLimitedWarnings | None = None,
        persist_s: float = CLIENT_LOG_PERSIST_S,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(logging.WARNING)
        self._warnings = warnings or RateLimitedWarnings()
        self._persist_s = persist_s
        self._clock = clock
        # The first and the latest line of the current run of lines; a minute with none
        # starts a new run (kafka-python's reconnect backoff spaces its lines out).
        self._first = self._latest = -math.inf

    def emit(self, record: logging.LogRecord) -> None:
        """Count ``record`` into the summary warning (never raises)."""
        now = self._clock()
        if now - self._latest >= _CLIENT_LOG_RUN_GAP_S:
            self._first = now
        self._latest = now
        if now - self._first < self._persist_s:
            return  # maybe a transient: wait until the lines go on
        try:
            self._warnings.warn(
                "client-log", "kafka-python logged %s (%s): %s [%s]",
                record.levelname, record.name, record.getMessage()[:500], _SHOW_HOW,
            )  # fmt: skip
        except Exception:  # a record whose arguments do not format: nothing to summarise
            log.debug("summarising a kafka-python record", exc_info=True)


def _foreign_handlers(logger: logging.Logger) -> list[logging.Handler]:
    return [h for h in logger.handlers
            if not isinstance(h, (logging.NullHandler, ClientLogSummary))]


class _ClientLogs:
    """What kafkalog did to the ``kafka`` logger, so that it can tell and undo it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.summary: ClientLogSummary | None = None
        self.shown = False

    def configured_by_user(self, source: logging.Logger) -> bool:
        """Whether the application set up the ``kafka`` logger or one below it: a level, a
        handler of its own, no propagation, or disabled. kafkalog then leaves them alone."""
        loggers = [source] + [
            found for name, found in list(logging.root.manager.loggerDict.items())
            if name.startswith(CLIENT_LOGGER_NAME + ".") and isinstance(found, logging.Logger)
        ]  # fmt: skip
        ours = self.summary is not None and self.summary in source.handlers
        return any(
            each.level != logging.NOTSET or _foreign_handlers(each) or each.disabled
            or (not each.propagate and not (each is source and ours))
            for each in loggers
        )

    def quiet(self) -> None:
        with self.lock:
            source = logging.getLogger(CLIENT_LOGGER_NAME)
            if self.summary is not None and self.summary not in source.handlers:
                self.shown = True  # somebody took it off (dictConfig does): theirs from now on
            if self.shown or self.configured_by_user(source):
                self.undo(source)
                return
            if self.summary is None:
                self.summary = ClientLogSummary()
            if self.summary not in source.handlers:
                source.addHandler(self.summary)
            source.propagate = False

    def undo(self, source: logging.Logger) -> None:
        """Take kafkalog's summary off ``source`` and give back its propagation."""
        summary, self.summary = self.summary, None
        if summary is None:
            return
        was_ours = summary in source.handlers
        source.removeHandler(summary)
        # A logger left without a handler of its own must propagate, or its records vanish;
        # one the application gave handlers (dictConfig removes ours) keeps what it was given.
        if was_ours or not _foreign_handlers(source):
            source.propagate = True


_client_logs = _ClientLogs()


def quiet_client_logs() -> None:
    """Keep kafka-python's log lines off the application's console, summarised instead.

    Called each time kafkalog builds a kafka-python client. It adds a
    :class:`ClientLogSummary` to the ``kafka`` logger and stops that logger's propagation,
    unless the application configured the ``kafka`` logger (or one below it) itself, or
    called :func:`show_client_logs`. If the application configures it later, the next call
    undoes what this one did.
    """
    _client_logs.quiet()


def show_client_logs() -> None:
    """Let kafka-python's log lines through to the application's handlers again, for good.

    The same as configuring the ``kafka`` logger yourself (a level, a handler), which kafkalog
    also leaves alone.
    """
    with _client_logs.lock:
        _client_logs.shown = True
        _client_logs.undo(logging.getLogger(CLIENT_LOGGER_NAME))
