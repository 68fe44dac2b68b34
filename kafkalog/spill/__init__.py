"""The spill: CRC-framed segment files on local disk that keep the records Kafka could not
take yet, adopted from dead writers and replayed in order (see ``docs/spill-format.md``).

:mod:`~kafkalog.spill.format` is the on-disk format (pure functions), :mod:`~kafkalog.spill.files`
the file operations and writer locks, :mod:`~kafkalog.spill.store` the store a pipeline writes
to and replays from. The store is made of :mod:`~kafkalog.spill.writer` (this process's own
segment files), :mod:`~kafkalog.spill.segments` (the replay order), :mod:`~kafkalog.spill.adoption`
(dead writers' segments) and :mod:`~kafkalog.spill.durability` (what the listener hears).
:mod:`~kafkalog.spill.inspect` looks at a directory from outside.
"""

from kafkalog.spill.format import (
    DEAD_LETTER_SUFFIX,
    FRAME_OVERHEAD,
    LOCK_SUFFIX,
    SEGMENT_SUFFIX,
    ScanResult,
    SegmentHeader,
    SpillRecord,
    decode_header,
    encode_frame,
    encode_header,
    encode_payload,
    iter_segments,
    read_segment,
    scan_frames,
)
from kafkalog.spill.segments import ReplayBatch
from kafkalog.spill.store import SpillStore

__all__ = [
    "DEAD_LETTER_SUFFIX",
    "FRAME_OVERHEAD",
    "LOCK_SUFFIX",
    "SEGMENT_SUFFIX",
    "ReplayBatch",
    "ScanResult",
    "SegmentHeader",
    "SpillRecord",
    "SpillStore",
    "decode_header",
    "encode_frame",
    "encode_header",
    "encode_payload",
    "iter_segments",
    "read_segment",
    "scan_frames",
]
