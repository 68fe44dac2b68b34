"""Bounded polling: wait until a condition holds, or fail with what was last seen."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from broker.errors import BrokerError

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(
    fn: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.2,
    description: str = "condition",
) -> T:
    """Call ``fn`` until it returns something other than ``None``/``False``; return that.

    Exceptions raised by ``fn`` count as "not yet" (the last one is reported), so ``fn``
    can simply try the operation. Bounded by ``timeout`` seconds; raises ``TimeoutError``.
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    # The attempt cap is a second bound in case fn returns instantly and interval is 0.
    max_attempts = max(1, int(timeout / max(interval, 0.01)) + 1)
    for _ in range(max_attempts):
        try:
            result = fn()
        except BrokerError:
            # A broker process that died will not come back by itself: fail fast.
            raise
        except Exception as exc:
            last_error = exc
        else:
            if result is not None and result is not False:
                return result
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(interval, remaining))
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    raise TimeoutError(f"timed out after {timeout:.1f}s waiting for {description}{detail}")
