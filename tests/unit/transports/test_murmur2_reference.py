"""The test suite's murmur2 reference matches the Java client's published test vectors."""

from __future__ import annotations

import pytest
from murmur2_reference import murmur2

# From Apache Kafka's UtilsTest.testMurmur2 (clients/src/test/.../utils/UtilsTest.java).
JAVA_VECTORS = [
    (b"21", -973932308),
    (b"foobar", -790332482),
    (b"a-little-bit-long-string", -985981536),
    (b"a-little-bit-longer-string", -1486304829),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
    (b"abc", 479470107),
]


@pytest.mark.parametrize(("data", "expected"), JAVA_VECTORS)
def test_reference_murmur2_matches_java(data: bytes, expected: int) -> None:
    assert murmur2(data) == expected
