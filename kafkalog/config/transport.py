"""The transport's options: where Kafka is, how the producer talks to it, and how it logs in.

These are the options the transports (kafka-python, confluent) hand to the Kafka client; the
security options (TLS, SASL) are here too, with :class:`Secret`, the wrapper that keeps the
SASL password out of every ``repr``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any, Literal

from kafkalog.config.values import (
    Validator,
    at_least,
    boolean,
    choice,
    mapping,
    optional,
    string,
    upper_choice,
    validate,
)
from kafkalog.errors import ConfigError

Acks = Literal[0, 1, -1]

DEFAULT_BOOTSTRAP = "localhost:9092"
BOOTSTRAP_ENV = "KAFKALOG_BOOTSTRAP_SERVERS"
COMPRESSION_TYPES: tuple[str, ...] = ("none", "gzip", "snappy", "lz4", "zstd")
# The client library that talks to Kafka; "confluent" needs the kafkalog[confluent] extra.
TRANSPORTS: tuple[str, ...] = ("kafka-python", "confluent")
# Producer settings kafkalog sets itself, whatever producer_config says.
_MANAGED_SETTINGS = frozenset({"key_serializer", "value_serializer", "partitioner",
                               "enable_idempotence", "max_block_ms", "bootstrap_timeout_ms"})

SECURITY_PROTOCOLS: tuple[str, ...] = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
SASL_MECHANISMS: tuple[str, ...] = (
    "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512", "OAUTHBEARER", "GSSAPI",
)  # fmt: skip
# The mechanisms that log in with sasl_username and sasl_password.
PASSWORD_MECHANISMS: tuple[str, ...] = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
SASL_PASSWORD_ENV = "KAFKALOG_SASL_PASSWORD"
# kafka-python settings that a handler option sets: producer_config must not set them too,
# or which of the two wins would be a guess.
SECURITY_SETTING_OPTIONS: dict[str, str] = {
    "security_protocol": "security_protocol",
    "sasl_mechanism": "sasl_mechanism",
    "sasl_plain_username": "sasl_username",
    "sasl_plain_password": "sasl_password",
    "ssl_cafile": "ssl_cafile",
    "ssl_certfile": "ssl_certfile",
    "ssl_keyfile": "ssl_keyfile",
    "ssl_check_hostname": "ssl_check_hostname",
}
_SSL_FILE_OPTIONS: tuple[str, ...] = ("ssl_cafile", "ssl_certfile", "ssl_keyfile")


class Secret:
    """A password that shows as ``'***'`` in every ``repr`` and ``str``.

    Holding it in this wrapper, rather than a plain string, keeps it out of the handler's
    repr, its config's repr, tracebacks that print locals, and any message that formats the
    config. Only the transport calls :meth:`reveal`, to hand it to the Kafka client.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        """The secret itself."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('***')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)


def _bootstrap_servers(name: str, value: Any) -> tuple[str, ...]:
    if value is None or value == "":
        value = os.environ.get(BOOTSTRAP_ENV) or DEFAULT_BOOTSTRAP
    if isinstance(value, str):
        items = [part.strip() for part in value.split(",")]
    elif isinstance(value, (list, tuple)):
        items = [str(part).strip() for part in value]
    else:
        raise ConfigError(name, f"must be 'host:port,host:port' or a list, got {value!r}")
    servers = tuple(item for item in items if item)
    if not servers:
        raise ConfigError(name, "is empty")
    for server in servers:
        host, sep, port = server.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError(name, f"{server!r} is not host:port")
    return servers


def _acks(name: str, value: Any) -> Acks:
    text = str(value).strip().lower()
    spellings: dict[str, Acks] = {"0": 0, "1": 1, "all": -1, "-1": -1}
    if isinstance(value, bool) or text not in spellings:
        raise ConfigError(name, f"must be 0, 1 or all; got {value!r}")
    return spellings[text]


def _compression_type(name: str, value: Any) -> str:
    return "none" if value is None else str(choice(name, value, COMPRESSION_TYPES))


def _transport(name: str, value: Any) -> str:
    transport = str(choice(name, value, TRANSPORTS))
    # find_spec looks for the package without importing it (and librdkafka with it).
    if transport == "confluent" and importlib.util.find_spec("confluent_kafka") is None:
        raise ConfigError(
            name,
            "'confluent' needs the confluent-kafka package (pip install 'kafkalog[confluent]')",
        )
    return transport


def _security_protocol(name: str, value: Any) -> str:
    return upper_choice(name, value, SECURITY_PROTOCOLS)


def _sasl_mechanism(name: str, value: Any) -> str:
    return upper_choice(name, value, SASL_MECHANISMS)


def _password(name: str, value: Any) -> Secret | None:
    if value is None or value == "":
        return None
    if isinstance(value, Secret):
        return value
    if not isinstance(value, str):
        # The value itself is not shown: a mistyped password is still a password.
        raise ConfigError(name, f"must be a string, got a {type(value).__name__}")
    return Secret(value)


def _readable_file(name: str, value: Any) -> str | None:
    if value is None or value == "":
        return None
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    path = Path(string(name, value)).expanduser()
    if not path.is_file():
        raise ConfigError(name, f"{str(path)!r} is not a file")
    if not os.access(path, os.R_OK):
        raise ConfigError(name, f"{str(path)!r} is not readable by this process")
    return str(path)


OPTIONS: dict[str, Validator] = {
    "bootstrap_servers": _bootstrap_servers,
    "partition": optional(at_least(0)),
    "acks": _acks,
    "compression_type": _compression_type,
    "max_request_size": at_least(1),
    "request_timeout_ms": at_least(1),
    "client_id": optional(string, unset=(None,)),
    "producer_config": mapping,
    "transport": _transport,
    "security_protocol": _security_protocol,
    "sasl_mechanism": optional(_sasl_mechanism),
    "sasl_username": optional(string),
    "sasl_password": _password,
    "ssl_cafile": _readable_file,
    "ssl_certfile": _readable_file,
    "ssl_keyfile": _readable_file,
    "ssl_check_hostname": boolean,
}


def validate_options(options: Mapping[str, Any]) -> dict[str, Any]:
    """The typed transport options of ``options``, with the environment's fallbacks filled in."""
    # bootstrap_servers is always validated: left out, it is read from the environment now,
    # when the config is built, not when the dataclass default was written.
    values = validate(OPTIONS, {"bootstrap_servers": None, **options})
    # The environment fills in the password only where one is needed, so that a variable
    # left set for another program never turns a plain connection into a SASL one.
    if values.get("sasl_password") is None and values.get("sasl_mechanism") in PASSWORD_MECHANISMS:
        from_env = os.environ.get(SASL_PASSWORD_ENV)
        if from_env:
            values["sasl_password"] = Secret(from_env)
    return values


def check_relations(c: Mapping[str, Any], option_names: Collection[str]) -> None:
    """The transport options of the built config ``c`` must agree with each other.

    ``option_names`` are all of kafkalog's option names, which producer_config must not set.
    """
    if c["max_request_size"] < 4096:
        raise ConfigError("max_request_size", "must be at least 4096 bytes")
    clash = (set(option_names) | _MANAGED_SETTINGS) & set(c["producer_config"])
    if clash:
        raise ConfigError(
            "producer_config",
            f"sets {sorted(clash)}: these are handler options or managed by kafkalog; "
            "set the handler options themselves instead",
        )
    _check_security(c)


def _check_security(c: Mapping[str, Any]) -> None:
    """The security options must make one consistent way of connecting."""
    producer_config = c["producer_config"]
    protocol = c["security_protocol"]
    for setting, option in SECURITY_SETTING_OPTIONS.items():
        if setting in producer_config and setting != option:  # equal names: checked before
            raise ConfigError(
                "producer_config", f"sets {setting!r}: use the handler option {option!r} instead"
            )
    uses_tls = protocol in ("SSL", "SASL_SSL")
    uses_sasl = protocol.startswith("SASL_")
    if not uses_tls:
        for name in _SSL_FILE_OPTIONS:
            if c[name] is not None:
                raise ConfigError(
                    name, f"is set but security_protocol is {protocol}; "
                    "use SSL or SASL_SSL to connect with TLS",
                )  # fmt: skip
    if c["ssl_keyfile"] is not None and c["ssl_certfile"] is None:
        raise ConfigError("ssl_keyfile", "needs ssl_certfile (the client certificate)")
    if uses_tls and "ssl_context" in producer_config and (
        c["ssl_cafile"] or c["ssl_certfile"] or not c["ssl_check_hostname"]
    ):
        raise ConfigError(
            "producer_config",
            "sets 'ssl_context' together with ssl_* handler options; use one or the other",
        )
    if not uses_sasl:
        for name in ("sasl_mechanism", "sasl_username", "sasl_password"):
            if c[name] is not None:
                raise ConfigError(
                    name, f"is set but security_protocol is {protocol}; "
                    "use SASL_SSL (or SASL_PLAINTEXT) to log in with SASL",
                )  # fmt: skip
        return
    mechanism = c["sasl_mechanism"]
    if mechanism is None:
        raise ConfigError(
            "sasl_mechanism",
            f"is required with security_protocol {protocol} (one of {', '.join(SASL_MECHANISMS)})",
        )
    if mechanism in PASSWORD_MECHANISMS:
        if c["sasl_username"] is None:
            raise ConfigError("sasl_username", f"is required for {mechanism}")
        if c["sasl_password"] is None:
            raise ConfigError(
                "sasl_password",
                f"is required for {mechanism}: set it, or the {SASL_PASSWORD_ENV} "
                "environment variable",
            )
    elif mechanism == "OAUTHBEARER" and "sasl_oauth_token_provider" not in producer_config:
        raise ConfigError(
            "sasl_mechanism", "OAUTHBEARER needs producer_config['sasl_oauth_token_provider']"
        )
