"""What became of each submitted record: delivered, spilled, dead-lettered or dropped.

Records are numbered as the pipeline accepts them (1, 2, 3...). The :class:`OutcomeLedger`
keeps the highest number up to which every record has an outcome (the *resolved watermark*),
so a producer learns the fate of everything it submitted from one integer, with no future per
record. A producer that needs to know which outcome, record by record (the file agent commits
its offsets from this), passes a callback that hears each outcome once per run of records.

The outcomes are reported truthfully:

- ``DELIVERED``: Kafka acknowledged the record.
- ``SPILLED``: the record is in a spill segment and the fsync covering it succeeded (with
  ``spill_fsync="never"``: it was written; the user chose that).
- ``DEAD_LETTERED``: Kafka refused it for good, and it was kept on the dead-letter topic or in
  a dead-letter segment.
- ``DROPPED``: it is gone: a full queue, the spill's cap or a full disk, a failed fsync, no
  spill to keep it, or the pipeline was closed. A record that the spill drops after it was
  reported ``SPILLED`` is reported again, as ``DROPPED`` (the watermark does not move back).
"""

from __future__ import annotations

import enum
import heapq
import threading
from collections import deque
from collections.abc import Callable, Iterable

from kafkalog.diagnostics import log


class Outcome(enum.Enum):
    """What became of a record (see the module's documentation)."""

    DELIVERED = "delivered"
    SPILLED = "spilled"
    DEAD_LETTERED = "dead_lettered"
    DROPPED = "dropped"


#: Hears ``(outcome, numbers)`` for each run of records resolved together, on the pipeline's
#: worker thread, in no lock. It must be quick and must not submit to the same pipeline.
OutcomeCallback = Callable[[Outcome, range], None]


def runs(numbers: Iterable[int]) -> list[range]:
    """Ascending record numbers as maximal runs of consecutive numbers."""
    if isinstance(numbers, range) and numbers.step == 1:
        return [numbers] if numbers else []  # the usual case: a whole batch, no loop
    out: list[range] = []
    start = stop = -1
    for n in numbers:
        if n == stop:
            stop += 1
            continue
        if stop > start:
            out.append(range(start, stop))
        start, stop = n, n + 1
    if stop > start:
        out.append(range(start, stop))
    return out


class OutcomeLedger:
    """The resolved watermark of a pipeline's records, and the reports for its callback.

    Thread-safe. Resolving is cheap (one heap operation per run, not per record); reports are
    queued and handed to the callback by :meth:`deliver_reports`, which the worker calls, so
    that a callback never runs inside a lock of the queue or the spill.
    """

    def __init__(self, callback: OutcomeCallback | None = None) -> None:
        self._callback = callback
        self._cond = threading.Condition(threading.Lock())
        self._resolved = 0
        # Runs resolved ahead of the watermark, as (start, stop) pairs in a min-heap.
        self._ahead: list[tuple[int, int]] = []
        self._reports: deque[tuple[Outcome, range]] = deque()
        #: Records reported ``SPILLED`` and later dropped by the spill.
        self.dropped_after_spilled = 0

    @property
    def resolved(self) -> int:
        """Every record numbered up to this one has an outcome."""
        return self._resolved

    def resolve(self, numbers: range, outcome: Outcome) -> None:
        """The records ``numbers`` (each resolved exactly once) have ``outcome``."""
        if not numbers:
            return
        with self._cond:
            if numbers.start == self._resolved + 1:
                self._resolved = numbers.stop - 1
            else:
                heapq.heappush(self._ahead, (numbers.start, numbers.stop))
            ahead = self._ahead
            while ahead and ahead[0][0] <= self._resolved + 1:
                self._resolved = max(self._resolved, heapq.heappop(ahead)[1] - 1)
            if self._callback is not None:
                self._reports.append((outcome, numbers))
            self._cond.notify_all()

    def dropped_later(self, numbers: range | None, count: int) -> None:
        """``count`` records already reported ``SPILLED`` are gone after all: report them again,
        as ``DROPPED`` (``numbers`` None: not this pipeline's, e.g. adopted from a dead one)."""
        with self._cond:
            self.dropped_after_spilled += count
            if numbers and self._callback is not None:
                self._reports.append((Outcome.DROPPED, numbers))

    def wait(self, number: int, timeout_s: float | None) -> bool:
        """Wait until every record up to ``number`` is resolved. True if it is."""
        with self._cond:
            return self._cond.wait_for(lambda: self._resolved >= number, timeout_s)

    def deliver_reports(self) -> None:
        """Hand the queued reports to the callback (on the caller's thread, in no lock)."""
        callback = self._callback
        reports = self._reports
        while callback is not None and reports:
            outcome, numbers = reports.popleft()
            try:
                callback(outcome, numbers)
            except Exception:  # the producer's bug must not stop the delivery of records
                log.exception("the pipeline's outcome callback raised; reports go on")
