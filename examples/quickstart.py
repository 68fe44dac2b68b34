"""kafkalog quickstart: log a few records to Kafka through ``dictConfig``, then read them back.

From a fresh clone, with a throwaway broker started just for this run (needs Java 17+, and
Maven the first time, to fetch the Kafka jars)::

    python3 -m venv .venv && .venv/bin/pip install -e . && \
        .venv/bin/python tests/broker/kraft.py exec -- .venv/bin/python examples/quickstart.py

Against a broker of your own::

    KAFKALOG_BOOTSTRAP_SERVERS=host:9092 .venv/bin/python examples/quickstart.py

The script logs four records to the topic ``quickstart-logs``, waits for the handler to
deliver them, reads the topic from the beginning (no consumer group, at most 30 s) and prints
the records of this run and the handler's counters. It exits with status 0 only if every
record it logged came back.
"""

from __future__ import annotations

import logging
import logging.config
import os
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from kafkalog import KafkaHandler

TOPIC = "quickstart-logs"
BOOTSTRAP = os.environ.get("KAFKALOG_BOOTSTRAP_SERVERS") or "127.0.0.1:9092"
READ_TIMEOUT_S = 30.0
FLUSH_TIMEOUT_S = 15.0
# Marks this run's records: the topic may hold records of earlier runs.
RUN_ID = uuid.uuid4().hex[:12]

log = logging.getLogger("quickstart")


@dataclass(frozen=True)
class Received:
    """One record read back from the topic."""

    partition: int
    offset: int
    key: str | None
    document: dict[str, Any]


def logging_config(spill_dir: str) -> dict[str, Any]:
    """The ``dictConfig`` for this app: everything at INFO and above goes to Kafka."""
    return {
        "version": 1,
        # Keep loggers created before this call (kafkalog's own "kafkalog" logger among them)
        # enabled, so that kafkalog's warnings reach stderr.
        "disable_existing_loggers": False,
        "handlers": {
            "kafka": {
                "class": "kafkalog.KafkaHandler",
                "topic": TOPIC,
                "bootstrap_servers": BOOTSTRAP,
                # The Kafka message key: the record attribute set with extra={"user_id": ...}.
                "key": "user_id",
                # Added to every record.
                "static_fields": {"service": "quickstart", "env": "dev", "run": RUN_ID},
                # Records Kafka can not take yet wait here. A real app keeps the default
                # (a per-app directory that outlives the process); a demo cleans up after itself.
                "spill_dir": spill_dir,
            },
        },
        "root": {"handlers": ["kafka"], "level": "INFO"},
    }


def kafka_handler() -> KafkaHandler:
    """The handler ``dictConfig`` installed on the root logger."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler, KafkaHandler):
            return handler
    raise RuntimeError("dictConfig did not install a KafkaHandler")


def log_some_records() -> int:
    """Log a handful of records the way an application would; return how many."""
    log.info("user signed in", extra={"user_id": "u-42", "plan": "pro"})
    log.info("cart updated: %d item(s)", 3, extra={"user_id": "u-42", "cart_total": 59.90})
    log.warning("disk usage at %d%%", 91)  # no user_id: this record has no key
    try:
        int("forty-two")
    except ValueError:
        log.exception("could not parse the quantity", extra={"user_id": "u-7"})
    return 4


def read_back(expected: int) -> list[Received]:
    """Read ``TOPIC`` from the beginning until this run's ``expected`` records arrived.

    No consumer group and no commits; gives up after ``READ_TIMEOUT_S`` seconds.
    Duplicates (possible: delivery is at-least-once) are recognised by the record ``id``.
    """
    deadline = time.monotonic() + READ_TIMEOUT_S
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=BOOTSTRAP.split(","),
            client_id="kafkalog-quickstart-reader",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            bootstrap_timeout_ms=int(READ_TIMEOUT_S * 1000),
        )
    except KafkaError as exc:
        print(f"cannot read {TOPIC!r} back: {exc}", file=sys.stderr)
        return []
    found: dict[str, Received] = {}
    try:
        partitions: set[int] | None = None
        while not partitions and time.monotonic() < deadline:
            partitions = consumer.partitions_for_topic(TOPIC)
            if not partitions:
                time.sleep(0.2)
        if not partitions:
            return []
        assigned = [TopicPartition(TOPIC, p) for p in sorted(partitions)]
        consumer.assign(assigned)
        consumer.seek_to_beginning(*assigned)
        while len(found) < expected and time.monotonic() < deadline:
            for messages in consumer.poll(timeout_ms=500).values():
                for message in messages:
                    try:
                        document = orjson.loads(message.value)
                    except orjson.JSONDecodeError:
                        continue  # not a kafkalog record
                    if not isinstance(document, dict) or document.get("run") != RUN_ID:
                        continue
                    key = None if message.key is None else message.key.decode("utf-8", "replace")
                    found[str(document.get("id"))] = Received(
                        message.partition, message.offset, key, document
                    )
    finally:
        consumer.close()
    return sorted(found.values(), key=lambda r: (r.partition, r.offset))


def main() -> int:
    """Configure logging, log, flush, read back, report. 0 if every record came back."""
    with tempfile.TemporaryDirectory(prefix="kafkalog-quickstart-") as spill_dir:
        logging.config.dictConfig(logging_config(spill_dir))
        handler = kafka_handler()
        try:
            print(f"logging to topic {TOPIC!r} at {BOOTSTRAP} (run {RUN_ID})")
            expected = log_some_records()
            # Waits (bounded) until the records are resolved: delivered, or safe in the spill
            # directory while the worker keeps retrying. Reading back below is the real proof.
            flushed = handler.flush(timeout=FLUSH_TIMEOUT_S)
            print(f"flush() returned {flushed}")

            received = read_back(expected)
            for record in received:
                doc = record.document
                print(
                    f"  {doc.get('level', '?'):<8} {doc.get('message')!r:<40} "
                    f"key={record.key!r:<7} partition={record.partition} offset={record.offset}"
                )
                if "exception" in doc:
                    print(f"           exception: {doc['exception'].get('type')}")
            print("handler stats:")
            print(orjson.dumps(handler.stats(), option=orjson.OPT_INDENT_2).decode())
        finally:
            # Close before the spill directory is removed (close delivers what is left).
            logging.getLogger().removeHandler(handler)
            handler.close()

    if len(received) == expected:
        print(f"OK: all {expected} records came back")
        return 0
    print(f"FAILED: {len(received)} of {expected} records came back within {READ_TIMEOUT_S:.0f}s")
    print(
        f"Is a broker running at {BOOTSTRAP}? To start a throwaway one for this script: "
        ".venv/bin/python tests/broker/kraft.py exec -- .venv/bin/python examples/quickstart.py"
    )
    return 1


if __name__ == "__main__":
    sys.exit(main())
