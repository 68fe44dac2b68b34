"""Schema names and static fields (kafkalog.formatting.schema): where static fields go in each
schema, made JSON-safe once, and what is refused."""

from __future__ import annotations

from typing import Any

import pytest
from record_json import (
    encode,
    make_record,
)

from kafkalog.formatting import JsonFormatter


def test_static_fields_default_schema() -> None:
    static: dict[str, Any] = {"service": "billing", "env": "prod", "tags": ["a"]}
    formatter = JsonFormatter(static_fields=static)
    static["env"] = "mutated later"
    static["tags"].append("b")
    doc = encode(make_record(extra={"user": "u"}), formatter)
    assert doc["service"] == "billing"
    assert doc["env"] == "prod"
    assert doc["tags"] == ["a"]
    keys = list(doc)
    assert keys.index("id") < keys.index("service") < keys.index("user")


def test_static_fields_are_sanitised_once() -> None:
    formatter = JsonFormatter(static_fields={"ratio": float("inf"), "big": 2**80})
    doc = encode(make_record(), formatter)
    assert doc["ratio"] == "Infinity"
    assert doc["big"] == str(2**80)


def test_static_field_validation() -> None:
    with pytest.raises(ValueError, match="level"):
        JsonFormatter(static_fields={"level": "x"})
    with pytest.raises(ValueError, match="log"):
        JsonFormatter("ecs", static_fields={"log": {}})
    with pytest.raises(TypeError):
        JsonFormatter(static_fields={1: "x"})  # type: ignore[dict-item]
    with pytest.raises(TypeError):
        JsonFormatter(static_fields=["service"])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="environment"):
        JsonFormatter("ecs", static_fields={"env": "a", "environment": "b"})


def test_ecs_service_mapping_static() -> None:
    formatter = JsonFormatter("ecs", static_fields={"service": {"name": "a", "version": "1.2"}})
    doc = encode(make_record(extra={"service": "x"}), formatter)
    assert doc["service"] == {"name": "a", "version": "1.2"}
    assert doc["extra_service"] == "x"


@pytest.mark.parametrize("schema", ["", "json", "ECS", "Default"])
def test_invalid_schema(schema: str) -> None:
    with pytest.raises(ValueError, match="schema"):
        JsonFormatter(schema)
