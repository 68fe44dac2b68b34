"""The sink's dead letters against their pipeline's outcome reports: a dead letter that the
pipeline dropped is never taken for safe, even when the wait for it ends before its report
reaches the callback (forced deterministically: the report is held until then)."""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest
from sink_fakes import record

from kafkalog import TransportError
from kafkalog.config import PipelineConfig
from kafkalog.pipeline import Outcome
from kafkalog.pipeline import core as pipeline_core
from kafkalog.sink.deadletters import DeadLetterError, DeadLetters
from kafkalog.sink.documents import Document
from kafkalog.testing import MemoryTransport


def test_a_dropped_dead_letter_is_not_taken_for_safe_when_its_report_comes_late(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # send() waited for the pipeline's resolved watermark, then looked for DROPPED reports;
    # the worker hands reports to the callback after resolving, so the drop could come after
    # the look, and the sink committed the offset of a record kept nowhere.
    transport = MemoryTransport()
    refused = TransportError("refused for good", retriable=False, cause_name="Refused")
    transport.fail_next = [refused, refused]  # the send and its confirming re-send
    monkeypatch.setattr(pipeline_core, "build_transport",
                        lambda _config, _hook: transport)
    config = PipelineConfig.from_options({"topic": "dead", "spill_dir": None, "linger_ms": 0})
    letters = DeadLetters(config, wait_s=30.0)
    pipeline = letters._pipeline
    waited = threading.Event()  # send() is past the pipeline's wait
    release = threading.Event()  # the held report may reach the callback now
    ledger = pipeline._ledger
    report = ledger._callback
    assert report is not None

    def held(outcome: Outcome, numbers: range) -> None:
        assert release.wait(30.0)
        report(outcome, numbers)

    ledger._callback = held
    real_wait: Callable[..., bool] = pipeline.wait

    def wait_then_say_so(number: int, timeout_s: float | None = None) -> bool:
        try:
            return real_wait(number, timeout_s)
        finally:
            waited.set()

    pipeline.wait = wait_then_say_so  # type: ignore[method-assign]
    errors: list[Exception] = []

    def send() -> None:
        doc = Document(record(7, b"not json"), "id-7", "logs", b"{}", invalid="not JSON")
        try:
            letters.send([(doc, "not JSON")])
        except DeadLetterError as exc:
            errors.append(exc)

    sender = threading.Thread(target=send)
    sender.start()
    try:
        assert waited.wait(30.0), "the dead letter was never resolved"
        release.set()
        sender.join(30.0)
        assert not sender.is_alive()
        assert len(errors) == 1, "a dropped dead letter was taken for safe"
        assert "dropped" in str(errors[0])
    finally:
        release.set()
        letters.close()
