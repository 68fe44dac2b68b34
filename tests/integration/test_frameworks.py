"""The framework examples against a real broker: each request's records found by its request_id.

Django and Flask run in this process with their test clients; the structlog and asyncio
examples run as the scripts users run.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
import re
import socket
import subprocess
import sys
from collections import defaultdict
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from kafka_read import consume

from kafkalog import KafkaHandler

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
HEX32 = re.compile(r"[0-9a-f]{32}")


def by_request_id(records: list[Any]) -> dict[str, list[dict[str, Any]]]:
    """Consumed records grouped by request_id; the message key must be that id too."""
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        value = json.loads(r.value)
        assert r.key == value["request_id"].encode()
        groups[value["request_id"]].append(value)
    return dict(groups)


def run_example(script: str, bootstrap: str, topic: str, *args: str) -> str:
    env = {**os.environ, "KAFKALOG_BOOTSTRAP_SERVERS": bootstrap, "KAFKALOG_TOPIC": topic}
    done = subprocess.run([sys.executable, str(EXAMPLES / script), *args], env=env,
                          capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def detach(*logger_names: str) -> None:
    """Close and remove the KafkaHandlers a dictConfig attached to these loggers."""
    for name in logger_names:
        log = logging.getLogger(name)
        for handler in [h for h in log.handlers if isinstance(h, KafkaHandler)]:
            log.removeHandler(handler)
            handler.close()


# --------------------------------------------------------------------------- Django


@pytest.fixture
def django_shop(kafka_broker: Any, topic: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """examples/django_app set up in this process, logging to ``topic``."""
    django = pytest.importorskip("django")
    from django.conf import settings  # noqa: PLC0415 - only once Django is known to be there

    if settings.configured:  # a test that configures Django must run it in a subprocess
        pytest.fail("Django was already set up in this process with other settings")
    monkeypatch.setenv("KAFKALOG_BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    monkeypatch.setenv("KAFKALOG_TOPIC", topic)
    monkeypatch.setenv("SHOP_DATABASE", ":memory:")
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "shop.settings")
    monkeypatch.syspath_prepend(str(EXAMPLES / "django_app"))
    django.setup()  # applies settings.LOGGING
    from django.core.management import call_command  # noqa: PLC0415

    call_command("migrate", verbosity=0)
    try:
        yield topic
    finally:
        detach("shop", "django.request")


def test_django_records_carry_their_request_fields(kafka_broker: Any, django_shop: str) -> None:
    from django.contrib.auth.models import User  # noqa: PLC0415 - needs django.setup()
    from django.test import Client  # noqa: PLC0415

    client = Client(raise_request_exception=False)
    given = client.get("/products/", headers={"X-Request-ID": "given-17"})
    generated = client.get("/products/")
    hostile = client.get("/products/", headers={"X-Request-ID": "x" * 500})
    user = User.objects.create_user("ann", password="not-a-real-password")
    client.force_login(user)
    cart = client.get("/cart/")
    boom = client.get("/boom/")
    assert [r.status_code for r in (given, generated, hostile, cart, boom)] == [200] * 4 + [500]
    assert given["X-Request-ID"] == "given-17"
    assert HEX32.fullmatch(generated["X-Request-ID"])
    assert HEX32.fullmatch(hostile["X-Request-ID"])  # too long to be taken: replaced
    handler = next(h for h in logging.getLogger("shop").handlers if isinstance(h, KafkaHandler))
    assert handler.flush(30)

    groups = by_request_id(consume(kafka_broker.bootstrap, django_shop, 8))
    assert sum(map(len, groups.values())) == 8
    for response in (given, generated, hostile):
        records = groups[response["X-Request-ID"]]
        assert [r["message"] for r in records] == ["listing products", "found 2 products"]
        assert all(r["method"] == "GET" and r["path"] == "/products/" for r in records)
        assert all("user_id" not in r for r in records)
        assert records[0]["service"] == "shop"
    (cart_record,) = groups[cart["X-Request-ID"]]
    assert cart_record["message"] == "showing cart"
    assert cart_record["user_id"] == user.pk
    assert cart_record["items"] == 3
    (error,) = groups[boom["X-Request-ID"]]  # logged by Django itself, inside the request
    assert error["logger"] == "django.request"
    assert error["path"] == "/boom/"
    assert error["exception"]["type"] == "RuntimeError"


# --------------------------------------------------------------------------- Flask


def load_example(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_flask_records_carry_their_request_fields(
    kafka_broker: Any, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKALOG_BOOTSTRAP_SERVERS", kafka_broker.bootstrap)
    flask_app = load_example("flask_app")
    flask_app.configure_logging(topic)
    try:
        client = flask_app.create_app().test_client()
        anonymous = client.get("/orders", headers={"X-Request-ID": "given-5"})
        login = client.post("/login/7")
        as_user = client.get("/orders")
        missing = client.get("/missing")
        assert [r.status_code for r in (anonymous, login, as_user, missing)] == [200, 200, 200, 404]
        assert anonymous.headers["X-Request-ID"] == "given-5"
        assert flask_app.kafka_handler().flush(30)
    finally:
        detach("flask_app")

    groups = by_request_id(consume(kafka_broker.bootstrap, topic, 6))
    assert sum(map(len, groups.values())) == 6
    first = groups["given-5"]
    assert [r["message"] for r in first] == ["listing orders", "found 2 orders"]
    assert all(r["method"] == "GET" and r["path"] == "/orders" for r in first)
    assert all("user_id" not in r for r in first)
    (login_record,) = groups[login.headers["X-Request-ID"]]
    assert "user_id" not in login_record  # read at the start of the request: not logged in yet
    assert [r["user_id"] for r in groups[as_user.headers["X-Request-ID"]]] == [7, 7]
    (warning,) = groups[missing.headers["X-Request-ID"]]
    assert (warning["level"], warning["path"], warning["user_id"]) == ("WARNING", "/missing", 7)


def test_flask_demo_runs(kafka_broker: Any, topic: str) -> None:
    out = run_example("flask_app.py", kafka_broker.bootstrap, topic)
    ids = out.split("request ids:")[1].split("\n")[0].split()
    assert len(ids) == 5
    assert "demo-given-id" in ids
    groups = by_request_id(consume(kafka_broker.bootstrap, topic, 8))
    assert set(groups) == set(ids)


# --------------------------------------------------------------------------- structlog


def test_structlog_bound_fields_arrive_at_the_top_level(kafka_broker: Any, topic: str) -> None:
    run_example("structlog_app.py", kafka_broker.bootstrap, topic)
    records = {json.loads(r.value)["message"]: json.loads(r.value)
               for r in consume(kafka_broker.bootstrap, topic, 3)}
    assert set(records) == {"order placed", "payment slow", "payment failed"}
    placed = records["order placed"]
    assert (placed["order_id"], placed["customer"], placed["session_id"]) == (42, "c-7", "s-1")
    assert (placed["items"], placed["total"], placed["level"]) == (3, 19.5, "INFO")
    assert placed["logger"] == "shop.checkout"
    assert placed["function"] == "main"  # the caller, not a structlog frame
    assert records["payment slow"]["wait_ms"] == 1200
    failed = records["payment failed"]
    assert (failed["level"], failed["attempt"]) == ("ERROR", 2)
    assert failed["exception"]["type"] == "TimeoutError"
    assert "event" not in failed  # structlog's event became the message


# --------------------------------------------------------------------------- asyncio


def test_asyncio_example_delivers_every_task_record(kafka_broker: Any, topic: str) -> None:
    out = run_example("asyncio_app.py", kafka_broker.bootstrap, topic, "--requests", "100")
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["records"] == summary["delivered"] == 500
    groups = by_request_id(consume(kafka_broker.bootstrap, topic, 500))
    assert len(groups) == 100
    for records in groups.values():
        assert [r["message"] for r in records] == [
            "order received", "step 0 done", "step 1 done", "step 2 done", "order done"]


def test_asyncio_loop_keeps_running_while_kafka_is_unreachable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: connections are refused
    env = {**os.environ, "KAFKALOG_BOOTSTRAP_SERVERS": f"127.0.0.1:{port}",
           "KAFKALOG_TOPIC": "unreachable"}
    command = [sys.executable, str(EXAMPLES / "asyncio_app.py"), "--requests", "100",
               "--close-timeout-ms", "300"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=180,
                          check=False)
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 1  # nothing delivered...
    assert summary["spilled"] == summary["records"] == 500  # ...everything kept on disk
    # A log call that waited on the network would take a connect timeout (seconds) at least.
    assert summary["log_call_us_mean"] < 2000
    assert summary["loop_lag_ms_logging_on"]["p50"] < 100
