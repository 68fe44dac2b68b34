"""The worker's two retry policies, built with tenacity: exponential backoff with jitter,
capped at ``retry_backoff_max_ms``, retrying only errors whose type says they are retriable.

- **In memory**, a batch is retried for ``spill_after_ms`` (``delivery_timeout_ms`` without a
  spill), then given up to the spill.
- **Replay** of the spill is retried until it succeeds or the worker is past its stop
  deadline: while closing it goes on until ``close_timeout_ms``, because a broker that has
  just come back is often still being connected to, and giving up early would leave records
  on disk that this process could have sent.

Both stop at once when the worker is aborted; their sleeps are the worker's, which wait on an
Event (so that ``close()`` interrupts them) and, during replay, keep moving new records to
the spill.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception,
    stop_after_delay,
    stop_any,
)
from tenacity.stop import stop_base
from tenacity.wait import wait_base

from kafkalog.config import PipelineConfig
from kafkalog.errors import TransportError


class _StopAtDeadline(stop_base):
    """Stop retrying once the worker is aborted or past its stop deadline."""

    def __init__(self, past_deadline: Callable[[], bool]) -> None:
        self._past_deadline = past_deadline

    def __call__(self, retry_state: RetryCallState) -> bool:
        return self._past_deadline()


class _ExponentialJitter(wait_base):
    """``first_s * 2**(attempt - 1)`` plus up to ``first_s`` of jitter, at most ``max_s``.

    tenacity's ``wait_exponential_jitter`` does this too, but its parameter for the first wait
    changed name in 9.2 (``initial`` -> ``multiplier``, the old one deprecated) and kafkalog
    supports tenacity from 8.2: this class is the same on every version.
    """

    def __init__(self, first_s: float, max_s: float) -> None:
        self._first_s = first_s
        self._max_s = max_s

    def __call__(self, retry_state: RetryCallState) -> float:
        exponent = min(retry_state.attempt_number - 1, 64)  # past 2**64 the cap decides anyway
        wait = self._first_s * 2.0**exponent + random.uniform(0, self._first_s)
        return min(wait, self._max_s)


def _is_retriable(exc: BaseException) -> bool:
    return isinstance(exc, TransportError) and exc.retriable


def retry_policies(
    config: PipelineConfig,
    *,
    with_spill: bool,
    past_deadline: Callable[[], bool],
    sleep: Callable[[float], None],
    sleep_replaying: Callable[[float], None],
    before_sleep: Callable[[RetryCallState], None],
    give_up_now: Callable[[], bool] = lambda: False,
) -> tuple[Retrying, Retrying]:
    """The (in-memory, replay) retry policies for a worker with ``config``.

    ``give_up_now`` ends the in-memory retries early (the batch goes to the spill): the worker
    says so while Kafka is known to be down and a caller waits for the batch.
    """
    in_memory_s = config.delivery_timeout_ms / 1000
    if with_spill:
        in_memory_s = min(in_memory_s, config.spill_after_ms / 1000)
    backoff = _ExponentialJitter(config.retry_backoff_ms / 1000,
                                 config.retry_backoff_max_ms / 1000)
    retry = retry_if_exception(_is_retriable)
    in_memory = Retrying(
        retry=retry,
        stop=stop_any(stop_after_delay(in_memory_s), _StopAtDeadline(past_deadline),
                      _StopAtDeadline(give_up_now)),
        wait=backoff,
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
    replay = Retrying(
        retry=retry,
        stop=_StopAtDeadline(past_deadline),
        wait=backoff,
        sleep=sleep_replaying,
        before_sleep=before_sleep,
        reraise=True,
    )
    return in_memory, replay
