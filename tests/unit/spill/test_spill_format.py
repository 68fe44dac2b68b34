"""Specification of the spill's on-disk format (kafkalog.spill.format), property-tested.

CRC-framed segments that survive truncation and bit rot: a reader gets exactly the frames
that are intact, and never takes noise (runs of zero bytes) for a frame.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from spill_store_helpers import TOPIC, WRITER

from kafkalog.spill import (
    FRAME_OVERHEAD,
    SEGMENT_SUFFIX,
    SpillRecord,
    decode_header,
    encode_frame,
    encode_header,
    encode_payload,
    read_segment,
    scan_frames,
)


def read_blob(blob: bytes) -> tuple[Any, list[SpillRecord], Any]:
    """read_segment on a file holding exactly ``blob``."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{WRITER.hex()}-0000000001{SEGMENT_SUFFIX}"
        path.write_bytes(blob)
        return read_segment(path)




# Values lean towards runs of zero bytes: twelve of them look like an empty frame.
VALUES = st.binary(max_size=40) | st.integers(0, 40).map(lambda n: b"\x00" * n)
RECORDS = st.tuples(VALUES, st.none() | st.binary(max_size=10))


def _layout(records: list[SpillRecord]) -> tuple[bytes, int, list[tuple[int, int]]]:
    """A segment holding ``records``: its bytes, header size and each frame's (start, end)."""
    header = encode_header(WRITER, TOPIC, 1_700_000_000_000)
    spans = []
    pos = len(header)
    frames = []
    for value, key in records:
        frame = encode_frame(encode_payload(value, key))
        spans.append((pos, pos + len(frame)))
        frames.append(frame)
        pos += len(frame)
    return header + b"".join(frames), len(header), spans


def test_header_round_trips_and_frame_layout_is_as_documented() -> None:
    header = encode_header(WRITER, "tøpic", 1234)
    parsed = decode_header(header + b"rest")
    assert parsed is not None
    assert (parsed.writer_id, parsed.topic, parsed.created_ms) == (WRITER.hex(), "tøpic", 1234)
    assert parsed.size == len(header)
    assert header[:4] == b"KLSP"
    payload = encode_payload(b"value", b"key")
    assert payload == b"\x00\x00\x00\x03keyvalue"
    assert encode_payload(b"value", None) == b"\xff\xff\xff\xffvalue"
    frame = encode_frame(payload)
    assert len(frame) == len(payload) + FRAME_OVERHEAD
    assert frame[:4] == frame[-4:] == len(payload).to_bytes(4, "big")


@settings(max_examples=200, deadline=None)
@given(records=st.lists(RECORDS, max_size=8), data=st.data())
def test_a_truncated_segment_yields_exactly_its_complete_frames(
    records: list[SpillRecord], data: st.DataObject
) -> None:
    blob, header_len, spans = _layout(records)
    cut = data.draw(st.integers(0, len(blob)), label="cut")
    header, got, scan = read_blob(blob[:cut])
    if cut < header_len:
        assert header is None
        assert got == []
        return
    assert header is not None
    complete = [r for r, (_, end) in zip(records, spans, strict=True) if end <= cut]
    assert got == complete
    assert scan.corrupt == 0, "a cut is a torn tail, not corruption"
    last_end = spans[len(complete) - 1][1] if complete else header_len
    assert scan.torn_tail_bytes == cut - last_end


@settings(max_examples=250, deadline=None)
@given(records=st.lists(RECORDS, min_size=1, max_size=8), data=st.data())
def test_bit_flips_lose_only_the_damaged_frames(
    records: list[SpillRecord], data: st.DataObject
) -> None:
    """1-3 flipped bits in the body: every untouched frame is recovered, in order.

    A damaged frame followed by an intact one is a corrupt region (a run of consecutive damaged
    frames counts once). Damage in the last frame(s) is indistinguishable from a write cut short
    by a crash: it is reported as a torn tail, not as corruption. CRC32C detects every error of
    at most 3 bits in frames this short, so no damaged frame can pass for a valid one.
    """
    blob, header_len, spans = _layout(records)
    bits = data.draw(
        st.lists(
            st.integers(header_len * 8, len(blob) * 8 - 1), min_size=1, max_size=3, unique=True
        ),
        label="bits",
    )
    damaged_blob = bytearray(blob)
    for bit in bits:
        damaged_blob[bit // 8] ^= 0x80 >> (bit % 8)
    damaged = [any(s <= bit // 8 < e for bit in bits) for s, e in spans]

    header, got, scan = read_blob(bytes(damaged_blob))

    assert header is not None
    assert got == [r for r, bad in zip(records, damaged, strict=True) if not bad]
    last_intact = max((i for i, bad in enumerate(damaged) if not bad), default=-1)
    runs_before_intact = sum(
        1
        for i, bad in enumerate(damaged)
        if bad and (i == 0 or not damaged[i - 1]) and i < last_intact
    )
    assert scan.corrupt == runs_before_intact
    if last_intact == len(records) - 1:
        assert scan.torn_tail_bytes == 0
    else:
        assert scan.torn_tail_bytes == len(blob) - spans[last_intact + 1][0]


@pytest.mark.parametrize("zeros", [12, 13, 40])
def test_zero_bytes_after_a_damaged_frame_are_not_mistaken_for_an_empty_frame(zeros: int) -> None:
    """Twelve zero bytes look like ``length 0 | crc32c(b"") = 0 | length 0``.

    No record encodes to an empty payload (it has at least the key length), so such a "frame"
    is noise: it must neither become a record nor crash the reader.
    """
    records: list[SpillRecord] = [(b"\x00" * zeros, None), (b"after", None)]
    blob, _, spans = _layout(records)
    first_start, first_end = spans[0]
    broken = bytearray(blob)
    broken[first_start + 5] ^= 0x01  # the first frame's CRC no longer matches
    header, got, scan = read_blob(bytes(broken))
    assert header is not None
    assert got == [(b"after", None)]
    assert scan.corrupt == 1
    # ... and a torn last frame full of zeros is a torn tail, not a phantom record.
    header, got, scan = read_blob(blob[: first_end - 2])
    assert got == []
    assert scan.torn_tail_bytes == first_end - 2 - first_start
    assert scan_frames(b"\x00" * 64, 0).frames == []
