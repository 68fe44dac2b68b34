"""The one exception the broker harness raises for its own failures."""

from __future__ import annotations

__all__ = ["BrokerError"]


class BrokerError(RuntimeError):
    """A broker (or its jars) could not be provisioned, started or stopped."""
