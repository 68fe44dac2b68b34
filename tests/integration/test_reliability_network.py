"""Reliability scenario 3: network faults between the handler and the broker.

The application process (``tests/reliability/app.py``, configured with dictConfig) reaches the
broker only through a :class:`~reliability.proxy.FaultProxy`: the broker advertises the proxy's
address on its ``EXTERNAL`` listener, so every connection of the client, the bootstrap one and
the one to the partition leader, goes through it. The test's consumer reads over the direct
listener. While the app logs at a steady rate, the test injects, one after the other: added
latency, a blackhole (connections accepted, nothing forwarded), connection resets and a proxy
restart. Every record must arrive, and every log call must stay under the bound.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from broker.kraft import KafkaBroker, create_topic, free_port
from kafka_read import consume, values
from reliability import app
from reliability.ledger import long_variant, record_result, result_from_summary
from reliability.proxy import FaultProxy

from kafkalog.config import HandlerConfig
from kafkalog.transports.kafka_python import KafkaPythonTransport

THREADS = 2
RATE_PER_THREAD = 200  # records/s
# Sends that get no answer are given up after this long (then the client is rebuilt). The
# blackhole lasts longer than two of these, so the handler must spill and replay.
REQUEST_TIMEOUT_MS = 3000
# The bound every log call is held to: the longest the handler's options let emit() wait
# (block_timeout_ms; with the default overflow policy, spill, it never waits at all).
CALLER_BOUND_MS = 100
SCALE = 3 if long_variant() else 1
APP_TIMEOUT_S = 120 * SCALE


@dataclass(frozen=True)
class Phase:
    name: str
    seconds: float
    apply: Callable[[FaultProxy], Any]


def _resets(count: int, every_s: float) -> Callable[[FaultProxy], int]:
    def apply(proxy: FaultProxy) -> int:
        total = 0
        for _ in range(count):
            total += proxy.reset_connections()
            time.sleep(every_s)  # the fault schedule itself, not a synchronisation
        return total

    return apply


def _timeline() -> list[Phase]:
    return [
        Phase("pass-through", 3, lambda p: p.pass_through()),
        Phase("latency 250 ms each way", 5 * SCALE, lambda p: p.set_latency(250)),
        Phase("blackhole", 8 * SCALE, lambda p: p.blackhole()),
        Phase("pass-through (recovery)", 4, lambda p: p.pass_through()),
        # Each reset lands while the client is sending: the app logs 400 records/s.
        Phase("3 connection resets, 1.5 s apart", 0, _resets(3 * SCALE, 1.5)),
        Phase("proxy stopped (connections refused)", 4 * SCALE, lambda p: p.stop()),
        Phase("proxy restarted on the same port", 3, lambda p: p.start()),
    ]


@pytest.fixture
def proxied_broker(tmp_path: Path) -> Iterator[tuple[KafkaBroker, FaultProxy]]:
    """A broker of the test's own whose EXTERNAL listener is reachable only via a proxy."""
    if os.environ.get("KAFKALOG_TEST_BOOTSTRAP"):
        pytest.skip("KAFKALOG_TEST_BOOTSTRAP is set: this test needs a broker it configures")
    proxy_port = free_port()
    broker = KafkaBroker(tmp_path / "kafka-broker", proxy_port=proxy_port)
    broker.start()
    try:
        assert broker.external_port is not None
        with FaultProxy(("127.0.0.1", broker.external_port), port=proxy_port) as proxy:
            yield broker, proxy
    finally:
        broker.stop(kill=True)


def _wait_logging(progress: app.Progress, proc: Any, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while progress.state < app.STATE_LOGGING and time.monotonic() < deadline:
        assert proc.poll() is None, "the app exited before it started logging"
        time.sleep(0.05)  # polling another process's progress file; bounded
    assert progress.state >= app.STATE_LOGGING, "the app did not start logging"


def test_network_faults_lose_nothing_and_never_stall_the_caller(
    proxied_broker: tuple[KafkaBroker, FaultProxy], tmp_path: Path
) -> None:
    broker, proxy = proxied_broker
    topic = create_topic(broker.bootstrap, f"reliability.network.{uuid.uuid4().hex[:8]}", 3)
    timeline = _timeline()
    # The app logs through the whole timeline and a few seconds past it.
    log_seconds = sum(p.seconds for p in timeline) + 3 * 1.5 * SCALE + 4
    count = int(RATE_PER_THREAD * log_seconds)
    run = uuid.uuid4().hex[:12]
    summary_path = tmp_path / "summary.json"
    progress = app.Progress(tmp_path / "progress", THREADS)
    proc = app.launch(
        bootstrap=proxy.address,
        topic=topic,
        run=run,
        summary=summary_path,
        threads=THREADS,
        count=count,
        rate=RATE_PER_THREAD,
        keys=5,
        progress=tmp_path / "progress",
        options={
            "spill_dir": str(tmp_path / "spill"),
            "request_timeout_ms": REQUEST_TIMEOUT_MS,
            "block_timeout_ms": CALLER_BOUND_MS,
        },
        close_timeout_s=60,
    )
    phases: list[dict[str, Any]] = []
    try:
        _wait_logging(progress, proc, 30)
        for phase in timeline:
            started = time.monotonic()
            before = progress.logged()
            outcome = phase.apply(proxy)
            time.sleep(phase.seconds)  # the fault schedule itself: how long a fault lasts
            phases.append({
                "phase": phase.name,
                "seconds": round(time.monotonic() - started, 1),
                "logged": sum(progress.logged()) - sum(before),
                **({"connections_reset": outcome} if isinstance(outcome, int) else {}),
            })
        proxy.pass_through()
        proc.wait(APP_TIMEOUT_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        progress.close()
    assert proc.returncode == 0, app.log_path(summary_path).read_text()[-4000:]
    summary = app.load_summary(summary_path)
    stats = summary["stats"]
    counters = proxy.counters()

    consumed = values(consume(broker.bootstrap, topic, sum(summary["sent"].values()),
                              timeout_s=90))
    latency = summary["latency_ms"]
    result = result_from_summary(
        "network faults",
        summary,
        consumed,
        notes=(
            f"through a TCP proxy: {phases[1]['phase']} for {phases[1]['seconds']} s, blackhole "
            f"{phases[2]['seconds']} s, {counters.resets} connections reset, proxy down "
            f"{phases[5]['seconds']} s; {stats['spilled']} records spilled and replayed; "
            f"log-call bound {CALLER_BOUND_MS} ms"
        ),
        details={
            "phases": phases,
            "proxy": vars(counters),
            "handler": {k: stats[k] for k in ("delivered", "spilled", "replayed", "retries",
                                              "failed", "dropped", "dead_lettered")},
            "duplicate_ranges": _duplicate_ranges(consumed, run),
            "calls_over_10ms": latency.get("over_10ms"),
            "caller_p999_ms": latency.get("p999"),
        },
    )
    record_result(result)

    assert summary["exceptions"] == 0, summary["exception_samples"]
    assert result.lost == 0, result.describe()
    assert stats["failed"] == stats["dropped"] == stats["dead_lettered"] == 0, stats
    assert latency["max"] < CALLER_BOUND_MS, f"a log call took {latency['max']:.1f} ms"
    # The faults really hit the client: it retried, spilled during the blackhole, and the
    # proxy dropped bytes and reset live connections.
    assert stats["retries"] > 0 and stats["spilled"] > 0, stats
    assert counters.bytes_dropped > 0 and counters.resets > 0, counters


def _duplicate_ranges(consumed: list[dict[str, Any]], run: str) -> list[str]:
    """Runs of consecutive records consumed more than once, as "src#first-last" (at most 10):
    a whole resent batch shows up as one run."""
    copies = Counter((r["src"], r["seq"]) for r in consumed if r.get("run") == run)
    dup = sorted(rid for rid, n in copies.items() if n > 1)
    ranges: list[list[Any]] = []
    for src, seq in dup:
        if ranges and ranges[-1][0] == src and ranges[-1][2] == seq - 1:
            ranges[-1][2] = seq
        else:
            ranges.append([src, seq, seq])
    return [f"{src}#{a}-{b}" for src, a, b in ranges[:10]]


def _producer_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate()
            if t.name.startswith("kafka-python-producer-") and t.is_alive()}


def test_a_client_given_up_on_stops_at_once_and_sends_nothing_more(
    proxied_broker: tuple[KafkaBroker, FaultProxy],
) -> None:
    """A send that times out makes the transport throw its client away. That client must stop
    there: left running, it resends its batch by itself once the network is back (a duplicate
    of the worker's own resend), and its ``__del__`` flushes for 1 s in whatever thread drops
    it. (kafka-python's ``close(timeout=0)`` raised before stopping it, which did exactly that.)
    """
    broker, proxy = proxied_broker
    topic = create_topic(broker.bootstrap, f"reliability.abandon.{uuid.uuid4().hex[:8]}", 1)
    config = HandlerConfig.from_options(
        {"topic": topic, "bootstrap_servers": proxy.address, "request_timeout_ms": 2000}
    )
    transport = KafkaPythonTransport(config)
    before = _producer_threads()
    try:
        assert transport.send([(b"first", None)], 15) == [None]
        (first_client,) = _producer_threads() - before

        proxy.blackhole()
        started = time.monotonic()
        (err,) = transport.send([(b"second", None)], 2.0)
        elapsed = time.monotonic() - started
        assert err is not None and err.retriable
        # 2 s of waiting for the answer; the old client's flush in __del__ added a second more.
        assert elapsed < 2.8, f"giving up on a client took {elapsed:.2f} s"
        first_client.join(5.0)
        assert not first_client.is_alive(), "the abandoned client's I/O thread still runs"

        proxy.pass_through()
        assert transport.send([(b"second", None)], 15) == [None]  # the worker's resend
    finally:
        transport.close(5.0)
    got = [r.value for r in consume(broker.bootstrap, topic, 2, timeout_s=30)]
    assert got == [b"first", b"second"]
