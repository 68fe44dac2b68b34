"""A small WSGI application for gunicorn that logs one record to Kafka on every request.

Run it with the settings next to it (see ``gunicorn.conf.py`` for why they are what they are)::

    export KAFKALOG_BOOTSTRAP_SERVERS=127.0.0.1:9092
    gunicorn -c examples/gunicorn/gunicorn.conf.py
    gunicorn -c examples/gunicorn/gunicorn.conf.py --preload

The app configures logging itself, at import, the way a Django project does with
``settings.LOGGING``. Without ``--preload`` each worker imports it after the fork and so builds
its own handler; with ``--preload`` the master imports it once and the workers inherit the
handler through ``fork()``, after which kafkalog gives each of them a fresh queue, thread and
connection. Either way every worker ships its own records; nothing here depends on which.

Environment:

- ``KAFKALOG_BOOTSTRAP_SERVERS``: the brokers (kafkalog reads it when the option is not set).
- ``SHOP_LOG_TOPIC``: the topic, default ``shop-logs``.
- ``SHOP_SPILL_DIR``: where records wait while Kafka is unreachable; default ``auto``, a
  per-application directory that all workers share (each writes its own files in it).
"""

from __future__ import annotations

import logging
import logging.config
import os
import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any

TOPIC = os.environ.get("SHOP_LOG_TOPIC", "shop-logs")

LOGGING: dict[str, Any] = {
    "version": 1,
    # gunicorn's own loggers exist before this runs; leave them working.
    "disable_existing_loggers": False,
    "handlers": {
        "kafka": {
            "class": "kafkalog.KafkaHandler",
            "topic": TOPIC,
            # Records of one request id stay on one partition, in order.
            "key": "request_id",
            "static_fields": {"service": "shop"},
            "spill_dir": os.environ.get("SHOP_SPILL_DIR", "auto"),
            # A worker delivers what it holds when it exits, for at most this long. Keep it
            # well under gunicorn's graceful_timeout, or the master SIGKILLs the worker while
            # it is still flushing (what was queued but not yet spilled would then be lost).
            "close_timeout_ms": 10000,
        },
    },
    "loggers": {
        "shop": {"handlers": ["kafka"], "level": "INFO", "propagate": False},
    },
}

logging.config.dictConfig(LOGGING)
log = logging.getLogger("shop.requests")
# With --preload this runs once, in the master; without it, once in each worker.
logging.getLogger("shop.startup").info("application loaded", extra={"pid": os.getpid()})

StartResponse = Callable[[str, list[tuple[str, str]]], Any]


def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
    """Answer every request with ``ok <request id> <worker pid>`` and log one record for it.

    The ``Server-Timing`` header says how long the log call took.
    """
    request_id = environ.get("HTTP_X_REQUEST_ID") or uuid.uuid4().hex
    method = environ.get("REQUEST_METHOD", "GET")
    path = environ.get("PATH_INFO", "/")
    # emit() only formats the record and queues it: the request does not wait for Kafka.
    started = time.perf_counter()
    log.info(
        "%s %s",
        method,
        path,
        extra={"request_id": request_id, "method": method, "path": path, "pid": os.getpid()},
    )
    log_ms = (time.perf_counter() - started) * 1000
    body = f"ok {request_id} {os.getpid()}\n".encode()
    start_response(
        "200 OK",
        [
            ("Content-Type", "text/plain"),
            ("Content-Length", str(len(body))),
            # What the log call cost this request, for browsers' dev tools (and the tests).
            ("Server-Timing", f"log;dur={log_ms:.3f}"),
        ],
    )
    return [body]
