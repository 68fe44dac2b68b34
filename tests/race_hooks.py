"""Helpers that force a race's interleaving in a unit test, deterministically: another
thread's action is run at the exact point where it would do harm, with no sleep."""

from __future__ import annotations

import threading
from collections.abc import Callable


class HookOnClear(threading.Event):
    """An Event with a hook run once just before the next clear(): a set() by another thread
    that lands between the clearing thread's last check and its clear."""

    def __init__(self) -> None:
        super().__init__()
        self.hook: Callable[[], None] | None = None
        #: How many threads are in wait() now.
        self.waiting = 0

    def clear(self) -> None:
        hook, self.hook = self.hook, None
        if hook is not None:
            hook()
        super().clear()

    def armed(self) -> bool:
        """True until the hook has run."""
        return self.hook is not None

    def wait(self, timeout: float | None = None) -> bool:
        self.waiting += 1
        try:
            return super().wait(timeout)
        finally:
            self.waiting -= 1


class NoticingLock:
    """A lock that sets ``contended`` when a thread has to wait for it: a hook that starts
    another thread's step can then wait until that step is done or blocked by the lock."""

    def __init__(self, contended: threading.Event) -> None:
        self._lock = threading.Lock()
        self._contended = contended

    def __enter__(self) -> None:
        if not self._lock.acquire(blocking=False):
            self._contended.set()
            self._lock.acquire()

    def __exit__(self, *exc: object) -> None:
        self._lock.release()


def run_aside(step: Callable[[], None], settled: threading.Event) -> threading.Thread:
    """Start ``step`` on a thread of its own and wait (bounded) until it is done or waits for
    a :class:`NoticingLock` that sets ``settled``; the thread, to join."""

    def run() -> None:
        try:
            step()
        finally:
            settled.set()

    thread = threading.Thread(target=run, name="race-aside")
    thread.start()
    if not settled.wait(30.0):
        raise AssertionError("the step run aside neither ended nor waited for the lock")
    return thread
