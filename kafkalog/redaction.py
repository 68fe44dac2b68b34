"""Deprecated module path: use :mod:`kafkalog.formatting.redaction`.

.. deprecated:: 0.2.0
   Kept for one release; redaction now lives in :mod:`kafkalog.formatting.redaction`.
"""

import warnings

from kafkalog.formatting.redaction import DEFAULT_REDACT_KEYS, MASK, Redactor

warnings.warn(
    "kafkalog.redaction is deprecated; use kafkalog.formatting.redaction",
    DeprecationWarning,
    stacklevel=2,
)

__all__ = ["DEFAULT_REDACT_KEYS", "MASK", "Redactor"]
