"""Django middleware binding each request's id, method, path and user id to its log records.

Add it to ``MIDDLEWARE`` after ``AuthenticationMiddleware`` (so the user is known) and before
the middleware whose records should carry the fields::

    MIDDLEWARE = [
        ...,
        "django.contrib.auth.middleware.AuthenticationMiddleware",
        "kafkalog.contrib.django.RequestContextMiddleware",
        ...,
    ]

Every record logged while the request is handled - by views, by Django's own
``django.request`` logger for a 500 - carries ``request_id``, ``method``, ``path`` and, for
an authenticated user, ``user_id`` (the user's primary key). The request id is taken from the
``X-Request-ID`` header when it is a plausible id, else generated; it is set on
``request.request_id`` and on the response's ``X-Request-ID`` header.

Works under WSGI and ASGI: with an async stack the user is loaded with ``request.auser()``.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import iscoroutinefunction, markcoroutinefunction

from kafkalog import context
from kafkalog.contrib import REQUEST_ID_HEADER, request_fields, request_id_from

__all__ = ["RequestContextMiddleware"]


def _user_id(user: Any) -> Any:
    # AnonymousUser and a missing auth app both mean "no user id".
    if user is not None and getattr(user, "is_authenticated", False):
        return getattr(user, "pk", None)
    return None


class RequestContextMiddleware:
    """Bind ``request_id``, ``method``, ``path`` and ``user_id`` for the whole request.

    Subclass and set :attr:`header` to read and write another header name.
    """

    sync_capable = True
    async_capable = True
    #: Request and response header carrying the request id.
    header: str = REQUEST_ID_HEADER

    def __init__(self, get_response: Callable[[Any], Any]) -> None:
        self.get_response = get_response
        self._is_async = iscoroutinefunction(get_response)
        if self._is_async:
            markcoroutinefunction(self)

    def __call__(self, request: Any) -> Any:
        """Handle one request (returns an awaitable on an async stack)."""
        if self._is_async:
            return self._acall(request)
        fields = self._fields(request, _user_id(getattr(request, "user", None)))
        with context.bound(**fields):
            response = self.get_response(request)
        response[self.header] = fields["request_id"]
        return response

    async def _acall(self, request: Any) -> Any:
        auser: Callable[[], Awaitable[Any]] | None = getattr(request, "auser", None)
        user = await auser() if auser is not None else None
        fields = self._fields(request, _user_id(user))
        with context.bound(**fields):
            response = await self.get_response(request)
        response[self.header] = fields["request_id"]
        return response

    def _fields(self, request: Any, user_id: Any) -> dict[str, Any]:
        request_id = request_id_from(request.headers.get(self.header))
        request.request_id = request_id
        return request_fields(request_id, request.method, request.path, user_id)
