"""Kafka's v2 record format, written for a whole batch of records in one pass.

kafka-python's ``KafkaProducer.send()`` appends records one at a time, and most of its cost per
record is bookkeeping around that append (a future, a lock, a size estimate, a partitioner
call, varints built byte by byte). The kafka-python transport instead encodes each producer
batch's records here, all at once, and hands kafka-python the finished body; kafka-python still
writes the batch header (producer id, epoch and sequence for idempotence, the CRC) and
compresses, sends and retries the batch.

A record in a v2 batch (https://kafka.apache.org/documentation/#record) is: its length, then
attributes (always 0), timestamp delta, offset delta, key length and key, value length and
value, and the header count; every integer is a zigzag varint. This module knows nothing of
kafka-python: it only produces bytes, which the transport checks against kafka-python's own
encoder before using them (see ``kafkalog.transports.bulk``).
"""

from __future__ import annotations

from collections.abc import Sequence

# Size of a v2 batch header: base offset (8), length (4), leader epoch (4), magic (1), CRC (4),
# attributes (2), last offset delta (4), first and max timestamps (8 + 8), producer id (8),
# epoch (2), base sequence (4), record count (4).
BATCH_HEADER_BYTES = 61
# Most bytes a record adds beyond its key and value: length (5), attributes (1), timestamp
# delta (10), offset delta (5), as kafka-python's own estimate has it.
MAX_RECORD_OVERHEAD = 21

_TABLE_SIZE = 1 << 14


def varint(n: int) -> bytes:
    """``n`` as a zigzag varint (Kafka's signed variable-length integer)."""
    v = (n << 1) ^ (n >> 63)
    out = bytearray()
    while v & ~0x7F:
        out.append((v & 0x7F) | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


# Lengths and offset deltas are almost always small: look them up instead of encoding each.
_VARINTS = [varint(i) for i in range(_TABLE_SIZE)]
_NULL = varint(-1)  # the length of an absent key
# Attributes 0, then a timestamp delta of 0: every record of a batch carries the batch's time.
_ATTRS_AND_TIME = b"\x00\x00"
_NO_HEADERS = b"\x00"


def record_size(value: bytes, key: bytes | None) -> int:
    """The most bytes one record can take in a batch (header included): kafka-python's bound."""
    return BATCH_HEADER_BYTES + MAX_RECORD_OVERHEAD + len(value) + (0 if key is None else len(key))


def encode_chunks(
    records: Sequence[tuple[bytes, bytes | None]], limit_bytes: int
) -> list[tuple[int, bytes]]:
    """Encode ``records`` as the bodies of as few batches of at most ``limit_bytes`` as needed.

    Returns ``(count, body)`` per batch, in order: ``body`` is what follows the batch header
    for the next ``count`` records. A batch holds at least one record, so a record larger than
    the limit travels alone, as with kafka-python. Offset deltas restart at 0 in every batch.
    """
    table = _VARINTS
    size_limit = _TABLE_SIZE
    chunks: list[tuple[int, bytes]] = []
    parts: list[bytes] = []
    used = BATCH_HEADER_BYTES
    offset = 0
    for value, key in records:
        value_len = len(value)
        value_head = table[value_len] if value_len < size_limit else varint(value_len)
        if key is None:
            key_part = _NULL
        else:
            key_len = len(key)
            key_part = (table[key_len] if key_len < size_limit else varint(key_len)) + key
        # Everything but the offset delta, whose width depends on where the record lands.
        fixed = 3 + len(key_part) + len(value_head) + value_len
        offset_part = table[offset] if offset < size_limit else varint(offset)
        body_len = fixed + len(offset_part)
        length = table[body_len] if body_len < size_limit else varint(body_len)
        if offset and used + len(length) + body_len > limit_bytes:
            chunks.append((offset, b"".join(parts)))
            parts = []
            used = BATCH_HEADER_BYTES
            offset = 0
            offset_part = table[0]
            body_len = fixed + 1
            length = table[body_len] if body_len < size_limit else varint(body_len)
        parts += (length, _ATTRS_AND_TIME, offset_part, key_part, value_head, value, _NO_HEADERS)
        used += len(length) + body_len
        offset += 1
    if offset:
        chunks.append((offset, b"".join(parts)))
    return chunks
