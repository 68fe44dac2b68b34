"""When the OpenSearch test harness counts a single node as started (``is_ready``)."""

from __future__ import annotations

import pytest
from search.node import is_ready


@pytest.mark.parametrize(
    ("health", "ready"),
    [
        ({"status": "green", "initializing_shards": 0, "relocating_shards": 0}, True),
        # A replica one node can never assign: yellow for good, and started.
        ({"status": "yellow", "initializing_shards": 0, "relocating_shards": 0,
          "unassigned_shards": 1}, True),
        # Shards still recovering from disk after a restart.
        ({"status": "yellow", "initializing_shards": 2, "relocating_shards": 0}, False),
        ({"status": "red", "initializing_shards": 0, "relocating_shards": 0}, False),
        ({"status": "red", "initializing_shards": 3, "relocating_shards": 0}, False),
        # An answer without the counts (an error body) is not a started node.
        ({"status": "yellow"}, False),
        ({}, False),
    ],
)
def test_ready_is_green_or_yellow_with_nothing_initializing(
    health: dict[str, object], ready: bool
) -> None:
    assert is_ready(health) is ready
