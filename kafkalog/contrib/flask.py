"""Flask extension binding each request's id, method, path and user id to its log records.

::

    from flask import Flask, session
    from kafkalog.contrib.flask import RequestContextExtension

    app = Flask(__name__)
    RequestContextExtension(app, user_id=lambda: session.get("user_id"))
    # or, for an application factory: ext = RequestContextExtension(); ext.init_app(app)

Every record logged between the request's first ``before_request`` hook and its teardown
carries ``request_id``, ``method``, ``path`` and, when ``user_id`` returns something other
than ``None``, ``user_id``. The request id is taken from the ``X-Request-ID`` header when it is
a plausible id, else generated; it is stored as ``g.request_id`` and set on the response's
``X-Request-ID`` header.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask, Response, g, request

from kafkalog import context
from kafkalog.contrib import REQUEST_ID_HEADER, request_fields, request_id_from

__all__ = ["RequestContextExtension"]


class RequestContextExtension:
    """Bind ``request_id``, ``method``, ``path`` and ``user_id`` for each request of an app.

    Args:
        app: the application; or call :meth:`init_app` later.
        user_id: called at the start of each request, inside the request context; returns the
            logged-in user's id or ``None``. Flask has no user model of its own, so without it
            no ``user_id`` is bound. With Flask-Login:
            ``lambda: current_user.get_id() if current_user.is_authenticated else None``.
        header: the request and response header carrying the request id.
    """

    def __init__(
        self,
        app: Flask | None = None,
        *,
        user_id: Callable[[], Any] | None = None,
        header: str = REQUEST_ID_HEADER,
    ) -> None:
        self.user_id = user_id
        self.header = header
        if app is not None:
            self.init_app(app)

    def init_app(self, app: Flask) -> None:
        """Register the request hooks on ``app``.

        Registered first among ``before_request`` hooks, so records logged by the app's own
        hooks carry the fields too.
        """
        app.before_request_funcs.setdefault(None, []).insert(0, self._bind)
        app.after_request(self._set_header)
        app.teardown_request(self._unbind)
        app.extensions["kafkalog"] = self

    def _bind(self) -> None:
        request_id = request_id_from(request.headers.get(self.header))
        g.request_id = request_id
        user = self.user_id() if self.user_id is not None else None
        fields = request_fields(request_id, request.method, request.path, user)
        g._kafkalog_binding = context.bind(**fields)

    def _set_header(self, response: Response) -> Response:
        request_id = g.get("request_id")
        if request_id is not None:
            response.headers[self.header] = request_id
        return response

    def _unbind(self, _exc: BaseException | None) -> None:
        binding: context.Binding | None = g.pop("_kafkalog_binding", None)
        if binding is not None:
            binding.reset()
