"""Reliability scenario 5: a prefork gunicorn whose workers log a record on every request.

A real gunicorn (sync workers, ``--workers 4``) serves ``examples/gunicorn`` with that
example's own ``gunicorn.conf.py``, with and without ``--preload``. A bounded client loop
drives 2,000 requests over loopback; workers are recycled during the run (``max_requests``)
and the server is stopped with SIGTERM right after the last response, so records still queued
in the workers must be delivered as they exit. Then the topic is read back: every request's
record must be there.
"""

from __future__ import annotations

import http.client
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import psutil
import pytest
from broker.kraft import free_port
from kafka_read import consume, values
from reliability.ledger import check_delivery, record_result

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "gunicorn"
REQUESTS = 2000
CLIENT_THREADS = 8
WORKERS = 4
# Small enough that every worker is recycled at least once during the run: a recycled worker
# exits the same way as at shutdown, and must deliver its queue as it goes.
MAX_REQUESTS = 300
SRC = "http"
HTTP_TIMEOUT_S = 15.0
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 60.0

_EXIT_LINE = re.compile(
    r"kafkalog: (worker|master) (\d+) exiting: (\d+) queued at exit, (\d+) delivered, "
    r"(\d+) left in the spill for the next process, (\d+) lost"
)
_BOOT_LINE = re.compile(r"Booting worker with pid: (\d+)")
_SERVER_TIMING = re.compile(r"log;dur=([0-9.]+)")


def _wait_listening(proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode}:\n{log.read_text()[-4000:]}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1.0):
                return
        except OSError:
            time.sleep(0.1)  # the master has not bound the port yet; polled, bounded
    pytest.fail(f"gunicorn did not listen on {port} in {START_TIMEOUT_S}s")


def _get(port: int, i: int) -> tuple[int, float, float]:
    """Request number ``i``; returns (pid of the worker that served it, ms its log call took,
    ms the whole request took)."""
    request_id = f"req-{i}"
    started = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=HTTP_TIMEOUT_S)
    try:
        conn.request("GET", f"/orders/{i}", headers={"X-Request-ID": request_id})
        response = conn.getresponse()
        body = response.read().decode()
    finally:
        conn.close()
    assert response.status == 200, body
    ok, echoed, pid = body.split()
    assert (ok, echoed) == ("ok", request_id)
    timing = _SERVER_TIMING.fullmatch(response.getheader("Server-Timing", ""))
    assert timing is not None
    return int(pid), float(timing[1]), (time.perf_counter() - started) * 1000


class _RssSampler:
    """Peak RSS of any one gunicorn process (master or worker) while the load runs."""

    def __init__(self, pid: int) -> None:
        self.peak_bytes = 0
        self._root = psutil.Process(pid)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            try:
                procs = [self._root, *self._root.children()]
            except psutil.Error:
                return
            for proc in procs:
                try:
                    self.peak_bytes = max(self.peak_bytes, proc.memory_info().rss)
                except psutil.Error:
                    continue  # a recycled worker went away between listing and reading

    def __enter__(self) -> _RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)


@pytest.mark.parametrize("preload", [False, True], ids=["import-in-workers", "preload"])
def test_every_request_of_a_prefork_gunicorn_is_delivered(
    kafka_broker: Any, topic: str, tmp_path: Path, preload: bool
) -> None:
    port = free_port()
    log = tmp_path / "gunicorn.log"
    env = {
        **os.environ,
        "KAFKALOG_BOOTSTRAP_SERVERS": kafka_broker.bootstrap,
        "SHOP_LOG_TOPIC": topic,
        "SHOP_SPILL_DIR": str(tmp_path / "spill"),
        "SHOP_BIND": f"127.0.0.1:{port}",
        "SHOP_MAX_REQUESTS": str(MAX_REQUESTS),
    }
    cmd = [sys.executable, "-m", "gunicorn", "-c", str(EXAMPLE / "gunicorn.conf.py"),
           "--workers", str(WORKERS)]
    if preload:
        cmd.append("--preload")
    started = time.monotonic()
    with log.open("wb") as log_file:
        proc = subprocess.Popen(cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL)
    try:
        _wait_listening(proc, port, log)
        with _RssSampler(proc.pid) as rss, ThreadPoolExecutor(CLIENT_THREADS) as pool:
            served = list(pool.map(lambda i: _get(port, i), range(REQUESTS)))
        # SIGTERM right after the last response: the workers' last records may still be
        # queued; a graceful stop must deliver them.
        proc.send_signal(signal.SIGTERM)
        returncode = proc.wait(STOP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    output = log.read_text()
    assert returncode == 0, output[-4000:]

    booted = {int(pid) for pid in _BOOT_LINE.findall(output)}
    exits = [(m[0], int(m[1]), int(m[2]), int(m[3]), int(m[4]), int(m[5]))
             for m in _EXIT_LINE.findall(output)]
    worker_exits = {e[1]: e for e in exits if e[0] == "worker"}
    # Every worker that ever ran left through the normal exit path and lost nothing there.
    assert set(worker_exits) == booted, output[-4000:]
    assert len(booted) > WORKERS, "no worker was recycled during the run"
    masters = [e for e in exits if e[0] == "master"]
    # With --preload the master imported the app and logged; it delivers its own record.
    assert [(m[1], m[3]) for m in masters] == ([(proc.pid, 1)] if preload else [])
    for _, pid, _, _, pending, lost in exits:
        assert (pending, lost) == (0, 0), f"process {pid} exited with records not delivered"

    # Startup records: one per process that imported the app.
    importers = {proc.pid} if preload else booted
    records = values(consume(kafka_broker.bootstrap, topic, REQUESTS + len(importers),
                             timeout_s=90))
    requests = [r for r in records if r.get("logger") == "shop.requests"]
    startups = [r for r in records if r.get("logger") == "shop.startup"]
    served_by = {pid for pid, _, _ in served}
    log_ms = sorted(ms for _, ms, _ in served)
    http_ms = sorted(ms for _, _, ms in served)
    result = check_delivery(
        "prefork server (--preload)" if preload else "prefork server (app imported by workers)",
        ((SRC, i) for i in range(REQUESTS)),
        # The ledger's identity for a request record: its request number; its key is the
        # request id, one per record, so per-key order does not apply here.
        ({"src": SRC, "seq": int(r["request_id"].removeprefix("req-")), "k": r["request_id"]}
         for r in requests),
        caller_p99_ms=_pct(log_ms, 0.99),
        caller_max_ms=log_ms[-1],
        peak_rss_mb=rss.peak_bytes / 2**20,
        notes=(
            f"gunicorn sync --workers {WORKERS}, {len(booted)} workers in all (recycled every "
            f"~{MAX_REQUESTS} requests), SIGTERM after the last response; "
            f"{sum(e[2] for e in exits)} records still queued at exit, all delivered; "
            f"caller = the log call in the request; peak RSS of one process"
        ),
        details={
            "requests": REQUESTS,
            "client_threads": CLIENT_THREADS,
            "workers_started": len(booted),
            "workers_that_served": len(served_by),
            "queued_at_exit": sum(e[2] for e in exits),
            "http_p99_ms": round(_pct(http_ms, 0.99), 2),
            "http_max_ms": round(http_ms[-1], 2),
            "wall_s": round(time.monotonic() - started, 1),
        },
    )
    record_result(result)
    assert result.lost == 0, result.describe()
    assert result.delivered == REQUESTS
    assert {r["pid"] for r in startups} == importers
    assert {r["pid"] for r in requests} == served_by
    assert served_by <= booted


def _pct(ordered: list[float], p: float) -> float:
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]
