"""Web framework integrations: bind each request's fields with :mod:`kafkalog.context`.

- :class:`kafkalog.contrib.django.RequestContextMiddleware` (Django, sync and async)
- :class:`kafkalog.contrib.flask.RequestContextExtension` (Flask)

Both bind ``request_id``, ``method``, ``path`` and, when a user is logged in, ``user_id`` for
the duration of the request, and send the request id back in the ``X-Request-ID`` response
header. The framework modules are imported only when used; this package needs neither.

.. versionadded:: 0.1.0
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Final

__all__ = ["REQUEST_ID_HEADER", "request_fields", "request_id_from"]

#: The header a request id is read from and written back to.
REQUEST_ID_HEADER: Final = "X-Request-ID"

# A client-supplied id is echoed in a response header and written into every record, so only
# short, visible ASCII without spaces is taken (no CR/LF header injection, no log flooding).
_VALID_REQUEST_ID: Final = re.compile(r"[\x21-\x7e]{1,128}")


def request_id_from(header_value: str | None) -> str:
    """The request id to use: ``header_value`` when it is a plausible id, else a new one.

    Plausible: 1 to 128 visible ASCII characters. A new id is 32 hex digits (a random UUID).
    """
    if header_value and _VALID_REQUEST_ID.fullmatch(header_value):
        return header_value
    return uuid.uuid4().hex


def request_fields(request_id: str, method: str, path: str, user_id: Any) -> dict[str, Any]:
    """The fields a request binds; ``user_id`` is left out when it is ``None``."""
    fields: dict[str, Any] = {"request_id": request_id, "method": method, "path": path}
    if user_id is not None:
        fields["user_id"] = user_id
    return fields
