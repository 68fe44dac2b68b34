"""What every section of the suite shares: repeated timing, the broker, topics, settings.

Each measurement is taken ``runs`` times after ``warmup`` discarded runs; sections report the
median and keep every sample in the JSON, so the spread is visible too.
"""

from __future__ import annotations

import contextlib
import os
import resource
import socket
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
from kafka import KafkaAdminClient

ROOT = Path(__file__).resolve().parent.parent
# tests/broker/kraft.py runs the broker, as in the integration tests.
sys.path.insert(0, str(ROOT / "tests"))

from broker.kraft import KafkaBroker, consume, create_topic  # noqa: E402

__all__ = ["ROOT", "Settings", "broker", "consume", "load_average", "new_topic", "repeat",
           "summary"]

# The log call every section makes: one enabled INFO record with two arguments and one extra.
MESSAGE = "user %s paid %d cents for order %s"
# Padding in the message, so that a default-schema record is about 300 bytes of JSON.
FILLER = "x" * 40


@dataclass(frozen=True)
class Settings:
    """How much work each section does: ``--quick`` scales everything down."""

    quick: bool
    warmup: int
    runs: int  # caller-cost runs
    throughput_runs: int
    calls: int  # log calls per caller-cost run
    records: int  # records per throughput run
    latency_s: float  # length of the steady-rate latency run
    memory_records: int  # records logged with the broker down

    @classmethod
    def make(cls, quick: bool) -> Settings:
        """The full suite, or the seconds-long CI check."""
        if quick:
            return cls(quick, warmup=1, runs=5, throughput_runs=3, calls=20_000,
                       records=30_000, latency_s=0.0, memory_records=0)
        return cls(quick, warmup=1, runs=7, throughput_runs=3, calls=50_000, records=200_000,
                   latency_s=10.0, memory_records=1_000_000)


def summary(samples: list[float]) -> dict[str, Any]:
    """Median plus the spread of ``samples`` (rounded for the JSON)."""
    return {
        "median": round(statistics.median(samples), 4),
        "min": round(min(samples), 4),
        "max": round(max(samples), 4),
        "samples": [round(s, 4) for s in samples],
    }


def repeat(measure: Callable[[], float], warmup: int, runs: int) -> list[float]:
    """``measure()`` ``warmup`` times (discarded), then ``runs`` times (returned)."""
    for _ in range(warmup):
        measure()
    return [measure() for _ in range(runs)]


def load_average() -> list[float]:
    """The machine's load average over 1, 5 and 15 minutes (it is shared: say how busy)."""
    return [round(x, 2) for x in os.getloadavg()]


def cpu_seconds() -> float:
    """User + system CPU of this process so far, every thread (librdkafka's too)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def free_port() -> int:
    """A local TCP port nobody listens on (for the broker-down section)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def broker() -> Iterator[str]:
    """A broker's bootstrap address: ``$KAFKALOG_BOOTSTRAP_SERVERS``, or a throwaway one."""
    given = os.environ.get("KAFKALOG_BOOTSTRAP_SERVERS")
    if given:
        yield given
        return
    with tempfile.TemporaryDirectory(prefix="kafkalog-bench-broker-") as tmp, KafkaBroker(
        Path(tmp)
    ) as kafka:
        yield kafka.bootstrap


def new_topic(bootstrap: str, prefix: str, partitions: int = 3,
              config: dict[str, object] | None = None) -> str:
    """A fresh topic (every partition led) for one measurement."""
    name = f"bench-{prefix}-{uuid.uuid4().hex[:8]}"
    return str(create_topic(bootstrap, name, partitions, config=config))


def delete_topics(bootstrap: str, names: list[str]) -> None:
    """Free the broker's disk between sections (best effort)."""
    if not names:
        return
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=30_000)
    try:
        with contextlib.suppress(Exception):
            admin.delete_topics(names, timeout_ms=30_000)
    finally:
        admin.close()


def payloads(count: int) -> list[bytes]:
    """``count`` JSON values shaped like kafkalog's records, for the raw producer loops."""
    base = {
        "@timestamp": "2026-01-01T00:00:00.000000Z",
        "level": "INFO",
        "logger": "bench",
        "module": "throughput",
        "function": "run",
        "line": 1,
        "process": os.getpid(),
        "thread_name": "MainThread",
        "host": socket.gethostname(),
        "user": "u-1",
    }
    out = []
    for i in range(count):
        base["message"] = MESSAGE % ("u-42", i, FILLER)
        base["id"] = f"{i:016x}-{i:x}"
        out.append(orjson.dumps(base))
    return out


def wait_until(predicate: Callable[[], bool], timeout_s: float, step_s: float = 0.01) -> bool:
    """Poll ``predicate`` until it holds or ``timeout_s`` passes; True if it held."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            return False
        time.sleep(step_s)
    return True
