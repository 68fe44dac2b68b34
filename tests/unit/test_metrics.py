"""kafkalog.metrics with an in-memory transport: what a Prometheus scrape shows."""

from __future__ import annotations

import gc
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from kafkalog import KafkaHandler, TransportError
from kafkalog.metrics import COUNTERS, GAUGES, HISTOGRAMS, register, unregister
from kafkalog.pipeline.counters import Distribution
from kafkalog.ship.agent import ShipAgent
from kafkalog.ship.config import ship_config
from kafkalog.ship.metrics import AGENT_COUNTERS, INOTIFY_COUNTERS, ship_families
from kafkalog.testing import MemoryTransport


def make(transport: MemoryTransport, topic: str = "t", **options: object) -> KafkaHandler:
    opts: dict[str, object] = {"topic": topic, "linger_ms": 0, "retry_backoff_ms": 1,
                               "spill_dir": None, "overflow_policy": "drop_newest"}
    opts.update(options)
    return KafkaHandler(transport_factory=MemoryTransport.factory(transport), **opts)


def scrape(registry: CollectorRegistry) -> dict[tuple[str, str], float]:
    """(sample name, topic label) -> value, from the text exposition format."""
    text = generate_latest(registry).decode()
    out: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if "le" in sample.labels:
                key = (f"{sample.name}{{le={sample.labels['le']}}}", sample.labels["topic"])
            else:
                key = (sample.name, sample.labels.get("topic", ""))
            out[key] = sample.value
    return out


def test_scrape_shows_what_the_handler_counted(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    handler = make(transport, topic="billing")
    logger.addHandler(handler)
    registry = CollectorRegistry()
    register(handler, registry=registry)
    for i in range(250):
        logger.info("record %d", i)
    assert handler.flush(30.0)
    got = scrape(registry)
    assert got[("kafkalog_enqueued_total", "billing")] == 250
    assert got[("kafkalog_delivered_total", "billing")] == 250
    assert got[("kafkalog_failed_total", "billing")] == 0
    assert got[("kafkalog_queue_depth", "billing")] == 0
    assert got[("kafkalog_handlers", "billing")] == 1
    # One observation per request to Kafka; the records of all requests add up to 250.
    assert got[("kafkalog_batch_size_records_count", "billing")] == transport.calls
    assert got[("kafkalog_batch_size_records_sum", "billing")] == 250
    assert got[("kafkalog_send_latency_seconds_count", "billing")] == transport.calls
    assert got[("kafkalog_send_latency_seconds_bucket{le=+Inf}", "billing")] == transport.calls
    assert got[("kafkalog_send_latency_seconds_sum", "billing")] >= 0


def test_every_documented_metric_is_exposed(logger: logging.Logger) -> None:
    handler = make(MemoryTransport())
    logger.addHandler(handler)
    logger.info("one")
    assert handler.flush(30.0)
    registry = CollectorRegistry()
    register(handler, registry=registry)
    got = scrape(registry)
    names = {name for name, _ in got}
    assert {f"{n}_total" for n in COUNTERS} <= names
    assert set(GAUGES) <= names
    assert {f"{n}_count" for n in HISTOGRAMS} <= names
    assert all(name.startswith("kafkalog_") for name in names)


def test_failures_and_retries_are_counted(logger: logging.Logger) -> None:
    transport = MemoryTransport()
    transport.fail_next = [TransportError("down", retriable=True, cause_name="Down")] * 2
    handler = make(transport, delivery_timeout_ms=60000)
    logger.addHandler(handler)
    registry = CollectorRegistry()
    register(handler, registry=registry)
    logger.info("late")
    assert handler.flush(30.0)
    got = scrape(registry)
    assert got[("kafkalog_retries_total", "t")] == 2
    assert got[("kafkalog_delivered_total", "t")] == 1
    assert got[("kafkalog_batch_size_records_count", "t")] == 3  # two failed tries, one good


def test_handlers_of_one_topic_are_added_up_and_topics_kept_apart(
    logger: logging.Logger,
) -> None:
    a, b, c = (make(MemoryTransport(), topic=t) for t in ("shared", "shared", "other"))
    registry = CollectorRegistry()
    register([a, b, c], registry=registry)
    for handler, count in ((a, 3), (b, 4), (c, 5)):
        logger.handlers = [handler]
        for i in range(count):
            logger.info("r%d", i)
        assert handler.flush(30.0)
    logger.handlers = [a, b, c]  # closed by the logger fixture
    got = scrape(registry)
    assert got[("kafkalog_delivered_total", "shared")] == 7
    assert got[("kafkalog_delivered_total", "other")] == 5
    assert got[("kafkalog_handlers", "shared")] == 2


def test_counts_of_a_closed_handler_stay_after_it_is_gone(logger: logging.Logger) -> None:
    registry = CollectorRegistry()
    register(registry=registry)  # every handler, including later ones
    handler = make(MemoryTransport(), topic="gone")
    logger.addHandler(handler)
    for i in range(10):
        logger.info("r%d", i)
    assert handler.flush(30.0)
    assert scrape(registry)[("kafkalog_delivered_total", "gone")] == 10
    logger.removeHandler(handler)
    handler.close()
    after_close = scrape(registry)
    assert after_close[("kafkalog_delivered_total", "gone")] == 10
    assert after_close[("kafkalog_handlers", "gone")] == 0
    del handler
    gc.collect()
    assert scrape(registry)[("kafkalog_delivered_total", "gone")] == 10
    # A new handler on that topic adds to the old counts: the counter never goes down.
    again = make(MemoryTransport(), topic="gone")
    logger.addHandler(again)
    logger.info("more")
    assert again.flush(30.0)
    got = scrape(registry)
    assert got[("kafkalog_delivered_total", "gone")] == 11
    assert got[("kafkalog_handlers", "gone")] == 1


def test_a_handler_collected_between_scrapes_keeps_what_was_scraped(
    logger: logging.Logger,
) -> None:
    handler = make(MemoryTransport(), topic="brief")
    registry = CollectorRegistry()
    collector = register(handler, registry=registry)
    logger.addHandler(handler)
    logger.info("r")
    assert handler.flush(30.0)
    assert scrape(registry)[("kafkalog_delivered_total", "brief")] == 1
    logger.removeHandler(handler)
    handler.close()
    del handler
    gc.collect()
    assert scrape(registry)[("kafkalog_delivered_total", "brief")] == 1
    unregister(collector, registry=registry)
    assert ("kafkalog_delivered_total", "brief") not in scrape(registry)


def test_registering_twice_on_one_registry_is_refused() -> None:
    registry = CollectorRegistry()
    register(registry=registry)
    with pytest.raises(ValueError, match="Duplicated"):
        register(registry=registry)


def test_distribution_counts_a_value_equal_to_a_bound_in_that_bucket() -> None:
    dist = Distribution((1, 10))
    for value in (0.5, 1, 1.5, 10, 11, 1000):
        dist.observe(value)
    snap = dist.snapshot()
    assert snap["counts"] == [2, 2, 2]
    assert snap["count"] == 6
    assert snap["sum"] == pytest.approx(1024.0)
    assert orjson.loads(orjson.dumps(snap)) == snap  # stats() stays JSON-serialisable


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_forked_child_reports_only_its_own_records(logger: logging.Logger) -> None:
    registry = CollectorRegistry()
    register(registry=registry)
    handler = make(MemoryTransport(), topic="forked")
    logger.addHandler(handler)
    for i in range(5):
        logger.info("parent %d", i)
    assert handler.flush(30.0)
    closed = make(MemoryTransport(), topic="forked")  # its counts are kept as retired ones
    logger.addHandler(closed)
    logger.info("parent, closed handler")
    assert closed.flush(30.0)
    assert scrape(registry)[("kafkalog_delivered_total", "forked")] == 7  # 5 + 1 + 1
    logger.removeHandler(closed)
    closed.close()
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            logger.handlers = [handler]
            logger.info("child")
            handler.flush(30.0)
            os.write(write_fd, orjson.dumps(scrape(registry)[("kafkalog_delivered_total",
                                                              "forked")]))
        finally:
            os._exit(0)
    os.close(write_fd)
    with os.fdopen(read_fd, "rb") as pipe:
        child_delivered = orjson.loads(pipe.read())
    os.waitpid(pid, 0)
    assert child_delivered == 1
    assert scrape(registry)[("kafkalog_delivered_total", "forked")] == 7


def test_a_pipeline_of_its_own_is_followed_like_a_handler() -> None:
    from kafkalog.pipeline import Pipeline  # noqa: PLC0415

    registry = CollectorRegistry()
    collector = register(registry=registry)  # every pipeline of the process, now and later
    transport = MemoryTransport()
    pipeline = Pipeline(topic="events", linger_ms=0, spill_dir=None,
                        transport_factory=MemoryTransport.factory(transport))
    for i in range(40):
        pipeline.submit(b"%d" % i)
    assert pipeline.flush(30.0)
    got = scrape(registry)
    assert got[("kafkalog_delivered_total", "events")] == 40
    assert got[("kafkalog_handlers", "events")] == 1
    pipeline.close()
    got = scrape(registry)
    assert got[("kafkalog_delivered_total", "events")] == 40, "a closed one's counts stay"
    assert got[("kafkalog_handlers", "events")] == 0
    unregister(collector, registry=registry)


def test_the_agents_series_add_up_over_agents_and_show_any_agent_without_inotify() -> None:
    def stats(n: int, active: bool) -> dict[str, Any]:
        return {**dict.fromkeys((key for key, _ in AGENT_COUNTERS.values()), n),
                "per_file": {f"/l/{n}.log": {"input": "web", "lag_bytes": 10 * n}},
                "inotify": {"active": active, "events": n, "overflows": n,
                            "watch_failures": n}}

    families = {f.name: f for f in ship_families([stats(1, True), stats(2, False)])}
    for name in [*AGENT_COUNTERS, *INOTIFY_COUNTERS]:
        assert [s.value for s in families[name].samples] == [3], name
    assert [s.value for s in families["kafkalog_ship_inotify_active"].samples] == [0]
    assert sorted(s.value for s in families["kafkalog_ship_lag_bytes"].samples) == [10, 20]
    assert [s.value for s in families["kafkalog_ship_files"].samples] == [2]
    assert all(not f.samples for f in ship_families([])), "no agent: no samples"


def test_a_running_file_agent_shows_its_files_and_their_lag(tmp_path: Path) -> None:
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_bytes(b"one\ntwo\n")
    cfg = ship_config({"state_dir": str(tmp_path / "state"), "scan_interval_ms": 50,
                       "commit_interval_ms": 50, "linger_ms": 0},
                      [{"name": "web", "paths": [str(logs / "*.log")], "topic": "t"}])
    transport = MemoryTransport()
    agent = ShipAgent(cfg, transport_factory=MemoryTransport.factory(transport))
    registry = CollectorRegistry()
    collector = register(registry=registry)
    stop = threading.Event()
    thread = threading.Thread(target=agent.run, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while len(transport.records) < 2 and time.monotonic() < deadline:
            time.sleep(0.02)  # polled, bounded: the agent ships on its own thread
        got = scrape(registry)
        assert got[("kafkalog_ship_files", "")] == 1  # (the helper keys by topic label only)
        assert got[("kafkalog_ship_lag_bytes", "")] == 0  # read to its end
        assert got[("kafkalog_ship_lines_total", "")] == 2
        assert got[("kafkalog_ship_bytes_total", "")] == 8
        assert got[("kafkalog_ship_events_total", "")] == 2
        assert got[("kafkalog_ship_files_opened_total", "")] == 1
        assert got[("kafkalog_ship_scans_total", "")] >= 1
        assert got[("kafkalog_ship_registry_pruned_total", "")] == 0
        assert got[("kafkalog_ship_inotify_active", "")] == 1  # Linux: the agent watches
        assert got[("kafkalog_ship_inotify_overflows_total", "")] == 0
        with (logs / "a.log").open("ab") as f:
            f.write(b"three\n")
        while len(transport.records) < 3 and time.monotonic() < deadline + 10:
            time.sleep(0.02)  # polled, bounded
        got = scrape(registry)
        assert got[("kafkalog_ship_lines_total", "")] == 3
        assert got[("kafkalog_ship_inotify_events_total", "")] >= 1, "the append was an event"
        stop.set()
        thread.join(30)
        assert not thread.is_alive()
        assert ("kafkalog_ship_lines_total", "") not in scrape(registry), "a stopped agent leaves"
    finally:
        stop.set()
        thread.join(30)
        unregister(collector, registry=registry)
