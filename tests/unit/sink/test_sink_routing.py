"""Index names from the --index pattern, and the fallback index."""

from __future__ import annotations

import pytest

from kafkalog.errors import ConfigError
from kafkalog.sink.routing import IndexPattern, index_name_problem

STAMP = "2026-12-04T19:17:31.472908Z"


def test_fields_and_the_date_of_the_timestamp_make_the_name() -> None:
    pattern = IndexPattern("logs-{app}-%Y.%m.%d", "fallback")
    assert pattern.render({"app": "Shop", "@timestamp": STAMP}) == "logs-shop-2026.12.04"


def test_a_nested_field_is_named_with_dots() -> None:
    pattern = IndexPattern("logs-{log.level}", "fallback")
    assert pattern.render({"log": {"level": "warning"}}) == "logs-warning"


@pytest.mark.parametrize("doc", [
    {"@timestamp": STAMP},                          # the field is missing
    {"app": None, "@timestamp": STAMP},             # null
    {"app": {"name": "x"}, "@timestamp": STAMP},    # an object
    {"app": "shop"},                                # no timestamp, and the pattern has a date
    {"app": "shop", "@timestamp": "yesterday"},     # a timestamp that is not a date
])  # fmt: skip
def test_a_record_that_cannot_fill_the_pattern_goes_to_the_fallback_index(doc: dict) -> None:
    assert IndexPattern("logs-{app}-%Y.%m.%d", "fallback").render(doc) == "fallback"


def test_characters_an_index_may_not_hold_become_underscores() -> None:
    pattern = IndexPattern("logs-{app}", "fallback")
    assert pattern.render({"app": "My App/Two"}) == "logs-my_app_two"


def test_timestamps_with_an_offset_and_epoch_millis_are_dates_in_utc() -> None:
    pattern = IndexPattern("logs-%Y.%m.%d.%H", "fallback")
    assert pattern.render({"@timestamp": "2026-12-05T01:30:00+02:00"}) == "logs-2026.12.04.23"
    assert pattern.render({"@timestamp": 0}) == "logs-1970.01.01.00"


def test_the_hour_cache_does_not_mix_up_hours() -> None:
    pattern = IndexPattern("logs-%Y.%m.%d.%H", "fallback")
    assert pattern.render({"@timestamp": "2026-12-04T19:59:59.9Z"}) == "logs-2026.12.04.19"
    assert pattern.render({"@timestamp": "2026-12-04T20:00:00.0Z"}) == "logs-2026.12.04.20"


def test_the_wildcard_covers_every_name_the_pattern_makes() -> None:
    assert IndexPattern("logs-{app}-%Y.%m.%d", "fb").wildcard() == "logs-*-*.*.*"


@pytest.mark.parametrize(("pattern", "fallback", "option"), [
    ("Logs-%Y", "fallback", "index"),
    ("logs-{}", "fallback", "index"),
    ("logs-{app", "fallback", "index"),
    ("logs", "_bad", "fallback_index"),
])  # fmt: skip
def test_a_pattern_that_cannot_make_an_index_name_is_refused(pattern: str, fallback: str,
                                                             option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        IndexPattern(pattern, fallback)
    assert caught.value.option == option


def test_index_name_rules() -> None:
    assert index_name_problem("logs-2026.12.04") is None
    assert index_name_problem("-logs") is not None
    assert index_name_problem("a" * 256) is not None
