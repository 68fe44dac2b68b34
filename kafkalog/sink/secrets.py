"""The store's secrets: a password or an API key, from an environment variable or a file.

Never from the command line (it shows in ``ps`` and shell history) nor from the options file
itself. Each is held as a :class:`~kafkalog.config.Secret`, which prints as ``'***'``, so no
repr, log line, progress line or dead letter can show it.
"""

from __future__ import annotations

import os
from pathlib import Path

from kafkalog.config import Secret
from kafkalog.errors import ConfigError

__all__ = ["API_KEY_ENV", "PASSWORD_ENV", "read_secret"]

PASSWORD_ENV = "KAFKALOG_SINK_PASSWORD"
API_KEY_ENV = "KAFKALOG_SINK_API_KEY"


def read_secret(env: str, path: str | None, *, option: str) -> Secret | None:
    """The secret in file ``path`` (its first line), else in ``$env``, else None.

    A file that cannot be read is a :class:`~kafkalog.errors.ConfigError` naming ``option``;
    the message never holds the secret.
    """
    if path:
        try:
            text = Path(path).expanduser().read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(option, f"cannot read {path}: {exc.strerror}") from None
        value = text.splitlines()[0].strip() if text.strip() else ""
        if not value:
            raise ConfigError(option, f"{path} is empty")
        return Secret(value)
    value = os.environ.get(env, "")
    return Secret(value) if value else None
