"""The delivery pipeline's options: the queue's bounds, and the worker's batching and retries."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from kafkalog.config.values import Validator, at_least, one_of
from kafkalog.errors import ConfigError

OverflowPolicy = Literal["spill", "drop_newest", "drop_oldest", "block"]

OVERFLOW_POLICIES: tuple[str, ...] = ("spill", "drop_newest", "drop_oldest", "block")

OPTIONS: dict[str, Validator] = {
    # The in-memory queue between the producer's thread and the worker.
    "queue_max_records": at_least(1),
    "queue_max_bytes": at_least(1),
    "overflow_policy": one_of(OVERFLOW_POLICIES),
    "block_timeout_ms": at_least(0),
    # The worker: when a batch is due, how long a record may take, how it backs off.
    "linger_ms": at_least(0),
    "batch_size": at_least(1),
    "delivery_timeout_ms": at_least(1),
    "retry_backoff_ms": at_least(0),
    "retry_backoff_max_ms": at_least(0),
    "close_timeout_ms": at_least(0),
}


def check_relations(c: Mapping[str, Any]) -> None:
    """The pipeline options of the built config ``c`` must agree with each other, and with
    the largest request the transport sends."""
    if c["retry_backoff_max_ms"] < c["retry_backoff_ms"]:
        raise ConfigError(
            "retry_backoff_max_ms",
            f"must be >= retry_backoff_ms ({c['retry_backoff_ms']}), "
            f"got {c['retry_backoff_max_ms']}",
        )
    if c["queue_max_bytes"] < c["max_request_size"]:
        raise ConfigError(
            "queue_max_bytes",
            f"must be >= max_request_size ({c['max_request_size']}) so that one "
            "record of the largest size fits",
        )
