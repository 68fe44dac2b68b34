"""The application process of the reliability scenarios: dictConfig, threads, numbered records.

    python tests/reliability/app.py --bootstrap HOST:PORT --topic T --run RUN --summary OUT.json \
        [--threads 8] [--count 50000] [--rate 0] [--keys 5] [--options '{"linger_ms": 5}'] \
        [--progress FILE] [--ack-interval-ms 100] [--bad-input 0.05] [--kafka-debug FILE]

It configures logging the way an application does (``logging.config.dictConfig`` with a
``kafkalog.KafkaHandler``; ``--options`` adds handler options as JSON), then each of
``--threads`` threads logs ``--count`` records, optionally paced at ``--rate`` records/s per
thread. Record ``seq`` of thread ``t`` carries ``extra={"run": RUN, "src": "<prefix>t<t>",
"seq": seq, "k": "<src>/k<seq % keys>"}`` and the handler's key is ``k`` (see
:mod:`reliability.ledger`).

Every log call is timed. At the end the app flushes, closes the handler (``logging.shutdown``)
and writes a JSON summary: records sent per ``src``, per-call latency percentiles, exceptions
that reached the application (must be none), peak RSS, the handler's counters.

**Progress file** (``--progress``): a small file mapped into memory and updated on every log
call, so that a test can watch a run and still read it after SIGKILL (the kernel keeps the
pages of a shared mapping). Layout, little-endian u64: ``state`` (see ``STATE_*``), thread
count, then per thread ``logged`` and ``acked``. ``logged`` counts the log calls of that thread
that returned. ``acked`` is the spill acknowledgement used by the kill-loop scenario: every
``--ack-interval-ms`` a separate thread snapshots ``logged`` and calls ``handler.flush()``;
flush returns True only when every record accepted before the call was acknowledged by the
broker or written to the spill store (``os.write``, so the kernel holds it even if the process
is killed) and none was dropped; only then is the snapshot stored as ``acked``. A record with
``seq < acked`` must therefore survive a SIGKILL of the application.
"""

from __future__ import annotations

import argparse
import json
import logging
import logging.config
import mmap
import os
import resource
import struct
import subprocess
import sys
import threading
import time
from array import array
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

STATE_STARTING = 0
STATE_LOGGING = 1
STATE_FLUSHING = 2  # every log call has returned; flush and close follow
STATE_DONE = 3
_U64 = struct.Struct("<Q")
LOGGER_NAME = "reliability.app"
# Per-call latency thresholds reported as "calls slower than" counts.
SLOW_THRESHOLDS_MS = (1, 10, 100, 1000)


APP = Path(__file__).resolve()


def launch(
    *,
    bootstrap: str,
    topic: str,
    run: str,
    summary: Path,
    threads: int = 1,
    count: int = 1000,
    rate: float = 0.0,
    keys: int = 5,
    options: dict[str, Any] | None = None,
    progress: Path | None = None,
    ack_interval_ms: int = 0,
    bad_input: float = 0.0,
    kafka_debug: Path | None = None,
    src_prefix: str = "",
    payload_bytes: int = 0,
    close_timeout_s: float = 60.0,
    flush_timeout_s: float = 120.0,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start the app as its own process (for tests). Its stdout and stderr go to
    ``<summary>.log``; :func:`load_summary` reads the summary once it has exited."""
    argv = [
        sys.executable, str(APP), "--bootstrap", bootstrap, "--topic", topic, "--run", run,
        "--summary", str(summary), "--threads", str(threads), "--count", str(count),
        "--rate", str(rate), "--keys", str(keys), "--options", json.dumps(options or {}),
        "--ack-interval-ms", str(ack_interval_ms), "--bad-input", str(bad_input),
        "--src-prefix", src_prefix, "--payload-bytes", str(payload_bytes),
        "--close-timeout-s", str(close_timeout_s), "--flush-timeout-s", str(flush_timeout_s),
    ]  # fmt: skip
    if progress is not None:
        argv += ["--progress", str(progress)]
    if kafka_debug is not None:
        argv += ["--kafka-debug", str(kafka_debug)]
    with open(log_path(summary), "ab") as out:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env)


def log_path(summary: Path) -> Path:
    """The file the app's stdout and stderr go to."""
    return summary.with_name(summary.name + ".log")


def load_summary(summary: Path) -> dict[str, Any]:
    """The JSON summary an app run wrote."""
    data: dict[str, Any] = json.loads(summary.read_text(encoding="utf-8"))
    return data


class Progress:
    """The progress file: ``state``, thread count, then (logged, acked) per thread."""

    def __init__(self, path: Path, threads: int | None = None) -> None:
        """Create the file for ``threads`` threads, or open an existing one (threads=None)."""
        if threads is not None:
            path.write_bytes(bytes(_U64.size * (2 + 2 * threads)))
        fd = os.open(path, os.O_RDWR)
        try:
            self._map = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        self.threads = threads if threads is not None else self._get(1)
        if threads is not None:
            self._set(1, threads)

    def _get(self, slot: int) -> int:
        value: int = _U64.unpack_from(self._map, slot * _U64.size)[0]
        return value

    def _set(self, slot: int, value: int) -> None:
        _U64.pack_into(self._map, slot * _U64.size, value)

    @property
    def state(self) -> int:
        """One of the ``STATE_*`` values."""
        return self._get(0)

    @state.setter
    def state(self, value: int) -> None:
        self._set(0, value)

    def set_logged(self, thread: int, count: int) -> None:
        """Thread ``thread`` has made ``count`` log calls that returned."""
        self._set(2 + 2 * thread, count)

    def set_acked(self, thread: int, count: int) -> None:
        """The first ``count`` records of ``thread`` are acknowledged (delivered or spilled)."""
        self._set(3 + 2 * thread, count)

    def logged(self) -> list[int]:
        """Log calls returned, per thread."""
        return [self._get(2 + 2 * t) for t in range(self.threads)]

    def acked(self) -> list[int]:
        """Records acknowledged to Kafka or the spill, per thread."""
        return [self._get(3 + 2 * t) for t in range(self.threads)]

    def close(self) -> None:
        """Unmap the file."""
        self._map.close()


class Evil:
    """A value whose ``__repr__`` and ``__str__`` raise, as buggy application objects do."""

    def __repr__(self) -> str:
        raise RuntimeError("__repr__ exploded")

    def __str__(self) -> str:
        raise RuntimeError("__str__ exploded")


class EvilError(Exception):
    """An exception whose message can not be rendered."""

    def __str__(self) -> str:
        raise ValueError("str of exception exploded")


BAD_KINDS = ("huge", "unserialisable", "raising_repr", "surrogates", "bad_format", "bad_exc")


def _bad_call(kind: str, log: logging.Logger, extra: dict[str, Any], seq: int) -> None:
    """Log one record of an odd kind; its ``extra`` ids stay intact so the ledger finds it."""
    if kind == "huge":
        # Larger than max_request_size: the formatter must cut it, Kafka must not refuse it.
        log.info("huge %s", "x" * (3 * 1024 * 1024), extra=extra)
    elif kind == "unserialisable":
        loop: list[Any] = [1]
        loop.append(loop)
        odd = {"obj": object(), "a_set": {1, 2}, "cplx": complex(1, 2), "raw": b"\xff\x00",
               "nan": float("nan"), "inf": float("-inf"), "big": 2**200, "loop": loop,
               "by_tuple": {(1, 2): "tuple key"}, "lock": threading.Lock()}
        log.info("unserialisable extras %d", seq, extra={**extra, **odd})
    elif kind == "raising_repr":
        log.info("raising repr %s %r", Evil(), Evil(), extra={**extra, "evil": Evil()})
    elif kind == "surrogates":
        log.info("lone surrogates \udc80 \ud800 %s", "\udfff", extra={**extra, "sur": "a\ud800b",
                                                                    "\udc81key": "v"})
    elif kind == "bad_format":
        log.info("%d %d and %s", "not a number", extra=extra)  # wrong count and type
    elif kind == "bad_exc":
        try:
            raise EvilError
        except EvilError:
            log.exception("exception with an unprintable message", extra=extra)


def _percentiles(samples_ns: array[int]) -> dict[str, Any]:
    if not samples_ns:
        return {"count": 0}
    ordered = sorted(samples_ns)
    n = len(ordered)

    def pct(p: float) -> float:
        return ordered[min(n - 1, int(p * n))] / 1e6

    slow = {f"over_{t}ms": sum(1 for v in ordered if v > t * 1_000_000)
            for t in SLOW_THRESHOLDS_MS}
    return {"count": n, "p50": pct(0.50), "p99": pct(0.99), "p999": pct(0.999),
            "max": ordered[-1] / 1e6, "mean": sum(ordered) / n / 1e6, **slow}


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024 / 1024


def _peak_rss_mb() -> float:
    """This process's peak RSS. Not ``ru_maxrss``: Linux carries it over from the parent
    across fork and exec, so a child of a big test process would report the parent's peak."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def logging_config(args: argparse.Namespace) -> dict[str, Any]:
    """The dictConfig of the application: one KafkaHandler, plus kafka-python DEBUG logs."""
    handler: dict[str, Any] = {
        "class": "kafkalog.KafkaHandler",
        "topic": args.topic,
        "bootstrap_servers": args.bootstrap,
        "key": "k",
        "close_timeout_ms": int(args.close_timeout_s * 1000),
        **json.loads(args.options),
    }
    config: dict[str, Any] = {
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {"kafka": handler},
        "loggers": {LOGGER_NAME: {"level": "DEBUG", "handlers": ["kafka"], "propagate": False}},
    }
    if args.kafka_debug:
        # kafka-python's DEBUG chatter goes to a file and, through the root logger, also to
        # the KafkaHandler, which must refuse it (it would feed the client sending it).
        config["handlers"]["kafka_debug_file"] = {
            "class": "logging.FileHandler", "filename": args.kafka_debug, "level": "DEBUG",
        }
        config["root"] = {"level": "DEBUG", "handlers": ["kafka"]}
        config["loggers"]["kafka"] = {"level": "DEBUG", "handlers": ["kafka_debug_file"]}
    return config


@contextmanager
def _rss_sampler(interval_s: float = 0.5) -> Iterator[list[tuple[float, float]]]:
    """Sample the RSS (MB) every ``interval_s`` seconds, to see *when* memory grows."""
    samples: list[tuple[float, float]] = []
    stop = threading.Event()
    started = time.monotonic()

    def run() -> None:
        while not stop.wait(interval_s):
            samples.append((round(time.monotonic() - started, 1), round(_rss_mb(), 1)))

    thread = threading.Thread(target=run, name="rss-sampler", daemon=True)
    thread.start()
    try:
        yield samples
    finally:
        stop.set()
        thread.join(5.0)


@contextmanager
def _acknowledger(
    handler: Any, progress: Progress | None, logged: list[int], interval_s: float
) -> Iterator[dict[str, int]]:
    """Every ``interval_s``, flush and publish what is acknowledged (see the module doc)."""
    counts = {"flushes": 0, "flush_failures": 0}
    stop = threading.Event()

    def run() -> None:
        assert progress is not None
        while not stop.wait(interval_s):
            snapshot = list(logged)
            if handler.flush(10.0):
                counts["flushes"] += 1
                for t, n in enumerate(snapshot):
                    progress.set_acked(t, n)
            else:
                counts["flush_failures"] += 1

    thread = None
    if progress is not None and interval_s > 0:
        thread = threading.Thread(target=run, name="acknowledger", daemon=True)
        thread.start()
    try:
        yield counts
    finally:
        stop.set()
        if thread is not None:
            thread.join(15.0)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--run", required=True, help="the run id put into every record")
    parser.add_argument("--summary", required=True, help="where to write the JSON summary")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--count", type=int, default=1000, help="records per thread")
    parser.add_argument("--rate", type=float, default=0.0,
                        help="records/s per thread (0: as fast as possible)")
    parser.add_argument("--keys", type=int, default=5, help="message keys per thread")
    parser.add_argument("--src-prefix", default="", help="prefix of the src of each thread")
    parser.add_argument("--options", default="{}", help="extra handler options, a JSON object")
    parser.add_argument("--payload-bytes", type=int, default=0,
                        help="add a field of this many bytes to each record")
    parser.add_argument("--progress", help="progress file (see the module doc)")
    parser.add_argument("--ack-interval-ms", type=int, default=0,
                        help="publish spill acknowledgements this often (needs --progress)")
    parser.add_argument("--bad-input", type=float, default=0.0,
                        help="fraction of records that are odd values (bad input storm)")
    parser.add_argument("--kafka-debug", help="turn kafka-python DEBUG logging on, into FILE")
    parser.add_argument("--flush-timeout-s", type=float, default=120.0)
    parser.add_argument("--close-timeout-s", type=float, default=60.0)
    args = parser.parse_args(argv)

    threads = args.threads
    progress = Progress(Path(args.progress), threads) if args.progress else None
    started = time.monotonic()
    logging.config.dictConfig(logging_config(args))
    log = logging.getLogger(LOGGER_NAME)
    (handler,) = log.handlers
    baseline_rss = _rss_mb()

    logged = [0] * threads
    latencies = [array("q") for _ in range(threads)]
    errors: list[str] = []
    refused: list[tuple[str, int]] = []  # log calls that raised: not sent
    bad: dict[str, list[int]] = {}
    bad_every = round(1 / args.bad_input) if args.bad_input > 0 else 0
    padding = "p" * args.payload_bytes
    gate = threading.Barrier(threads + 1)

    def worker(t: int) -> None:
        src = f"{args.src_prefix}t{t}"
        lat = latencies[t]
        interval = 1.0 / args.rate if args.rate > 0 else 0.0
        perf = time.perf_counter_ns
        bad_seqs: list[int] = []
        gate.wait()
        next_at = time.perf_counter()
        for seq in range(args.count):
            if interval:
                # Pacing the application's own loop (a rate, not a synchronisation).
                delay = next_at - time.perf_counter()
                if delay > 0:
                    time.sleep(delay)
                next_at += interval
            extra: dict[str, Any] = {"run": args.run, "src": src, "seq": seq,
                                     "k": f"{src}/k{seq % args.keys}"}
            if padding:
                extra["pad"] = padding
            kind = None
            if bad_every and seq % bad_every == bad_every - 1:
                kind = BAD_KINDS[(seq // bad_every) % len(BAD_KINDS)]
                bad_seqs.append(seq)
            t0 = perf()
            try:
                if kind is None:
                    log.info("record %s %d", src, seq, extra=extra)
                else:
                    _bad_call(kind, log, extra, seq)
            except Exception as exc:  # what the suite proves never happens
                errors.append(f"{src}#{seq}: {exc!r}")
                refused.append((src, seq))
            lat.append(perf() - t0)
            logged[t] = seq + 1
            if progress is not None:
                progress.set_logged(t, seq + 1)
        if bad_seqs:
            bad[src] = bad_seqs

    workers = [threading.Thread(target=worker, args=(t,), name=f"app-{t}") for t in range(threads)]
    for w in workers:
        w.start()
    with _rss_sampler() as rss_samples, \
            _acknowledger(handler, progress, logged, args.ack_interval_ms / 1000) as acks:
        gate.wait()
        log_started = time.monotonic()
        if progress is not None:
            progress.state = STATE_LOGGING
        for w in workers:
            w.join()
        log_seconds = time.monotonic() - log_started
        logging_peak_rss = max((rss for _, rss in rss_samples), default=_rss_mb())
        if progress is not None:
            progress.state = STATE_FLUSHING
        flush_ok = handler.flush(args.flush_timeout_s)
        stats = handler.stats()
        logging.shutdown()  # closes the handler: what an application does at exit
    final = handler.stats()
    merged = array("q")
    for lat in latencies:
        merged.extend(lat)
    # Which calls were slowest, and when: (ms, thread, seq) of the ten slowest.
    slowest = sorted(((v / 1e6, t, seq) for t, lat in enumerate(latencies)
                      for seq, v in enumerate(lat) if v > 10_000_000), reverse=True)[:10]
    summary = {
        "run": args.run,
        "sent": {f"{args.src_prefix}t{t}": logged[t] for t in range(threads)},
        "bad": bad,
        "refused": [f"{src}#{seq}" for src, seq in refused],
        "latency_ms": _percentiles(merged),
        "slowest_calls": [{"ms": round(ms, 1), "thread": t, "seq": seq}
                          for ms, t, seq in slowest],
        "exceptions": len(errors),
        "exception_samples": errors[:10],
        "flush_ok": flush_ok,
        "acks": acks,
        "log_seconds": log_seconds,
        "duration_s": time.monotonic() - started,
        "baseline_rss_mb": baseline_rss,
        "peak_rss_mb": _peak_rss_mb(),
        "logging_peak_rss_mb": logging_peak_rss,  # sampled, while the threads logged
        "rss_samples": rss_samples,  # (seconds since logging started, MB)
        "stats_after_flush": {k: v for k, v in stats.items() if not isinstance(v, dict)},
        "stats": {k: v for k, v in final.items() if not isinstance(v, dict)},
    }
    Path(args.summary).write_text(json.dumps(summary, indent=1), encoding="utf-8")
    if progress is not None:
        progress.state = STATE_DONE
        progress.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
