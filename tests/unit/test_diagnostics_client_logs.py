"""kafka-python's own log lines: kept off the application's console by default and summarised
in kafkalog's warnings, unless the application configured the ``kafka`` logger itself."""

from __future__ import annotations

import logging
import logging.config
import logging.handlers
from collections.abc import Iterator

import pytest

from kafkalog import diagnostics
from kafkalog.diagnostics import ClientLogSummary, quiet_client_logs, show_client_logs


class Console(logging.handlers.BufferingHandler):
    """The application's console, as "logger: message" lines."""

    @property
    def messages(self) -> list[str]:
        return [f"{record.name}: {record.getMessage()}" for record in self.buffer]


@pytest.fixture
def app_console() -> Iterator[Console]:
    """The application's console: a handler on the root logger. The ``kafka`` loggers and
    kafkalog's summary state are put back as they were after the test."""
    kafka_loggers = [logging.getLogger("kafka"), logging.getLogger("kafka.cluster")]
    saved = [(each, each.level, list(each.handlers), each.propagate, each.disabled)
             for each in kafka_loggers]
    state = diagnostics._client_logs
    diagnostics._client_logs = diagnostics._ClientLogs()
    for each in kafka_loggers:  # as kafka-python leaves them (earlier tests built clients)
        each.setLevel(logging.NOTSET)
        each.handlers[:] = [h for h in each.handlers if type(h) is logging.NullHandler]
        each.propagate = True
        each.disabled = False
    console = Console(capacity=10_000)
    logging.root.addHandler(console)
    try:
        yield console
    finally:
        logging.root.removeHandler(console)
        diagnostics._client_logs = state
        for each, level, handlers, propagate, disabled in saved:
            each.setLevel(level)
            each.handlers[:] = handlers
            each.propagate = propagate
            each.disabled = disabled


def test_kafka_python_errors_stay_off_the_console_and_are_summarised(
    app_console: Console, warnings_heard: list[str]
) -> None:
    quiet_client_logs()
    quiet_client_logs()  # once per client built: idempotent
    source = logging.getLogger("kafka")
    assert sum(isinstance(h, ClientLogSummary) for h in source.handlers) == 1
    clock = [0.0]
    for summary in source.handlers:
        if isinstance(summary, ClientLogSummary):
            summary._clock = lambda: clock[0]
    for i in range(50):  # lines that go on for 10 s: summarised once
        clock[0] = i * 0.2
        logging.getLogger("kafka.cluster").error("Topic %s not found in cluster metadata", "t")
    assert app_console.messages == []
    assert warnings_heard == [
        "kafka-python logged ERROR (kafka.cluster): Topic t not found in cluster "
        "metadata [see 'kafka-python's own log lines' in docs/troubleshooting.md to show them]"
    ]


def test_a_kafka_logger_the_application_configured_is_left_alone(app_console: Console) -> None:
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "loggers": {"kafka": {"level": "WARNING"}},
    })  # fmt: skip
    quiet_client_logs()
    logging.getLogger("kafka.cluster").error("Topic t not found in cluster metadata")
    assert app_console.messages == ["kafka.cluster: Topic t not found in cluster metadata"]


def test_configuring_the_kafka_logger_later_undoes_the_summary(app_console: Console) -> None:
    quiet_client_logs()
    logging.getLogger("kafka").setLevel(logging.WARNING)  # the application, after the fact
    quiet_client_logs()  # the next client kafkalog builds notices
    logging.getLogger("kafka.cluster").error("shown")
    assert app_console.messages == ["kafka.cluster: shown"]
    assert not any(isinstance(h, ClientLogSummary) for h in logging.getLogger("kafka").handlers)


def test_dictconfig_giving_the_kafka_logger_handlers_keeps_them_working(
    app_console: Console,
) -> None:
    quiet_client_logs()
    logging.config.dictConfig({
        "version": 1, "disable_existing_loggers": False,
        "handlers": {"mine": {"class": "logging.NullHandler"}},
        "loggers": {"kafka": {"handlers": ["mine"], "propagate": True}},
    })  # fmt: skip
    quiet_client_logs()
    logging.getLogger("kafka.cluster").error("through")
    assert app_console.messages == ["kafka.cluster: through"]


def test_show_client_logs_lets_them_through_for_good(app_console: Console) -> None:
    quiet_client_logs()
    show_client_logs()
    quiet_client_logs()  # a client built later does not hide them again
    logging.getLogger("kafka.cluster").error("visible")
    assert app_console.messages == ["kafka.cluster: visible"]


def test_a_transient_run_of_client_lines_is_not_summarised(warnings_heard: list[str]) -> None:
    now = [100.0]
    summary = ClientLogSummary(persist_s=5.0, clock=lambda: now[0])
    source = logging.getLogger("kafka.summary-test")
    record = source.makeRecord(source.name, logging.ERROR, __file__, 1, "Topic t not found",
                               (), None)
    for step in (0.0, 0.5, 1.0):  # a topic created on first use: over within a second
        now[0] = 100.0 + step
        summary.handle(record)
    assert warnings_heard == []
    now[0] = 200.0  # a minute later, a new run that goes on for 5 s is summarised
    summary.handle(record)
    assert warnings_heard == []
    now[0] = 205.0
    summary.handle(record)
    assert len(warnings_heard) == 1 and "Topic t not found" in warnings_heard[0]
