"""The handler's connection-security options as every transport reads them.

Which options apply to a connection (by kafkalog's option names: each transport renames them for
its client library), who this client logs in as (for messages, never the password), and the TLS
files loaded once at construction. No Kafka client is imported here.
"""

from __future__ import annotations

import ssl
from typing import Any

from kafkalog.config import PipelineConfig
from kafkalog.errors import ConfigError

# The protocols that connect with TLS, and the options that only apply to them.
TLS_PROTOCOLS: tuple[str, ...] = ("SSL", "SASL_SSL")
TLS_FILE_OPTIONS: tuple[str, ...] = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


def uses_tls(config: PipelineConfig) -> bool:
    """Whether ``config`` connects with TLS."""
    return config.security_protocol in TLS_PROTOCOLS


def security_options(config: PipelineConfig) -> dict[str, Any]:
    """The security options that apply to a connection, by kafkalog's option name.

    ``security_protocol`` always; ``ssl_check_hostname`` and the TLS files only with TLS; the
    SASL options when set, the password revealed (the client library needs its text). The
    order is that of kafka-python's settings.
    """
    c = config
    options: dict[str, Any] = {"security_protocol": c.security_protocol}
    if uses_tls(c):
        options["ssl_check_hostname"] = c.ssl_check_hostname
        for name in TLS_FILE_OPTIONS:
            if getattr(c, name) is not None:
                options[name] = getattr(c, name)
    if c.sasl_mechanism is not None:
        options["sasl_mechanism"] = c.sasl_mechanism
    if c.sasl_username is not None:
        options["sasl_username"] = c.sasl_username
    if c.sasl_password is not None:
        options["sasl_password"] = c.sasl_password.reveal()
    return options


def login_of(config: PipelineConfig) -> str | None:
    """Who this client logs in as, for messages about refusals; None if it does not log in.

    The SASL user and mechanism, else the client certificate; never the password.
    """
    if config.sasl_mechanism is not None:
        user = f"SASL user {config.sasl_username!r}" if config.sasl_username else "SASL"
        return f"{user} ({config.sasl_mechanism})"
    if config.ssl_certfile is not None:
        return f"the client certificate {config.ssl_certfile}"
    return None


def _no_password() -> bytes:
    # Without a callback OpenSSL would prompt on the terminal for an encrypted key's password,
    # blocking the thread; this makes such a key fail to load instead.
    return b""


def check_tls_files(config: PipelineConfig, key_password: str | None = None) -> None:
    """Load the CA, certificate and key files once at construction, so that a file in the
    wrong format is a :class:`~kafkalog.errors.ConfigError` now, not a failure on every send.

    ``key_password`` decrypts the key file (the client library's own setting for it).
    """
    if not uses_tls(config):
        return
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    option = "ssl_cafile"
    try:
        if config.ssl_cafile is not None:
            ctx.load_verify_locations(config.ssl_cafile)
        option = "ssl_certfile" if config.ssl_keyfile is None else "ssl_certfile/ssl_keyfile"
        if config.ssl_certfile is not None:
            ctx.load_cert_chain(config.ssl_certfile, config.ssl_keyfile,
                                key_password or _no_password)
    except (ssl.SSLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None) or type(exc).__name__
        raise ConfigError(option, f"could not be loaded for TLS ({reason})") from None
