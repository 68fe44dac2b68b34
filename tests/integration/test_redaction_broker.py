"""Redaction end to end: what a real broker (and the spill directory on the way) holds is masked."""

from __future__ import annotations

import logging
import logging.config
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from broker.kraft import free_port
from kafka_read import consume, values

from kafkalog import KafkaHandler
from kafkalog.context import bound
from kafkalog.formatting.redaction import MASK
from kafkalog.spill import SEGMENT_SUFFIX, read_segment

pytestmark = pytest.mark.integration

SECRET = "hunter2-d6f1c0de"  # appears nowhere but under sensitive keys


def test_records_arrive_masked_with_dictconfig_string_keys(kafka_broker: Any, topic: str) -> None:
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "handlers": {
                "kafka": {
                    "class": "kafkalog.KafkaHandler",
                    "topic": topic,
                    "bootstrap_servers": kafka_broker.bootstrap,
                    "linger_ms": "5",
                    # As an INI or environment variable would give it.
                    "redact_keys": "password, api_key, Authorization, ssn",
                }
            },
            "loggers": {"it.redaction": {"handlers": ["kafka"], "level": "INFO"}},
        }
    )
    log = logging.getLogger("it.redaction")
    handler = next(h for h in log.handlers if isinstance(h, KafkaHandler))
    try:
        with bound(session={"user": "ann", "apiKey": SECRET}):
            log.info(
                "login for %s", "ann",
                extra={
                    "user": "ann",
                    "db_password": SECRET,
                    "request": {"headers": [{"Authorization": f"Bearer {SECRET}"}],
                                "path": "/login"},
                    "profile": {"ssn": SECRET, "token": "kept: not in this handler's list"},
                },
            )
        log.info("no extras at all")
        assert handler.flush(30)
    finally:
        logging.config.dictConfig({"version": 1, "disable_existing_loggers": False})

    records = consume(kafka_broker.bootstrap, topic, 2)
    assert len(records) == 2
    assert all(SECRET.encode() not in r.value for r in records)
    login = next(v for v in values(records) if v["message"] == "login for ann")
    assert login["user"] == "ann"
    assert login["db_password"] == MASK
    assert login["request"] == {"headers": [{"Authorization": MASK}], "path": "/login"}
    assert login["profile"] == {"ssn": MASK, "token": "kept: not in this handler's list"}
    assert login["session"] == {"user": "ann", "apiKey": MASK}


APP = textwrap.dedent(
    """
    import logging, os, signal, sys, time
    from kafkalog import KafkaHandler

    bootstrap, topic, spill_dir, secret = sys.argv[1:5]
    handler = KafkaHandler(topic=topic, bootstrap_servers=bootstrap, spill_dir=spill_dir,
                           spill_after_ms=0, request_timeout_ms=500, retry_backoff_ms=50,
                           spill_fsync="never")
    log = logging.getLogger("app")
    log.propagate = False
    log.addHandler(handler)
    for i in range(20):
        log.warning("attempt %d", i, extra={"seq": i, "auth": {"password": secret}})
    deadline = time.monotonic() + 60
    while handler.stats()["spilled"] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)  # polling the worker's progress; bounded
    print(handler.stats()["spilled"], flush=True)
    os.kill(os.getpid(), signal.SIGKILL)  # leave the segments for another process to adopt
    """
)


def test_spilled_records_are_masked_on_disk_and_when_replayed(
    kafka_broker: Any, topic: str, tmp_path: Path, logger: logging.Logger
) -> None:
    spill_dir = tmp_path / "spill"
    unreachable = f"127.0.0.1:{free_port()}"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    done = subprocess.run(
        [sys.executable, "-c", APP, unreachable, topic, str(spill_dir), SECRET],
        capture_output=True, text=True, timeout=120, env=env, check=False,
    )
    assert done.stdout.strip() == "20", done.stderr

    segments = sorted(spill_dir.glob("*" + SEGMENT_SUFFIX))
    assert segments
    for path in spill_dir.iterdir():
        assert SECRET.encode() not in path.read_bytes(), path.name
    on_disk = [value for path in segments for value, _key in read_segment(path)[1]]
    assert len(on_disk) == 20
    assert all(b'"auth":{"password":"[REDACTED]"}' in value for value in on_disk)

    handler = KafkaHandler(topic=topic, bootstrap_servers=kafka_broker.bootstrap,
                           spill_dir=str(spill_dir), linger_ms=0)
    logger.addHandler(handler)
    logger.info("starts the worker, which adopts the dead process's segments")
    deadline = time.monotonic() + 60
    while handler.stats()["replayed"] < 20 and time.monotonic() < deadline:
        time.sleep(0.05)  # the worker adopts and replays on its own; polled, bounded
    # 21 when the new record went to disk behind the adopted ones (the worker was already
    # replaying, and keeps order by queueing new records behind the spill).
    assert handler.stats()["replayed"] in (20, 21)

    records = [r for r in consume(kafka_broker.bootstrap, topic, 21) if b'"seq"' in r.value]
    assert sorted(v["seq"] for v in values(records)) == list(range(20))
    assert all(v["auth"] == {"password": MASK} for v in values(records))
    assert all(SECRET.encode() not in r.value for r in records)
