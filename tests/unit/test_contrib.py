"""kafkalog.contrib: request ids, the Django middleware (sync and async) and the Flask extension.

The Django middleware is driven with plain stand-ins for request and response, so these tests
do not configure Django (tests/integration/test_frameworks.py runs the real example project).
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from typing import Any

from flask import Flask, g

from kafkalog import context
from kafkalog.contrib import request_id_from
from kafkalog.contrib.django import RequestContextMiddleware
from kafkalog.contrib.flask import RequestContextExtension

HEX32 = re.compile(r"[0-9a-f]{32}")


def test_request_id_is_taken_when_plausible_and_generated_otherwise() -> None:
    assert request_id_from("abc-123") == "abc-123"
    assert request_id_from("x" * 128) == "x" * 128
    for bad in (None, "", "x" * 129, "has space", "line\r\nX-Evil: 1", "caf\u00e9"):
        assert HEX32.fullmatch(request_id_from(bad)), bad
    assert request_id_from(None) != request_id_from(None)


# --------------------------------------------------------------------------- Django


@dataclass
class User:
    pk: int
    is_authenticated: bool = True


@dataclass
class Request:
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "GET"
    path: str = "/p/"
    user: Any = None
    request_id: str | None = None

    async def auser(self) -> Any:
        return self.user


def test_django_middleware_binds_fields_for_the_request_only() -> None:
    seen: list[dict[str, Any]] = []

    def view(request: Request) -> dict[str, str]:
        seen.append(dict(context.current()))
        return {}

    middleware = RequestContextMiddleware(view)
    response = middleware(Request(headers={"X-Request-ID": "r-1"}, user=User(7)))
    assert seen == [{"request_id": "r-1", "method": "GET", "path": "/p/", "user_id": 7}]
    assert response["X-Request-ID"] == "r-1"
    assert dict(context.current()) == {}  # nothing left behind for the thread's next request


def test_django_middleware_anonymous_user_and_generated_id() -> None:
    seen: list[dict[str, Any]] = []
    request = Request(method="POST", user=User(0, is_authenticated=False))
    response = RequestContextMiddleware(lambda r: seen.append(dict(context.current())) or {})(
        request)
    assert "user_id" not in seen[0]
    assert seen[0]["method"] == "POST"
    assert HEX32.fullmatch(response["X-Request-ID"])
    assert request.request_id == response["X-Request-ID"]


def test_django_middleware_async_stack_loads_the_user_with_auser() -> None:
    async def view(request: Request) -> dict[str, str]:
        await asyncio.sleep(0)
        return {"seen": context.current()["request_id"], "user": context.current()["user_id"]}

    middleware = RequestContextMiddleware(view)

    async def main() -> list[Any]:
        calls = [middleware(Request(headers={"X-Request-ID": f"r-{n}"}, user=User(n)))
                 for n in range(5)]
        return list(await asyncio.gather(*calls))

    responses = asyncio.run(main())
    assert [(r["seen"], r["user"], r["X-Request-ID"]) for r in responses] == [
        (f"r-{n}", n, f"r-{n}") for n in range(5)]


# --------------------------------------------------------------------------- Flask


def make_app(**options: Any) -> tuple[Flask, list[tuple[str, dict[str, Any]]]]:
    app = Flask(__name__)
    seen: list[tuple[str, dict[str, Any]]] = []

    @app.before_request
    def app_hook() -> None:  # registered before the extension: must still see the fields
        seen.append(("hook", dict(context.current())))

    RequestContextExtension(app, **options)

    @app.get("/things/<int:n>")
    def things(n: int) -> str:
        seen.append(("view", dict(context.current())))
        assert g.request_id == context.current()["request_id"]
        return "ok"

    return app, seen


def test_flask_extension_binds_fields_before_the_apps_own_hooks() -> None:
    app, seen = make_app(user_id=lambda: 42)
    response = app.test_client().get("/things/3", headers={"X-Request-ID": "r-9"})
    assert response.headers["X-Request-ID"] == "r-9"
    fields = {"request_id": "r-9", "method": "GET", "path": "/things/3", "user_id": 42}
    assert seen == [("hook", fields), ("view", fields)]
    assert dict(context.current()) == {}


def test_flask_extension_with_init_app_and_no_user() -> None:
    app, seen = make_app()
    ext = app.extensions["kafkalog"]
    assert isinstance(ext, RequestContextExtension)
    client = app.test_client()
    first = client.get("/things/1").headers["X-Request-ID"]
    second = client.get("/things/2").headers["X-Request-ID"]
    assert HEX32.fullmatch(first) and HEX32.fullmatch(second) and first != second
    assert [s[1]["request_id"] for s in seen if s[0] == "view"] == [first, second]
    assert all("user_id" not in s[1] for s in seen)


def test_flask_extension_unbinds_after_a_failing_view() -> None:
    app = Flask(__name__)
    RequestContextExtension(app)

    @app.get("/fail")
    def fail() -> str:
        raise RuntimeError("boom")

    response = app.test_client().get("/fail")
    assert response.status_code == 500
    assert HEX32.fullmatch(response.headers["X-Request-ID"])
    assert dict(context.current()) == {}
