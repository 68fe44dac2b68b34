"""The worker's backoff: exponential from ``retry_backoff_ms`` with up to that much jitter,
capped at ``retry_backoff_max_ms``; the same on every tenacity kafkalog supports (8.2 on)."""

from __future__ import annotations

import warnings

import pytest
from tenacity import RetryCallState, Retrying

from kafkalog.config import PipelineConfig
from kafkalog.pipeline.retry import retry_policies


def waits(policy: Retrying, attempts: list[int]) -> list[float]:
    out = []
    for n in attempts:
        state = RetryCallState(policy, fn=None, args=(), kwargs={})
        state.attempt_number = n
        assert policy.wait is not None
        out.append(policy.wait(state))
    return out


def policies(**options: object) -> tuple[Retrying, Retrying]:
    config = PipelineConfig.from_options({"topic": "t", **options})
    return retry_policies(config, with_spill=True, past_deadline=lambda: False,
                          sleep=lambda s: None, sleep_replaying=lambda s: None,
                          before_sleep=lambda state: None)


@pytest.mark.parametrize("which", [0, 1])
def test_waits_double_from_retry_backoff_ms_with_jitter_up_to_the_cap(which: int) -> None:
    policy = policies(retry_backoff_ms=100, retry_backoff_max_ms=1000)[which]
    for _ in range(50):  # the jitter is random: every draw must stay in its window
        got = waits(policy, [1, 2, 3, 4, 5, 10, 10_000])
        for wait, low in zip(got[:4], (0.1, 0.2, 0.4, 0.8), strict=True):
            assert low <= wait <= min(low + 0.1, 1.0)
        assert got[4:] == [1.0, 1.0, 1.0], "capped at retry_backoff_max_ms"


def test_building_the_policies_warns_of_nothing() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a deprecated tenacity parameter would fail here
        in_memory, replay = policies(retry_backoff_ms=50, retry_backoff_max_ms=50)
    assert waits(in_memory, [7]) == waits(replay, [7]) == [0.05]
