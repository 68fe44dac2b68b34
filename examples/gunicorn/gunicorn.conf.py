"""gunicorn settings for a prefork server whose application logs to Kafka through kafkalog.

One file serves both ways of starting gunicorn::

    gunicorn -c examples/gunicorn/gunicorn.conf.py            # each worker imports the app
    gunicorn -c examples/gunicorn/gunicorn.conf.py --preload  # the master imports it, then forks

kafkalog is fork-safe: a handler built before ``fork()`` (in the master, with ``--preload``)
starts afresh in each worker, with its own queue, thread, Kafka connection and spill files, and
the master keeps delivering only what it logged itself. So no ``post_fork`` hook is needed to
rebuild the handler, as it would be for a handler that holds a socket. What does matter is how
workers end, because a worker's records wait in its memory until its thread sends them:

- a worker that exits normally (SIGTERM, ``max_requests`` recycling, a scale-down with TTOU)
  delivers its queue at exit, within the handler's ``close_timeout_ms``;
- a worker killed with SIGKILL (``timeout`` expired, or ``graceful_timeout`` expired while it
  was still flushing) loses what was only in its memory. Its spilled records are not lost:
  another worker adopts and replays them.

The settings below keep the second case away from logging.
"""

from __future__ import annotations

import logging
import os
from typing import Any

from kafkalog import KafkaHandler

wsgi_app = "app:app"
chdir = os.path.dirname(os.path.abspath(__file__))
bind = os.environ.get("SHOP_BIND", "127.0.0.1:8000")
worker_class = "sync"
workers = int(os.environ.get("SHOP_WORKERS", "4"))

# False (the default): every worker imports the app, so every worker runs the app's
# dictConfig and builds its own handler; the master never has one. With --preload (True), the
# master imports the app once and the workers share its memory pages; kafkalog's fork hook
# gives each worker a new pipeline. Both are safe; choose for the app's sake, not for logging.
preload_app = False

# On SIGTERM the master asks each worker to finish its request and exit; a worker still running
# after graceful_timeout is SIGKILLed. The handler needs up to close_timeout_ms (10 s in app.py)
# at exit when Kafka is slow, so graceful_timeout must be comfortably longer.
graceful_timeout = 30

# A worker silent for this long is SIGKILLed. Logging never makes it silent: emit() only
# formats and queues a record, it never waits for Kafka.
timeout = 30

# Recycled workers exit the normal way, so their records are delivered before they go.
max_requests = int(os.environ.get("SHOP_MAX_REQUESTS", "1000"))
max_requests_jitter = max_requests // 10


def _kafka_handlers() -> list[KafkaHandler]:
    loggers: list[Any] = [logging.getLogger()]
    loggers += [lg for lg in logging.Logger.manager.loggerDict.values()
                if isinstance(lg, logging.Logger)]
    found: dict[int, KafkaHandler] = {}
    for lg in loggers:
        for handler in lg.handlers:
            if isinstance(handler, KafkaHandler):
                found[id(handler)] = handler
    return list(found.values())


def _close_and_report(server: Any, who: str) -> None:
    """Close this process's kafkalog handlers now and say in gunicorn's log how they ended.

    Closing here rather than leaving it to the interpreter's exit makes the outcome visible
    next to gunicorn's own "Worker exiting" line; close() is idempotent, so the exit hook that
    runs later has nothing left to do.
    """
    for handler in _kafka_handlers():
        queued = handler.stats()["queue_depth"]
        handler.close()
        stats = handler.stats()
        pending = stats.get("spill_pending_records", 0)
        lost = stats["failed"] + stats["dropped"]
        report = server.log.warning if lost or pending else server.log.info
        report(
            "kafkalog: %s %d exiting: %d queued at exit, %d delivered, %d left in the spill "
            "for the next process, %d lost",
            who, os.getpid(), queued, stats["delivered"], pending, lost,
        )


def worker_exit(server: Any, worker: Any) -> None:
    """Runs in the worker as it exits (after its last request)."""
    _close_and_report(server, "worker")


def on_exit(server: Any) -> None:
    """Runs in the master as it exits: with --preload, the master may have records too."""
    _close_and_report(server, "master")
