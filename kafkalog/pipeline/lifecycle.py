"""The process-wide lifecycle of pipelines: the live registry, exit, and fork.

One module owns it all, so that the handler, the file agent and users' own pipelines behave
alike:

- **Exit.** An ``atexit`` hook closes every live pipeline, then waits for the workers still
  draining (closed while logging's lock was held, say by ``dictConfig``). It is kept ahead of
  kafka-python's own exit hooks, which would close the clients with records still to send.
- **multiprocessing children** leave with ``os._exit``, which skips ``atexit``: a
  ``multiprocessing`` finaliser closes their pipelines instead.
- **Fork.** In a forked child every pipeline forgets the parent's queue, threads, connections
  and spill files, and starts afresh; the parent delivers what it had queued.
"""

from __future__ import annotations

import atexit
import logging
import multiprocessing.util as mp_util
import os
import time
import weakref
from typing import Protocol


class Managed(Protocol):
    """What the lifecycle needs of a pipeline."""

    def close(self) -> None:
        """Deliver what is queued within the pipeline's bound, then stop."""

    def reset_after_fork(self) -> None:
        """In a forked child: drop the parent's state without touching it; start clean."""


class Draining(Protocol):
    """A worker that was told to stop and may still be delivering."""

    @property
    def stop_deadline(self) -> float:
        """When it stops trying to deliver (monotonic clock)."""

    def join(self, timeout_s: float) -> bool:
        """Wait for the thread; True if it has ended."""

    def abort(self) -> None:
        """Stop sending now."""


_LIVE: weakref.WeakSet[Managed] = weakref.WeakSet()
_DRAINING: weakref.WeakSet[Draining] = weakref.WeakSet()


def register(pipeline: Managed) -> None:
    """Close ``pipeline`` at exit (also in a ``multiprocessing`` child) and reset it after a
    fork, until :func:`unregister`."""
    _LIVE.add(pipeline)
    mp_util.register_after_fork(pipeline, _close_at_child_exit)


def unregister(pipeline: Managed) -> None:
    """``pipeline`` is closed: the lifecycle forgets it."""
    _LIVE.discard(pipeline)


def live() -> list[Managed]:
    """The pipelines of this process that are not closed."""
    return list(_LIVE)


def finish(worker: Draining, timeout_s: float) -> None:
    """Wait for a stopping worker; past ``timeout_s``, make it give up what it still holds."""
    if not worker.join(timeout_s):
        worker.abort()
        worker.join(1.0)


def finish_later(worker: Draining) -> None:
    """``worker`` is stopping; the exit hook waits for it (up to its stop deadline)."""
    _DRAINING.add(worker)


def holding_logging_lock() -> bool:
    """True if this thread holds logging's module lock (dictConfig does while it reconfigures).

    Waiting for a worker then could stall every thread that logs, so close() and flush()
    hand the remaining work to the worker and return at once instead.
    """
    is_owned = getattr(getattr(logging, "_lock", None), "_is_owned", None)
    return bool(is_owned()) if callable(is_owned) else False


def keep_exit_hook_first() -> None:
    """Re-register the exit hook so that it runs before the one kafka-python just registered.

    atexit runs hooks in reverse order of registration; every new ``KafkaProducer`` registers
    a hook that closes it within 1 s, which would cut off the records still to be flushed.
    Transports call this each time they build a client.
    """
    atexit.unregister(_exit_hook)
    atexit.register(_exit_hook)


def _exit_hook() -> None:
    """At interpreter exit: close every pipeline, then wait for workers still draining."""
    for pipeline in list(_LIVE):
        pipeline.close()
    for worker in list(_DRAINING):
        finish(worker, max(0.0, worker.stop_deadline - time.monotonic()))


def _close_at_child_exit(pipeline: Managed) -> None:
    mp_util.Finalize(None, pipeline.close, exitpriority=100)


def _after_fork_in_child() -> None:
    for pipeline in list(_LIVE):
        pipeline.reset_after_fork()
    _DRAINING.clear()


atexit.register(_exit_hook)
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
