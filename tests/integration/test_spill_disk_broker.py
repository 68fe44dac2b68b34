"""The spill on a real small disk, and exiting while Kafka is down, against a real broker, with
the handler configured through dictConfig as an application would.

The small disk is a tmpfs the test mounts (root only): where it cannot, the test is skipped
and says why.
"""

from __future__ import annotations

import logging
import logging.config
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest
from broker.kraft import KafkaBroker
from kafka_read import consume, values
from spill_store_helpers import free_bytes, small_filesystem

from kafkalog import KafkaHandler
from kafkalog.cli.spill_info import spill_info
from kafkalog.spill import FRAME_OVERHEAD

APP = Path(__file__).with_name("spill_app.py")
DISK_BYTES = 2 * 1024 * 1024
LOGGED = 12_000  # of about 400 bytes: several times what the disk holds
KEY_LENGTH_BYTES = 4  # a frame's payload starts with the key's length


def configure(name: str, **handler: object) -> tuple[logging.Logger, KafkaHandler]:
    """A logger configured with dictConfig, as an application would; its KafkaHandler."""
    logging.config.dictConfig({
        "version": 1,
        "disable_existing_loggers": False,
        "handlers": {name: {"class": "kafkalog.KafkaHandler", **handler}},
        "loggers": {name: {"handlers": [name], "level": "INFO", "propagate": False}},
    })
    log = logging.getLogger(name)
    (kafka,) = log.handlers
    assert isinstance(kafka, KafkaHandler)
    return log, kafka


def wait_until_replayed(handler: KafkaHandler, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while handler.stats()["spill_pending_records"] and time.monotonic() < deadline:
        time.sleep(0.2)  # another thread's progress, polled; bounded
    assert handler.stats()["spill_pending_records"] == 0, handler.stats()


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_a_nearly_full_disk_keeps_what_fits_and_delivers_it_once_the_broker_is_back(
    fresh_broker: KafkaBroker, tmp_path: Path, policy: str
) -> None:
    topic = f"disk-{uuid.uuid4().hex[:12]}"
    name = f"app.disk.{policy}"
    fresh_broker.stop()
    with small_filesystem(tmp_path / "small", DISK_BYTES) as disk:
        free = free_bytes(disk)
        log, handler = configure(
            name, topic=topic, bootstrap_servers=fresh_broker.bootstrap,
            spill_dir=str(disk / "spill"), spill_full_policy=policy, request_timeout_ms=2000,
        )
        try:
            pad = "x" * 300
            for i in range(LOGGED):
                log.info("record %06d %s", i, pad, extra={"seq": i})
            handler.flush(60)
            stats = handler.stats()
            assert stats["resolved"] == LOGGED, stats
            kept = stats["spill_pending_records"]
            print(f"\n{policy}: {kept} of {LOGGED} records kept on a disk with {free} B free",
                  file=sys.stderr)

            fresh_broker.start()
            wait_until_replayed(handler, 120)
            records = consume(fresh_broker.bootstrap, topic, kept, timeout_s=90)
        finally:
            log.removeHandler(handler)
            handler.close()
    seqs = sorted({v["seq"] for v in values(records)})  # at least once: a repeat is one record
    # What the free space holds: frames of these records (their values, no key).
    frame = FRAME_OVERHEAD + KEY_LENGTH_BYTES + max(len(r.value) for r in records)
    fits = free // frame
    dropped = handler.stats()["dropped"]
    print(f"{policy}: delivered {len(seqs)}, dropped {dropped}; {fits} fit", file=sys.stderr)
    assert len(seqs) + dropped == LOGGED, "every record is delivered or counted as dropped"
    assert len(seqs) >= 0.7 * fits, f"delivered {len(seqs)} of the {fits} that fit"
    if policy == "drop_oldest":
        assert seqs == list(range(LOGGED - len(seqs), LOGGED)), "the newest are kept"
    else:
        assert seqs == list(range(len(seqs))), "the oldest are kept"


def closed_port() -> str:
    """127.0.0.1:<a port nobody listens on>: a broker that is down."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"127.0.0.1:{port}"


EXITING_APP = textwrap.dedent("""
    import logging, logging.config, sys
    bootstrap, topic, spill_dir, transport = sys.argv[1:5]
    logging.config.dictConfig({"version": 1, "handlers": {"kafka": {
        "class": "kafkalog.KafkaHandler", "topic": topic, "bootstrap_servers": bootstrap,
        "spill_dir": spill_dir, "transport": transport, "close_timeout_ms": 600000,
        "request_timeout_ms": 2000, "key": "k"}},
        "root": {"handlers": ["kafka"], "level": "INFO"}})
    log = logging.getLogger("exiting")
    for i in range(1000):
        log.info("x-%d", i, extra={"k": f"x-k{i % 5}", "seq": i})
    (handler,) = logging.getLogger().handlers
    handler.flush(120)
    print("spilled", handler.stats()["spilled"], flush=True)
    # no close(): the interpreter's exit closes the handler, as in most applications
""")


def test_exit_with_everything_spilled_and_the_broker_down_does_not_wait_for_close_timeout(
    kafka_broker: KafkaBroker, tmp_path: Path, transport_name: str
) -> None:
    topic = f"exit-{uuid.uuid4().hex[:12]}"
    spill = tmp_path / "spill"
    app = subprocess.Popen(
        [sys.executable, "-c", EXITING_APP, closed_port(), topic, str(spill), transport_name],
        stdout=subprocess.PIPE, text=True,
    )
    assert app.stdout is not None
    assert app.stdout.readline().split() == ["spilled", "1000"]
    # close_timeout_ms is 10 minutes: exiting within one means it did not wait for it
    assert app.wait(timeout=60) == 0
    on_disk = sum(r["records"] for r in spill_info(spill) if r["kind"] == "spill")
    assert on_disk == 1000, "what was spilled stays for the next process"

    nxt = subprocess.run(
        [sys.executable, str(APP), kafka_broker.bootstrap, topic, str(spill), "10", "y", "close",
         transport_name],
        capture_output=True, text=True, timeout=120, check=False,
    )
    assert nxt.returncode == 0, nxt.stderr
    got = values(consume(kafka_broker.bootstrap, topic, 1010, timeout_s=90))
    messages = {v["message"] for v in got}
    assert messages == {f"x-{i}" for i in range(1000)} | {f"y-{i}" for i in range(10)}
