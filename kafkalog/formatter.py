"""Deprecated module path: use ``kafkalog.JsonFormatter`` (or :mod:`kafkalog.formatting`).

.. deprecated:: 0.2.0
   Kept for one release; the formatter now lives in :mod:`kafkalog.formatting`.
"""

import warnings

from kafkalog.formatting import ECS_VERSION, JsonFormatter, new_record_id

warnings.warn(
    "kafkalog.formatter is deprecated; import JsonFormatter from kafkalog "
    "(or kafkalog.formatting)",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["ECS_VERSION", "JsonFormatter", "new_record_id"]
