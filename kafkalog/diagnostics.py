"""kafkalog's own diagnostics: a ``kafkalog`` logger of its own, with rate-limited warnings.

The logger is not part of the logging hierarchy: it writes to stderr, never propagates (so its
reports can not travel back into a KafkaHandler on the root logger; the handler also ignores
the ``kafkalog`` name, as a second guard), and ``dictConfig(disable_existing_loggers=True)``
can not silence it by accident. To route or quieten it, change ``kafkalog.diagnostics.log``.
"""

from __future__ import annotations

import logging
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
