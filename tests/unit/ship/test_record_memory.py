"""What a shipped record costs in memory while it waits in the queue: about its length."""

from __future__ import annotations

import tracemalloc

from kafkalog.ship.parsers import parser_for
from kafkalog.ship.record import RecordBuilder


def test_a_built_record_costs_about_its_length_not_a_4_kib_encoder_buffer() -> None:
    # orjson 3.12+ hands back bytes in a buffer of 4 KiB or more that it never trims; a queue
    # of such records pinned ten times what queue_max_bytes allows (0.5-0.9 GiB of RSS in
    # the catch-up benchmark).
    builder = RecordBuilder(schema="default", static_fields={"service": "web"},
                            max_bytes=1_000_000)
    parse = parser_for("raw")
    count = 2000
    kept: list[bytes] = []
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(count):
            kept.append(builder.build(parse(f"line {i} " + "." * 60), path="/var/log/a.log",
                                      ino=7, offset=i * 70, source="abc", read_time=1.0))
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    lengths = sum(map(len, kept))
    assert held < 2 * lengths + 200 * count, f"{held / count:.0f} bytes held per record"
