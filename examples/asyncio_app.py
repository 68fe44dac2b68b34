"""asyncio: many concurrent requests log through kafkalog and the event loop never stalls.

    .venv/bin/python tests/broker/kraft.py exec -- .venv/bin/python examples/asyncio_app.py

An aiohttp server on 127.0.0.1 (a free port) answers requests from concurrent aiohttp
clients; each request logs a few records. A middleware binds the request id with
``kafkalog.context.bound``, so each task's records carry their own id although all tasks share
one thread. ``emit()`` only formats and queues - the network I/O happens on kafkalog's worker
thread - so logging adds microseconds per call to the loop, never a wait on Kafka.

The same load runs twice, with logging off and with it on, while a monitor task measures the
event loop's lag (how late a 1 ms sleep wakes up). Prints one JSON line: requests, records,
the lag percentiles of both runs in ms, the mean time of a log call on the loop in µs, and
how many records were delivered (or spilled, when Kafka is unreachable). Records go to
``$KAFKALOG_TOPIC`` (default ``asyncio-logs``); exits 0 once they are all delivered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import statistics
import sys
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import ClientSession, web

from kafkalog import KafkaHandler, context

RECORDS_PER_REQUEST = 5
log = logging.getLogger("asyncio_app")
log_call_s: list[float] = []  # time spent inside log calls on the loop


@web.middleware
async def request_context(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """aiohttp middleware: bind this request's id for every record its task logs."""
    request_id = request.headers.get("X-Request-ID") or uuid.uuid4().hex
    with context.bound(request_id=request_id, method=request.method, path=request.path):
        response = await handler(request)
    response.headers["X-Request-ID"] = request_id
    return response


def timed_info(msg: str, *args: Any, **extra: Any) -> None:
    started = time.perf_counter()
    log.info(msg, *args, extra=extra)
    log_call_s.append(time.perf_counter() - started)


async def order(request: web.Request) -> web.Response:
    """A request that logs RECORDS_PER_REQUEST records around a few awaits."""
    timed_info("order received")
    for step in range(RECORDS_PER_REQUEST - 2):
        await asyncio.sleep(0.001)  # "I/O": other requests run meanwhile
        timed_info("step %d done", step, step=step)
    timed_info("order done")
    return web.json_response({"ok": True})


async def monitor_lag(stop: asyncio.Event, lags: list[float]) -> None:
    """Record how late a 1 ms sleep wakes up, until ``stop`` is set."""
    loop = asyncio.get_running_loop()
    while not stop.is_set():
        started = loop.time()
        await asyncio.sleep(0.001)
        lags.append(max(0.0, loop.time() - started - 0.001))


async def load(port: int, requests: int, concurrency: int) -> list[float]:
    """Send ``requests`` requests, ``concurrency`` at a time; returns the loop lags seen."""
    stop, lags = asyncio.Event(), []
    monitor = asyncio.create_task(monitor_lag(stop, lags))
    limit = asyncio.Semaphore(concurrency)
    async with ClientSession() as session:

        async def one() -> None:
            async with limit, session.get(f"http://127.0.0.1:{port}/order") as resp:
                assert resp.status == 200, resp.status

        await asyncio.gather(*(one() for _ in range(requests)))
    stop.set()
    await monitor
    return lags


def percentiles_ms(lags: list[float]) -> dict[str, float]:
    cuts = statistics.quantiles(lags, n=100, method="inclusive")
    return {"p50": round(cuts[49] * 1e3, 3), "p99": round(cuts[98] * 1e3, 3),
            "max": round(max(lags) * 1e3, 3)}


async def run(requests: int, concurrency: int, handler: KafkaHandler) -> dict[str, Any]:
    app = web.Application(middlewares=[request_context])
    app.router.add_get("/order", order)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        log.disabled = True
        quiet = await load(port, requests, concurrency)
        log.disabled = False
        logging_on = await load(port, requests, concurrency)
    finally:
        await runner.cleanup()
    # flush() waits on a threading.Event: run it off the loop.
    flushed = await asyncio.to_thread(handler.flush, 60)
    stats = handler.stats()
    return {
        "requests": requests,
        "records": stats["enqueued"],
        "delivered": stats["delivered"],
        "spilled": stats["spilled"],
        "loop_lag_ms_logging_off": percentiles_ms(quiet),
        "loop_lag_ms_logging_on": percentiles_ms(logging_on),
        "log_call_us_mean": round(statistics.fmean(log_call_s) * 1e6, 2),
        "flushed": flushed,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--close-timeout-ms", type=int, default=5000,
                        help="how long to keep trying Kafka at exit (records left are on disk)")
    args = parser.parse_args()
    handler = KafkaHandler(topic=os.environ.get("KAFKALOG_TOPIC", "asyncio-logs"),
                           key="request_id", linger_ms=20,
                           close_timeout_ms=args.close_timeout_ms)
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False
    summary = asyncio.run(run(args.requests, args.concurrency, handler))
    print(json.dumps(summary))
    logging.shutdown()
    return 0 if summary["delivered"] == summary["records"] else 1


if __name__ == "__main__":
    sys.exit(main())
