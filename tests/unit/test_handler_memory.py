"""What a queued record costs in memory: about its length, not the encoder's buffer size."""

from __future__ import annotations

import logging
import tracemalloc

from kafkalog import KafkaHandler
from kafkalog.testing import MemoryTransport


def test_a_kept_record_costs_about_its_length_not_a_4_kib_encoder_buffer(
    logger: logging.Logger,
) -> None:
    # orjson 3.12+ hands back bytes in a buffer of 4 KiB or more that it never trims; records
    # held in the queue (or by a transport) must not pin that buffer, or queue_max_bytes
    # would bound only a tenth of the real memory.
    transport = MemoryTransport()
    handler = KafkaHandler(topic="t", transport_factory=MemoryTransport.factory(transport),
                           spill_dir=None)
    logger.addHandler(handler)
    logger.info("warm up")  # starts the worker and builds the formatter's caches
    assert handler.flush(30.0)
    count = 2000
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            logger.info("record %d", i, extra={"seq": i})
        assert handler.flush(30.0)
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    lengths = sum(len(value) for value, _key in transport.records[1:])
    assert len(transport.records) == count + 1
    assert held < 2 * lengths + 200 * count, f"{held / count:.0f} bytes held per record"
