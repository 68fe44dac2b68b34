"""Which partition each record of a batch goes to, as kafka-python's default partitioner picks.

A keyed record goes to the partition murmur2 of its key names (as with Kafka's Java client, so
a key lands on the same partition whichever client sent it); the hashes of recent keys are kept.
Unkeyed records are left to the caller, which spreads them in runs (see
:func:`kafkalog.transports.bulk.unkeyed_runs`).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from kafka.partitioner.default import murmur2

from kafkalog.transports.base import OutRecord

# Entries of the key -> murmur2 cache before it is emptied.
HASH_CACHE_SIZE = 4096


class KeyPartitioner:
    """murmur2 partitioning of keyed records, with a cache of the keys' hashes."""

    __slots__ = ("_hashes",)

    def __init__(self) -> None:
        self._hashes: dict[bytes, int] = {}

    def partition_of(self, key: bytes, partitions: Sequence[int]) -> int:
        """kafka-python's default partitioner for a keyed record: murmur2 of the key."""
        hashes = self._hashes
        h = hashes.get(key)
        if h is None:
            if len(hashes) >= HASH_CACHE_SIZE:
                hashes.clear()  # keys are mostly few (loggers, tenants) or one-off (request ids)
            h = hashes[key] = murmur2(key) & 0x7FFFFFFF
        return partitions[h % len(partitions)]

    def group(
        self, records: Sequence[OutRecord], topic: str, partitions: Sequence[int],
        pinned: int | None, skip: Collection[int], *, unkeyed_only: bool,
    ) -> tuple[dict[int, list[int]], list[int]]:
        """Record positions by partition, in order; and the positions of unkeyed records.

        ``partitions`` are the topic's, sorted; positions in ``skip`` are left out. With a
        ``pinned`` partition every record goes there; one the topic does not have is refused
        with the ``ValueError`` kafka-python's own ``send()`` raises.
        """
        if pinned is not None:
            if pinned not in partitions:
                raise ValueError(f"Unrecognized partition {pinned} for topic {topic}")
            return {pinned: [i for i in range(len(records)) if i not in skip]}, []
        if unkeyed_only and not skip:  # the default (no key_field): no loop in Python
            return {}, list(range(len(records)))
        groups: dict[int, list[int]] = {}
        unkeyed: list[int] = []
        partition_of = self.partition_of
        for i, (_, key) in enumerate(records):
            if skip and i in skip:
                continue
            if key is None:
                unkeyed.append(i)
            else:
                p = partition_of(key, partitions)
                group = groups.get(p)
                if group is None:
                    groups[p] = [i]
                else:
                    group.append(i)
        return groups, unkeyed
